"""Metric depth in a live graph: simulator + depth node with a known relative distortion of the ground truth.

The oracle publishes ``3 / depth + 0.1`` as an affine-disparity map (what a MiDaS-family model gives);
the node must recover metres from the camera pose over the flat ground or from the rangefinder, and
must stop the metric topics when no scale source is configured.
"""
import math
import time

import numpy as np
import pytest
import yaml
from cv_bridge import CvBridge
from sensor_msgs.msg import Image, PointCloud2, Range
from std_msgs.msg import Header

from depth_ms.core.config import load_yaml
from depth_ms.msg import DepthInfo
from depth_ms.ros import conversions

from conftest import ROOT, wait_for
from helpers import Recorder, mean_abs_rel

OUT = "/depth_node/depth/"
GT = "/camera/depth/image_raw"
TOPICS = {GT: Image, "/camera/rgb/image_raw": Image, "/mavros/distance_sensor/lidarlite_pub": Range,
          OUT + "image": Image, OUT + "relative": Image, OUT + "points": PointCloud2, OUT + "info": DepthInfo}
FRAMES = 15


@pytest.fixture(scope="module")
def distorted_oracle(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "oracle_disparity.yaml"
    path.write_text("kind: affine_disparity\nscale: 3.0\nshift: 0.1\n")
    return path


def _launch(module_launch, config, source):
    rec = Recorder(TOPICS)
    launched = module_launch("drone_depth.launch", "model:=oracle", f"model_config:={config}", f"scale:={source}",
                             "sim_width:=160", "sim_height:=120", "sim_rate:=5")
    wait_for(lambda: len(rec.get(OUT + "info")) >= FRAMES, 120, message=f"{FRAMES} depth frames")
    rec.close()
    launched.stop()
    return rec


@pytest.fixture(scope="module", params=["ground_plane", "rangefinder"])
def metric_run(request, rosnode, module_launch, distorted_oracle):
    return request.param, _launch(module_launch, distorted_oracle, request.param)


@pytest.fixture(scope="module")
def unscaled_run(rosnode, module_launch, distorted_oracle):
    return _launch(module_launch, distorted_oracle, "none")


def test_metric_topics_carry_metres_that_match_the_ground_truth(metric_run):
    source, rec = metric_run
    bridge = CvBridge()
    infos = rec.get(OUT + "info")[2:]
    assert all(i.metric and i.scale_source == source and i.depth_kind == DepthInfo.AFFINE_DISPARITY for i in infos), \
        [(i.header.stamp.to_sec(), i.metric, i.scale_source, i.scale_state, i.scale_note) for i in infos]
    assert all(i.scale_state == "fitted" and i.inlier_fraction > 0.5 for i in infos), \
        [(i.scale_state, i.scale_note, i.inlier_fraction) for i in infos]
    # the fit inverts the distortion: 1/metres = value / 3 - 0.1 / 3
    assert np.median([i.scale for i in infos]) == pytest.approx(1 / 3, rel=0.02)
    errors = []
    for msg in rec.get(OUT + "image")[2:]:
        gt = rec.by_stamp(GT, msg.header.stamp.to_sec())
        depth = bridge.imgmsg_to_cv2(msg)
        assert msg.encoding == "32FC1" and msg.header.frame_id == gt.header.frame_id
        assert np.isnan(depth[np.isnan(bridge.imgmsg_to_cv2(gt))]).all()  # sky stays invalid
        errors.append(mean_abs_rel(depth, bridge.imgmsg_to_cv2(gt)))
    assert np.mean(errors) < 0.03
    cloud = conversions.cloud_from_msg(rec.get(OUT + "points")[-1])
    depth = bridge.imgmsg_to_cv2(rec.by_stamp(OUT + "image", rec.get(OUT + "points")[-1].header.stamp.to_sec()))
    np.testing.assert_allclose(cloud["z"], depth, rtol=1e-6)
    stamp = rec.get(OUT + "relative")[-1].header.stamp.to_sec()
    relative = bridge.imgmsg_to_cv2(rec.by_stamp(OUT + "relative", stamp))
    gt = bridge.imgmsg_to_cv2(rec.by_stamp(GT, stamp))
    np.testing.assert_allclose(relative, 3.0 / gt + 0.1, rtol=1e-5)  # the model's own map, as it came


def test_without_a_scale_source_only_the_relative_map_is_published(unscaled_run):
    rec = unscaled_run
    infos = rec.get(OUT + "info")
    assert not rec.get(OUT + "image") and not rec.get(OUT + "points")
    assert len(rec.get(OUT + "relative")) >= FRAMES - 2
    assert all(not i.metric and i.scale_state == "lost" and math.isnan(i.scale) for i in infos)
    assert infos[-1].scale_note == "scale.source is none"


def test_simulator_rangefinder_measures_the_height(unscaled_run):
    rec = unscaled_run
    ranges = rec.get("/mavros/distance_sensor/lidarlite_pub")
    assert ranges and all(r.header.frame_id == "rangefinder_link" and r.radiation_type == Range.INFRARED
                          for r in ranges)
    assert all(2.5 < r.range < 12.5 for r in ranges)  # default flight: 3-12 m above flat ground


def test_bad_range_messages_give_no_metric_output_and_a_reason(rosnode, launch, distorted_oracle, tmp_path):
    """NaN, inf, beyond max_range, and a frame TF does not know: never a metric frame, the node keeps running."""
    config = load_yaml(ROOT / "config" / "depth_node.yaml")
    config["scale"].update(source="rangefinder", rangefinder={**config["scale"]["rangefinder"], "topic": "/bad_range"})
    node_config = tmp_path / "depth_node.yaml"
    node_config.write_text(yaml.safe_dump(config))
    rec = Recorder(TOPICS)
    pub = rosnode.Publisher("/bad_range", Range, queue_size=10)
    proc = launch("drone_depth.launch", "model:=oracle", f"model_config:={distorted_oracle}",
                  f"node_config:={node_config}", "sim_width:=160", "sim_height:=120", "sim_rate:=5")
    readings = [(math.nan, "rangefinder_link"), (math.inf, "rangefinder_link"), (55.0, "rangefinder_link"),
                (5.0, "nowhere_link")]
    deadline = time.monotonic() + 60
    while len(rec.get(OUT + "info")) < 15 and time.monotonic() < deadline:
        for distance, frame in readings:
            pub.publish(Range(header=Header(stamp=rosnode.Time.now(), frame_id=frame), min_range=0.1,
                              max_range=40.0, range=distance))
        time.sleep(0.05)
    rec.close()
    pub.unregister()
    infos = rec.get(OUT + "info")
    assert len(infos) >= 10 and not rec.get(OUT + "image") and not rec.get(OUT + "points")
    # A slow start may show frames before camera_info or the first TF; once they are in, the readings are the reason.
    startup = {"no camera_info", "no fresh camera pose"}
    reason = "no fresh rangefinder reading in range"
    assert all(not i.metric and i.scale_note in startup | {reason} for i in infos)
    assert all(i.scale_note == reason for i in infos[-5:])
    # the state line names the first frame's reason (maybe a startup one); the recurring warning the current one
    assert "no metric scale (no fresh rangefinder reading in range): depth/image and depth/points not published" \
        in proc.output()
    assert proc.alive()


def test_the_opt_in_display_stretch_is_flagged_and_still_warned(rosnode, launch, distorted_oracle, tmp_path):
    """scale.display_stretch: without a scale, depth/points carries the stretch, depth/info flags it, the warning
    says so, and depth/image (metres only) stays unpublished."""
    config = load_yaml(ROOT / "config" / "depth_node.yaml")
    config["scale"].update(source="none", display_stretch=True)
    node_config = tmp_path / "depth_node.yaml"
    node_config.write_text(yaml.safe_dump(config))
    rec = Recorder(TOPICS)
    proc = launch("drone_depth.launch", "model:=oracle", f"model_config:={distorted_oracle}",
                  f"node_config:={node_config}", "sim_width:=160", "sim_height:=120", "sim_rate:=5")
    wait_for(lambda: len(rec.get(OUT + "points")) >= 3, 120, message="3 stretched clouds")
    rec.close()
    infos = rec.get(OUT + "info")
    assert not rec.get(OUT + "image")
    assert all(not i.metric and math.isnan(i.scale) for i in infos)
    stretched = {i.header.stamp for i in infos if i.display_stretch}  # every frame with a cloud (camera_info in)
    clouds = {p.header.stamp for p in rec.get(OUT + "points")}
    assert stretched and stretched == clouds & {i.header.stamp for i in infos}
    assert "depth/points carries the display stretch (scale.display_stretch), not metres" in proc.output()
