"""drone_depth.launch with the fast relative-depth models (tiny random-weight Hugging Face folders), a real
roscore and the simulator; the labeller over a bag with one of them."""
import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import yaml

if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("mindone") is None:
    pytest.skip("needs mindone and the test-only transformers to write a checkpoint", allow_module_level=True)

from cv_bridge import CvBridge  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from depth_ms.core.config import load_yaml  # noqa: E402
from depth_ms.msg import DepthInfo  # noqa: E402

from conftest import ROOT, wait_for  # noqa: E402
from helpers import Recorder  # noqa: E402

OUT = "/depth_node/depth/"
TOPICS = {"/camera/rgb/image_raw": Image, OUT + "relative": Image, OUT + "points": PointCloud2, OUT + "info": DepthInfo}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
    from tiny_configs import write_tiny_folder

    root = tmp_path_factory.mktemp("weights")
    return {m: write_tiny_folder(root, m) for m in ("depth_anything_v2_small", "dpt_hybrid")}


@pytest.fixture(scope="module")
def display_stretch(tmp_path_factory):
    """The node's config without a metric scale source, opting in to the display-stretched cloud."""
    config = load_yaml(ROOT / "config" / "depth_node.yaml")
    config["scale"].update(source="none", display_stretch=True)
    path = tmp_path_factory.mktemp("config") / "depth_node.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stream(rosnode, module_launch, weights, display_stretch):
    """Depth Anything V2 (tiny) compiled in graph mode at start-up, 96x72 simulator frames."""
    rec = Recorder(TOPICS)
    module_launch("drone_depth.launch", "model:=depth_anything_v2_small",
                  f"weights:={weights['depth_anything_v2_small']}", "resolution:=56", "mode:=graph",
                  "warm_up:=[96, 72]", "sim_width:=96", "sim_height:=72", "sim_rate:=5",
                  f"node_config:={display_stretch}")
    wait_for(lambda: len(rec.get(OUT + "info")) >= 4, 240, message="4 Depth Anything frames")
    yield rec
    rec.close()


def test_info_reports_relative_disparity(stream):
    infos = stream.get(OUT + "info")
    assert all(i.model == "depth_anything_v2_small" for i in infos)
    assert all(i.depth_kind == DepthInfo.AFFINE_DISPARITY for i in infos)
    assert infos[-1].frames_rejected == 0 and infos[-1].frames_out >= 4
    assert not any(i.metric for i in infos)  # random weights, no scale source: the cloud is a display stretch


def test_depth_at_input_size_with_input_header_and_organised_cloud(stream):
    bridge = CvBridge()
    inputs = {m.header.stamp: m for m in stream.get("/camera/rgb/image_raw")}
    msg = stream.get(OUT + "relative")[-1]
    depth = bridge.imgmsg_to_cv2(msg)
    assert msg.encoding == "32FC1" and depth.shape == (72, 96)
    assert np.isfinite(depth).any() and np.nanstd(depth) > 0  # a real map, not a constant
    assert msg.header.stamp in inputs and msg.header.frame_id == inputs[msg.header.stamp].header.frame_id
    cloud = stream.get(OUT + "points")[-1]
    assert (cloud.width, cloud.height) == (96, 72) and cloud.header.frame_id == msg.header.frame_id


def test_labeller_scores_a_bag_with_dpt_hybrid(weights, tmp_path):
    """Mode (b) with a disparity model: alignment happens in disparity space before scoring."""
    from depth_ms.ros.label_bag import main
    from depth_ms.ros.sim_bag import write_sim_bag
    from depth_ms.sim import DroneSimulator, load_sim_config

    bag = write_sim_bag(DroneSimulator(load_sim_config({"width": 64, "height": 48})), tmp_path / "f.bag", 4)
    out = tmp_path / "labels"
    options = f"{{weights: '{weights['dpt_hybrid']}', resolution: 64}}"
    assert main(["label_bag", str(bag), "-o", str(out), "--model", "dpt_hybrid", "--estimator", options, "--quiet",
                 "--no-labels", "--set", "scoring.max_depth=100", "--set", "outputs.samples=1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["scored"] == 4
    assert summary["alignment_applied"] == {"disparity": 4}
    assert np.isfinite(summary["metrics"]["abs_rel"])
