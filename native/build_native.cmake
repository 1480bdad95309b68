# Builds the native kernels (this folder's CMake project) from the package's build, as
#   cmake -DSOURCE_DIR=... -DBINARY_DIR=... -DOUTPUT_DIR=... -DREQUIRED=ON|OFF -P build_native.cmake
# The compiler's output goes to OUTPUT_DIR/depth_ms_kernels.build.log. A failed build removes any older
# library and, unless REQUIRED (warnings are errors then too), is only a warning: the package then runs on
# MindSpore's own kernels and the Python loader logs why, quoting this log.
set(log "${OUTPUT_DIR}/depth_ms_kernels.build.log")
file(MAKE_DIRECTORY "${OUTPUT_DIR}")
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}"
                        "-DDEPTH_MS_NATIVE_OUTPUT_DIR=${OUTPUT_DIR}" "-DDEPTH_MS_NATIVE_WERROR=${REQUIRED}"
                RESULT_VARIABLE status OUTPUT_VARIABLE configure_output ERROR_VARIABLE configure_output)
set(build_output "")
if(status EQUAL 0)
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BINARY_DIR}"
                  RESULT_VARIABLE status OUTPUT_VARIABLE build_output ERROR_VARIABLE build_output)
endif()
file(WRITE "${log}" "${configure_output}${build_output}")
if(NOT status EQUAL 0)
  file(REMOVE "${OUTPUT_DIR}/libdepth_ms_kernels.so" "${OUTPUT_DIR}/depth_ms_kernels.isa")
  if(REQUIRED)
    message(FATAL_ERROR "the native kernels failed to build:\n${configure_output}${build_output}")
  endif()
  message(WARNING "the native kernels failed to build (log: ${log}); depth_ms will use MindSpore's kernels")
endif()
