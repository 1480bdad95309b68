"""drone_depth.launch model:=marigold with a real roscore, the simulator and a tiny random-weight checkpoint."""
import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("mindone") is None:
    pytest.skip("needs mindone and the test-only diffusers to write a checkpoint", allow_module_level=True)

from cv_bridge import CvBridge  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from depth_ms.msg import DepthInfo  # noqa: E402

from conftest import wait_for  # noqa: E402
from helpers import Recorder  # noqa: E402

OUT = "/depth_node/depth/"
TOPICS = {"/camera/rgb/image_raw": Image, OUT + "relative": Image, OUT + "image": Image, OUT + "points": PointCloud2,
          OUT + "info": DepthInfo}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import sys
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
    from marigold_checkpoints import write_marigold_folder

    path = tmp_path_factory.mktemp("weights") / "marigold-depth-v1-1"
    write_marigold_folder(str(path))
    return path


# the default (graph mode, compiled on the first frame: the frame after that pause is still warm, since a
# forward gap allows the previous frame's time) and PyNative
@pytest.fixture(scope="module", params=[(), ("mode:=pynative",)], ids=["graph", "pynative"])
def stream(request, rosnode, module_launch, checkpoint):
    rec = Recorder(TOPICS)
    launched = module_launch("drone_depth.launch", "model:=marigold", f"weights:={checkpoint}", "steps:=3",
                             "warm_start:=renoise_warp", "resolution:=64", "sim_width:=96", "sim_height:=72",
                             "sim_rate:=5", "scale:=none", *request.param)
    wait_for(lambda: len(rec.get(OUT + "info")) >= 6, 240, message="6 Marigold depth frames")
    yield rec
    rec.close()
    launched.stop()  # before the next mode's launch


def test_first_frame_cold_then_warm_one_step_warped_by_the_tf_pose(stream):
    infos = stream.get(OUT + "info")
    assert infos[0].model == "marigold" and infos[0].depth_kind == DepthInfo.AFFINE_DEPTH
    assert (infos[0].warm, infos[0].denoising_steps) == (False, 3)
    # the node looked up map -> camera_link_optical at each image stamp and the engine warped with it
    assert all(i.warm and i.denoising_steps == 1 and i.warm_start == "renoise_warp:pose" for i in infos[1:]), \
        [(i.warm, i.denoising_steps, i.warm_start, round(i.model_latency_ms), i.header.stamp.to_sec()) for i in infos]
    assert infos[-1].frames_rejected == 0


def test_relative_depth_in_unit_range_at_input_size_with_input_header_and_no_metric_topics(stream):
    bridge = CvBridge()
    inputs = {m.header.stamp: m for m in stream.get("/camera/rgb/image_raw")}
    msg = stream.get(OUT + "relative")[-1]
    depth = bridge.imgmsg_to_cv2(msg)
    assert msg.encoding == "32FC1" and depth.shape == (72, 96)
    assert np.isfinite(depth).all() and 0.0 <= depth.min() and depth.max() <= 1.0
    assert msg.header.stamp in inputs and msg.header.frame_id == inputs[msg.header.stamp].header.frame_id
    # scale:=none: relative values never go out on the REP 118 metric topics
    assert not stream.get(OUT + "image") and not stream.get(OUT + "points")


def test_missing_weights_stop_the_node_with_the_path(rosnode, launch, tmp_path):
    missing = tmp_path / "nowhere" / "marigold-depth-v1-1"
    proc = launch(command=["rosrun", "depth_ms", "depth_node", "_model:=marigold",
                           f"_estimator/checkpoint:={missing}"])
    wait_for(lambda: not proc.alive(), 60, message="the node to stop")
    assert proc.proc.returncode != 0
    assert f"Marigold checkpoint folder not found: {missing}" in proc.output()


def test_labeller_scores_a_bag_with_streaming_marigold(checkpoint, tmp_path):
    """Mode (b): Marigold runs over a simulator bag in order; affine depth is aligned before scoring."""
    import json

    from depth_ms.ros.label_bag import main
    from depth_ms.ros.sim_bag import write_sim_bag
    from depth_ms.sim import DroneSimulator, load_sim_config

    bag = write_sim_bag(DroneSimulator(load_sim_config({"width": 64, "height": 48})), tmp_path / "f.bag", 5)
    out = tmp_path / "labels"
    options = f"{{checkpoint: '{checkpoint}', steps: 2, warm_start: renoise}}"
    assert main(["label_bag", str(bag), "-o", str(out), "--model", "marigold", "--estimator", options, "--quiet",
                 "--no-labels", "--set", "scoring.max_depth=100", "--set", "outputs.samples=1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["scored"] == 5
    assert summary["alignment_applied"] == {"depth": 5}  # affine depth: least squares in depth space
    metrics = summary["metrics"]
    assert np.isfinite(metrics["abs_rel"]) and 0.0 < metrics["delta1"] <= 1.0
