"""Shared pytest set-up: make src/ importable when the catkin workspace is not sourced.

With the workspace sourced, catkin's devel-space ``depth_ms`` package (which joins src/ and the
generated ``depth_ms.msg``) must win, so src/ is only added as a fallback.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("depth_ms") is None:
    sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

# The test-only PyTorch references (diffusers, transformers) decide once, at import, whether torch is usable;
# the estimators set USE_TORCH=0 for the product (mindspore_device.keep_torch_out). Import the references
# first, so that no test order leaves them without torch.
for _reference in ("diffusers", "transformers"):
    if importlib.util.find_spec(_reference) is not None:
        importlib.import_module(_reference)

# Under CI=true a test skipped for a missing dependency (MindSpore, mindone, the PyTorch references, the
# compiler) fails the run: a suite must not go green by not running.
_MISSING_DEPENDENCY = ("could not import", "not importable", "no cmake", "not built", "needs mindone")
_dependency_skips: list[str] = []


def _note_dependency_skip(report) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if any(marker in reason for marker in _MISSING_DEPENDENCY):
            _dependency_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report):
    _note_dependency_skip(report)


def pytest_runtest_logreport(report):
    _note_dependency_skip(report)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") == "true" and _dependency_skips:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("CI") == "true" and _dependency_skips:
        terminalreporter.section("missing dependencies (CI=true: these skips fail the run)")
        for line in _dependency_skips:
            terminalreporter.write_line(line)
