"""Simulator -> depth node -> topics with a real roscore and roslaunch (oracle estimator)."""
import numpy as np
import pytest
import rospy
import tf2_ros
from cv_bridge import CvBridge
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ms.core.config import load_yaml
from depth_ms.msg import DepthInfo
from depth_ms.ros import conversions
from depth_ms.sim import DroneSimulator, load_sim_config

from conftest import ROOT, wait_for
from helpers import Recorder

OUT = "/depth_node/depth/"
TOPICS = {
    "/camera/rgb/image_raw": Image, "/camera/rgb/camera_info": CameraInfo, "/camera/depth/image_raw": Image,
    "/mavros/local_position/pose": PoseStamped,
    OUT + "image": Image, OUT + "colored": Image, OUT + "points": PointCloud2, OUT + "camera_info": CameraInfo,
    OUT + "info": DepthInfo,
}
WIDTH, HEIGHT, RATE = 160, 120, 10.0


@pytest.fixture(scope="module")
def flight(rosnode, module_launch):
    """Run sim + node until 25 depth frames are out; yields the recorder, a TF buffer and the launch."""
    tf_buffer = tf2_ros.Buffer(cache_time=rosnode.Duration(60))
    listener = tf2_ros.TransformListener(tf_buffer)
    rec = Recorder(TOPICS)
    proc = module_launch("drone_depth.launch", "model:=oracle", f"sim_width:={WIDTH}", f"sim_height:={HEIGHT}",
                         f"sim_rate:={RATE}")
    wait_for(lambda: len(rec.get(OUT + "info")) >= 25, 90, message="25 depth frames")
    yield rec, tf_buffer, proc
    rec.close()
    listener.unregister()


def test_outputs_have_encodings_headers_frames_and_rate(flight):
    rec, _, proc = flight
    input_stamps = {m.header.stamp for m in rec.get("/camera/rgb/image_raw")}
    for topic in ("image", "colored", "points", "camera_info", "info"):
        msgs = rec.get(OUT + topic)
        assert msgs, topic
        for msg in msgs:
            assert msg.header.frame_id == "camera_link_optical", topic
            assert msg.header.stamp in input_stamps, topic  # header copied from an input image
    assert {m.encoding for m in rec.get(OUT + "image")} == {"32FC1"}
    assert {m.encoding for m in rec.get(OUT + "colored")} == {"bgr8"}
    assert {m.encoding for m in rec.get("/camera/rgb/image_raw")} == {"rgb8"}
    assert {m.encoding for m in rec.get("/camera/depth/image_raw")} == {"32FC1"}
    cloud = rec.get(OUT + "points")[-1]
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"] and (cloud.width, cloud.height) == (WIDTH, HEIGHT)
    info = rec.get(OUT + "camera_info")[-1]
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    # rates: the simulator at its configured rate, the oracle node keeping up with it
    sim_stamps = sorted(m.header.stamp.to_sec() for m in rec.get("/camera/rgb/image_raw"))
    sim_rate = (len(sim_stamps) - 1) / (sim_stamps[-1] - sim_stamps[0])
    out_stamps = sorted(m.header.stamp.to_sec() for m in rec.get(OUT + "info"))
    out_rate = (len(out_stamps) - 1) / (out_stamps[-1] - out_stamps[0])
    assert 0.8 * RATE <= sim_rate <= 1.1 * RATE, sim_rate
    assert out_rate >= 0.7 * RATE, out_rate
    last = rec.get(OUT + "info")[-1]
    assert last.model == "oracle" and last.depth_kind == DepthInfo.METRIC and last.frames_out >= 25
    assert last.frames_in >= last.frames_out and last.frames_rejected == 0
    pose = rec.get("/mavros/local_position/pose")[-1]
    assert pose.header.frame_id == "map"


def test_cloud_points_lie_on_rendered_surfaces(flight):
    """Points -> map frame through TF; re-render the world from that TF pose: depth agrees within 1 %."""
    rec, tf_buffer, _ = flight
    config = load_sim_config({**load_yaml(ROOT / "config" / "sim.yaml"), "width": WIDTH, "height": HEIGHT,
                              "rate_hz": RATE})  # the world the launch file's simulator renders
    simulator = DroneSimulator(config)
    checked = 0
    for cloud_msg in rec.get(OUT + "points")[-10:]:
        try:
            tf = tf_buffer.lookup_transform("map", cloud_msg.header.frame_id, cloud_msg.header.stamp,
                                            rospy.Duration(1.0))
        except tf2_ros.TransformException:
            continue
        _, expected = simulator.render_at(conversions.transform_to_matrix(tf))  # (H, W) metres
        cloud = conversions.cloud_from_msg(cloud_msg)
        valid = np.isfinite(cloud["z"]) & np.isfinite(expected)
        assert valid.mean() > 0.3
        error = np.abs(cloud["z"][valid] - expected[valid])
        assert np.percentile(error / expected[valid], 99) < 0.01
        # the points reproject through depth/camera_info onto their own pixels
        info = rec.by_stamp(OUT + "camera_info", cloud_msg.header.stamp.to_sec())
        k = np.array(info.K).reshape(3, 3)
        u = cloud["x"] / cloud["z"] * k[0, 0] + k[0, 2]
        vv, uu = np.mgrid[0:HEIGHT, 0:WIDTH]
        np.testing.assert_allclose(u[valid], uu[valid], atol=1e-3)
        checked += 1
    assert checked >= 3


def test_depth_image_matches_ground_truth_of_same_stamp(flight):
    rec, _, _ = flight
    bridge = CvBridge()
    matched = 0
    for msg in rec.get(OUT + "image")[-10:]:
        gt_msg = rec.by_stamp("/camera/depth/image_raw", msg.header.stamp.to_sec())
        if gt_msg is None:
            continue
        out, gt = bridge.imgmsg_to_cv2(msg), bridge.imgmsg_to_cv2(gt_msg)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(gt))
        np.testing.assert_allclose(out[np.isfinite(gt)], gt[np.isfinite(gt)], rtol=1e-6)
        matched += 1
    assert matched >= 5
