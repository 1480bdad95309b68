"""Real ROS fixtures: a roscore on a free port, one rospy test node, launch files as subprocesses."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
ROSCORE_PARAMS = {"/run_id", "/rosdistro", "/rosversion"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require_workspace() -> None:
    if shutil.which("roslaunch") is None or subprocess.run(["rospack", "find", "depth_ms"],
                                                           capture_output=True).returncode != 0:
        pytest.fail("the catkin workspace is not sourced: run scripts/test.sh (or source scripts/env.sh)")


@pytest.fixture(scope="session")
def roscore(tmp_path_factory):
    """A real roscore; sets ROS_MASTER_URI for this process and every child."""
    _require_workspace()
    port = _free_port()
    os.environ["ROS_MASTER_URI"] = f"http://127.0.0.1:{port}"
    os.environ["ROS_HOSTNAME"] = "127.0.0.1"
    os.environ["ROS_HOME"] = str(tmp_path_factory.mktemp("ros_home"))
    proc = subprocess.Popen(["roscore", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    import rosgraph
    deadline = time.time() + 30
    # roscore sets /run_id just after the master answers; roslaunch needs it, so wait for both
    while not (rosgraph.is_master_online() and "/run_id" in _param_names()):
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("roscore did not start")
        time.sleep(0.2)
    yield os.environ["ROS_MASTER_URI"]
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=20)


@pytest.fixture(scope="session")
def rosnode(roscore):
    """This test process as a rospy node (rospy allows one init per process)."""
    import rospy
    rospy.init_node("depth_ms_test", anonymous=True, disable_signals=True)
    yield rospy
    rospy.signal_shutdown("tests done")


class Launched:
    """A roslaunch / rosrun child process with its output kept for assertions."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        child_env = {key: value for key, value in os.environ.items()
                     if not key.startswith("QT_QPA_")}  # set by pip's cv2 on import; breaks RViz's Qt
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**child_env, **(env or {})})

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def node_pid(self, name: str = "depth_node") -> int:
        """PID of node ``name`` started by this roslaunch (not another launch's node of the same name)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", f"__name:={name}"], capture_output=True,
                             text=True).stdout.split()
        assert out, f"{name} process of this launch not found"
        return int(out[0])

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def _forget_new_params(before: set[str]) -> None:
    """Delete parameters set since ``before`` (rosrun's ``_param:=`` values outlive their node)."""
    import rosgraph
    master = rosgraph.Master("/depth_ms_test_cleanup")
    for name in set(master.getParamNames()) - before - ROSCORE_PARAMS:
        try:
            master.deleteParam(name)
        except rosgraph.masterapi.Error:
            pass  # already removed with its namespace


def _param_names() -> set[str]:
    import rosgraph
    return set(rosgraph.Master("/depth_ms_test_cleanup").getParamNames())


def _launcher(log_dir: Path):
    started: list[Launched] = []

    def start(*args: str, command: list[str] | None = None, env: dict | None = None) -> Launched:
        cmd = command or ["roslaunch", "--wait", "depth_ms", *args]
        item = Launched(cmd, log_dir / f"launch{len(started)}.log", env)
        started.append(item)
        return item

    return start, started


@pytest.fixture
def launch(roscore, tmp_path):
    """launch(*args) starts ``roslaunch depth_ms <args>`` (or any command list); all stop at teardown."""
    params_before = _param_names()
    start, started = _launcher(tmp_path)
    yield start
    for item in reversed(started):
        item.stop()
    _forget_new_params(params_before)


@pytest.fixture(scope="module")
def module_launch(roscore, tmp_path_factory):
    """Like ``launch``, shared by the tests of one module."""
    params_before = _param_names()
    start, started = _launcher(tmp_path_factory.mktemp("launch"))
    yield start
    for item in reversed(started):
        item.stop()
    _forget_new_params(params_before)


def wait_for(predicate, timeout: float, interval: float = 0.1, message: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
