"""Real RViz under Xvfb with rviz/drone_depth.rviz: the screenshot shows the coloured point cloud."""
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from PIL import Image as PILImage, ImageGrab
from sensor_msgs.msg import PointCloud2

from conftest import ARTIFACTS, wait_for
from helpers import Recorder

SCREEN = (1280, 800)


@pytest.fixture
def xvfb():
    """A virtual X screen on a free display number; yields its name (":N")."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is missing: scripts/setup.sh installs the Debian package xvfb")
    number = next(n for n in range(90, 200) if not os.path.exists(f"/tmp/.X{n}-lock"))
    display = f":{number}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists(f"/tmp/.X11-unix/X{number}"), 10, message="Xvfb")
    yield display
    proc.terminate()
    proc.wait(timeout=10)


def _colourful_fraction(image: np.ndarray) -> float:
    """Share of pixels with clear colour (RViz's background and grid are grey)."""
    rgb = image.astype(np.int16)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    return float((saturation > 40).mean())


@pytest.mark.parametrize("model", ["oracle", ""], ids=["oracle", "demo"])
def test_rviz_shows_the_point_cloud(rosnode, launch, xvfb, model):
    """The oracle's cloud, and the demo's: the launch defaults (the shipped Marigold, metric from the pose over
    the ground), whose metric cloud RViz draws in the map frame."""
    rec = Recorder({"/depth_node/depth/points": PointCloud2})
    proc = launch("drone_depth.launch", *([f"model:={model}"] if model else []), "rviz:=true",
                  env={"DISPLAY": xvfb})
    wait_for(lambda: len(rec.get("/depth_node/depth/points")) >= 10, 180, message="clouds")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"rviz_{model or 'demo'}.png"
    # RViz needs a moment after the first cloud to load its TF and draw; poll the screen
    deadline, fraction = time.time() + 60, 0.0
    while time.time() < deadline:
        shot = ImageGrab.grab(xdisplay=xvfb)
        screen = np.asarray(shot.convert("RGB"))  # (H, W, 3)
        height, width = screen.shape[:2]
        view = screen[int(0.1 * height):int(0.95 * height), int(0.35 * width):]  # the 3D view (dock on the left)
        fraction = _colourful_fraction(view)
        if fraction > 0.05:
            break
        time.sleep(2.0)
    shot.save(path)
    (ARTIFACTS / f"rviz_{model or 'demo'}_launch.log").write_text(proc.output())
    rec.close()
    assert proc.alive(), proc.output()[-2000:]
    assert "rviz" in proc.output()
    assert fraction > 0.05, f"3D view shows no cloud (colourful share {fraction:.3f}); screenshot {path}"
    # and the view is not one flat colour (not a blank or black window)
    assert np.asarray(PILImage.open(path)).std() > 20
