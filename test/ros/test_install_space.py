"""`catkin_make install` gives a working install space: nodes, launch, config, rviz, msg, the native kernels
and the shipped weights, launched from there with nothing of the source tree or the development workspace on the paths."""
import os
import subprocess
import sys

import pytest
from sensor_msgs.msg import Image

from depth_ms.msg import DepthInfo

from conftest import ROOT, wait_for
from helpers import Recorder


@pytest.fixture(scope="module")
def install_space(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("install_ws")
    (workspace / "src").mkdir()
    (workspace / "src" / "depth_ms").symlink_to(ROOT)
    build = subprocess.run(["catkin_make", "-C", str(workspace), "install", f"-DPYTHON_EXECUTABLE={sys.executable}",
                            "-DCATKIN_ENABLE_TESTING=OFF"], cwd=workspace, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return workspace / "install"


def _environment(install) -> dict:
    """The variables `source install/setup.bash` sets, from a shell that starts without any workspace."""
    base = {"HOME": os.environ["HOME"], "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"}
    out = subprocess.run(["bash", "-c", f"source {install}/setup.bash && env -0"], env=base, capture_output=True,
                         check=True).stdout.decode()
    env = dict(line.split("=", 1) for line in out.split("\0") if "=" in line)
    return {key: env.get(key, "") for key in ("PATH", "PYTHONPATH", "ROS_PACKAGE_PATH", "CMAKE_PREFIX_PATH",
                                              "LD_LIBRARY_PATH", "PKG_CONFIG_PATH", "ROSLISP_PACKAGE_DIRECTORIES")}


def test_the_install_space_has_the_package_files(install_space):
    share, python = install_space / "share" / "depth_ms", install_space / "lib" / "python3" / "dist-packages"
    for name in ("launch/drone_depth.launch", "launch/label_bag.launch", "config/depth_node.yaml",
                 "config/sim.yaml", "rviz/drone_depth.rviz", "msg/DepthInfo.msg", "package.xml"):
        assert (share / name).is_file(), name
    for node in ("depth_node", "sim_camera", "sim_record", "label_bag", "compare_runs", "train", "sim_flights"):
        assert os.access(install_space / "lib" / "depth_ms" / node, os.X_OK), node
    assert (python / "depth_ms" / "msg" / "_DepthInfo.py").is_file()
    assert (install_space / "lib" / "libdepth_ms_kernels.so").is_file()
    assert (install_space / "lib" / "depth_ms_kernels.isa").is_file()
    assert (python / "depth_ms" / "models" / "shipped" / "fast_depth_sim.safetensors").is_file()
    assert (python / "depth_ms" / "models" / "shipped" / "marigold_sim" / "unet" / "config.json").is_file()


def test_drone_depth_launch_runs_from_the_install_space_on_its_shipped_weights(rosnode, launch, install_space):
    env = _environment(install_space)
    assert str(ROOT) not in env["PYTHONPATH"] + env["ROS_PACKAGE_PATH"]
    rec = Recorder({"/depth_node/depth/info": DepthInfo, "/depth_node/depth/image": Image})
    proc = launch("drone_depth.launch", "model:=midas", "sim_width:=160", "sim_height:=120", "sim_rate:=5",
                  env={**env, "DEPTH_MS_WEIGHTS": str(install_space / "no_weights")})
    wait_for(lambda: len(rec.get("/depth_node/depth/image")) >= 3, 180, message="metric depth from the install space")
    rec.close()
    shipped = install_space / "lib" / "python3" / "dist-packages" / "depth_ms" / "models" / "shipped"
    info = rec.get("/depth_node/depth/info")[-1]
    assert info.weights == f"shipped: {shipped / 'fast_depth_sim.safetensors'}" and info.metric
    with open(f"/proc/{proc.node_pid()}/maps") as maps:  # the native kernels come from the install space too
        assert str(install_space / "lib" / "libdepth_ms_kernels.so") in maps.read()
    assert proc.alive()
