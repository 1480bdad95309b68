"""Finding the native kernels' library: refused on a CPU without the extensions its build used, and a failed
build is a warning that quotes the compiler (the package then runs on MindSpore's kernels)."""
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from depth_ms.models import native_library as nl

ROOT = Path(__file__).resolve().parents[2]


def find(monkeypatch, **env) -> str | None:
    for name in ("DEPTH_MS_NATIVE_LIBRARY", "DEPTH_MS_NATIVE_KERNELS", "LD_LIBRARY_PATH", "CMAKE_PREFIX_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return nl.native_library.__wrapped__()


def test_cpu_features_are_read_without_underscores(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_1 avx2 avx512f avx512_vnni\n")
    assert nl.cpu_features(str(cpuinfo)) == {"fpu", "sse41", "avx2", "avx512f", "avx512vnni"}


def test_a_library_built_for_another_cpu_is_refused(tmp_path, monkeypatch, caplog):
    built = nl.native_library()
    if built is None:
        pytest.skip("native kernels disabled" if os.environ.get("DEPTH_MS_NATIVE_KERNELS") == "0"
                    else "native kernels not built")
    copy = tmp_path / nl.LIBRARY
    shutil.copy(built, copy)
    (tmp_path / nl.ISA_FILE).write_text("avx2\navx9000\n")
    assert nl.missing_features(str(copy), {"avx2"}) == ["avx9000"]
    with caplog.at_level(logging.WARNING):
        assert find(monkeypatch, DEPTH_MS_NATIVE_LIBRARY=str(copy)) is None
    assert "avx9000" in caplog.text and "rebuild with catkin_make" in caplog.text
    (tmp_path / nl.ISA_FILE).unlink()
    assert find(monkeypatch, DEPTH_MS_NATIVE_LIBRARY=str(copy)) is None  # no .isa: refused too


def test_a_disabled_or_missing_library_is_none(tmp_path, monkeypatch, caplog):
    assert find(monkeypatch, DEPTH_MS_NATIVE_KERNELS="0") is None
    with caplog.at_level(logging.WARNING):
        assert find(monkeypatch, LD_LIBRARY_PATH=str(tmp_path)) is None
    assert "native kernels not found" in caplog.text and str(tmp_path) in caplog.text


@pytest.mark.skipif(shutil.which("cmake") is None, reason="no cmake")
def test_a_failed_build_warns_with_the_compiler_message(tmp_path, monkeypatch, caplog):
    sources = tmp_path / "native"
    shutil.copytree(ROOT / "native", sources)
    with open(sources / "common.cc", "a") as f:
        f.write("\n#error broken on purpose\n")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / nl.LIBRARY).write_text("an older build")  # removed by the failed build

    def build(required: str) -> subprocess.CompletedProcess:
        return subprocess.run(["cmake", f"-DSOURCE_DIR={sources}", f"-DBINARY_DIR={tmp_path / 'build'}",
                               f"-DOUTPUT_DIR={lib}", f"-DREQUIRED={required}", "-P",
                               str(ROOT / "native" / "build_native.cmake")], capture_output=True, text=True)

    lenient = build("OFF")
    assert lenient.returncode == 0 and "failed to build" in lenient.stderr
    assert not (lib / nl.LIBRARY).exists()
    assert "broken on purpose" in (lib / nl.BUILD_LOG).read_text()
    with caplog.at_level(logging.WARNING):
        assert find(monkeypatch, LD_LIBRARY_PATH=str(lib)) is None
    assert "broken on purpose" in caplog.text and "MindSpore's kernels" in caplog.text
    strict = build("ON")
    assert strict.returncode != 0 and "broken on purpose" in strict.stderr
