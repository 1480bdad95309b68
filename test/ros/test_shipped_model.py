"""Out of the box: drone_depth.launch model:=midas with no weights installed runs the shipped sim-trained
model, says so, and its depth matches the simulator's ground truth after the labeller's alignment."""
import numpy as np
import pytest
from cv_bridge import CvBridge
from sensor_msgs.msg import Image

from depth_ms.models import weights as weight_files
from depth_ms.msg import DepthInfo
from depth_ms.training.validation import score_relative

from conftest import wait_for
from helpers import Recorder

pytest.importorskip("mindspore")

OUT = "/depth_node/depth/"
GT = "/camera/depth/image_raw"
TOPICS = {GT: Image, OUT + "image": Image, OUT + "info": DepthInfo}


def test_fresh_install_runs_the_shipped_model_with_real_depth(rosnode, launch, tmp_path):
    rec = Recorder(TOPICS)
    node = launch("drone_depth.launch", "model:=midas", "sim_width:=320", "sim_height:=240", "sim_rate:=5",
                  env={"DEPTH_MS_WEIGHTS": str(tmp_path / "empty")})
    wait_for(lambda: len(rec.get(OUT + "info")) >= 6, 180, message="6 frames of the shipped model")
    rec.close()
    infos = rec.get(OUT + "info")
    shipped = weight_files.shipped("midas")
    assert all(i.weights == f"shipped: {shipped}" for i in infos)
    assert all(i.depth_kind == DepthInfo.AFFINE_DISPARITY for i in infos)
    assert f"with shipped: {shipped} weights" in node.output()
    bridge = CvBridge()
    scores = []
    for msg in rec.get(OUT + "image")[-4:]:
        gt = rec.by_stamp(GT, msg.header.stamp.to_sec())
        scores.append(score_relative(bridge.imgmsg_to_cv2(msg), bridge.imgmsg_to_cv2(gt), 0.2, 65.535))
    assert np.mean([s["abs_rel"] for s in scores]) < 0.12  # the default flight (seed 7) is not a held-out one
    assert np.mean([s["delta1"] for s in scores]) > 0.85
