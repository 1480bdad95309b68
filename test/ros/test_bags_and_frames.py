"""sim_record bags read by the real rosbag tools; PX4-style optical TF; strict parameters."""
import subprocess

import numpy as np
import pytest
import rosbag
import tf2_ros

from depth_ms.ros import conversions

from conftest import wait_for

SIM_TOPICS = ["/camera/rgb/image_raw", "/camera/rgb/camera_info", "/camera/depth/image_raw",
              "/camera/depth/camera_info", "/mavros/local_position/pose", "/mavros/distance_sensor/lidarlite_pub",
              "/tf", "/tf_static"]


def test_sim_record_writes_a_bag_rosbag_info_lists(tmp_path):
    bag_path = tmp_path / "flight.bag"
    result = subprocess.run(["rosrun", "depth_ms", "sim_record", "--frames", "6", "--output", str(bag_path),
                             "--set", "width=64", "--set", "height=48"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = subprocess.run(["rosbag", "info", "--yaml", str(bag_path)], capture_output=True, text=True, check=True)
    for topic in SIM_TOPICS:
        assert f"topic: {topic}" in info.stdout, topic
    with rosbag.Bag(str(bag_path)) as bag:
        counts = {topic: bag.get_message_count(topic) for topic in SIM_TOPICS}
        assert counts == {**{t: 6 for t in SIM_TOPICS}, "/tf_static": 1}
        stamps = [msg.header.stamp.to_sec() for _, msg, _ in bag.read_messages("/camera/depth/image_raw")]
        depth_msg = next(msg for _, msg, _ in bag.read_messages("/camera/depth/image_raw"))
    np.testing.assert_allclose(np.diff(stamps), 0.1, atol=1e-6)  # 10 Hz default
    depth = conversions.image_to_depth(depth_msg)
    assert depth.shape == (48, 64) and depth_msg.encoding == "32FC1"
    assert np.isnan(depth).any() and np.nanmin(depth) >= 0.2  # sky is NaN, nothing closer than min range


def test_sim_record_rejects_unknown_key_by_name(tmp_path):
    result = subprocess.run(["rosrun", "depth_ms", "sim_record", "--output", str(tmp_path / "x.bag"),
                             "--set", "widht=64"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "'widht'" in result.stderr
    assert not (tmp_path / "x.bag").exists()


def test_unknown_node_parameter_stops_the_node_naming_it(launch):
    proc = launch(command=["rosrun", "depth_ms", "depth_node", "_cloud_strid:=2", "__name:=strict_check"])
    proc.proc.wait(timeout=60)
    output = proc.output()
    assert proc.proc.returncode != 0
    assert "'cloud_strid'" in output


def test_px4_mode_publishes_optical_frame_transform(rosnode, launch):
    """PX4 SITL stamps images camera_link: the node can publish camera_link -> camera_link_optical itself."""
    launch(command=["rosrun", "depth_ms", "depth_node", "_optical_frame_id:=camera_link_optical",
                    "_optical_parent_frame:=camera_link", "_stats_period:=0"])
    buffer = tf2_ros.Buffer()
    listener = tf2_ros.TransformListener(buffer)
    wait_for(lambda: buffer.can_transform("camera_link", "camera_link_optical", rosnode.Time(0)), 30,
             message="static optical transform")
    matrix = conversions.transform_to_matrix(buffer.lookup_transform("camera_link", "camera_link_optical",
                                                                     rosnode.Time(0)))
    listener.unregister()
    # optical z (forward) is camera_link x, optical x (right) is -y (left), optical y (down) is -z (up)
    np.testing.assert_allclose(matrix[:3, 2], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(matrix[:3, 0], [0, -1, 0], atol=1e-6)
    np.testing.assert_allclose(matrix[:3, 1], [0, 0, -1], atol=1e-6)


def test_lookup_pose_reads_tf_at_the_stamp_and_says_none_without_it():
    """conversions.lookup_pose on an offline tf2 buffer: interpolated pose, None for unknown frames."""
    import rospy
    import tf2_ros

    from depth_ms.core.transforms import make_transform

    buffer = tf2_ros.Buffer()
    for sec, x in ((1.0, 0.0), (2.0, 2.0)):
        msg = conversions.matrix_to_transform(make_transform(np.eye(3), [x, 0.0, 1.0]), "map", "cam",
                                              rospy.Time.from_sec(sec))
        buffer.set_transform(msg, "test")
    pose = conversions.lookup_pose(buffer, "map", "cam", rospy.Time.from_sec(1.5), 0.0)
    np.testing.assert_allclose(pose[:3, 3], [1.0, 0.0, 1.0])
    assert conversions.lookup_pose(buffer, "map", "other", rospy.Time.from_sec(1.5), 0.0) is None
    assert conversions.lookup_pose(buffer, "map", "cam", rospy.Time.from_sec(5.0), 0.0) is None


def test_camera_info_keeps_its_lens_model_through_the_node_conversions():
    """plumb_bob and equidistant survive camera_info -> Intrinsics -> depth/camera_info (the depth image stays on
    the camera's distorted pixel grid); an unknown model with coefficients is refused by name."""
    from depth_ms.core.image_ops import BadInputError
    from depth_ms.core.types import Intrinsics

    for model, d in (("plumb_bob", [-0.28, 0.07, 0.001, -0.0005, 0.0]), ("equidistant", [0.05, -0.01, 0.002, 0.0])):
        msg = conversions.camera_info_from_intrinsics(Intrinsics(300.0, 300.0, 159.5, 119.5, 320, 240, model,
                                                                 tuple(d)), None)
        intrinsics = conversions.intrinsics_from_camera_info(msg)
        assert (intrinsics.distortion_model, list(intrinsics.distortion)) == (model, d)
        half = conversions.camera_info_from_intrinsics(intrinsics.scaled_to(160, 120), None)
        assert (half.distortion_model, list(half.D), half.K[0]) == (model, d, 150.0)
    msg.distortion_model, msg.D = "kannala_brandt_9", [0.1] * 9
    with pytest.raises(BadInputError, match="distortion model 'kannala_brandt_9'"):
        conversions.intrinsics_from_camera_info(msg)
    msg.D = [0.0] * 9  # a model name without coefficients is a pinhole camera
    assert conversions.intrinsics_from_camera_info(msg).distortion_model == ""
