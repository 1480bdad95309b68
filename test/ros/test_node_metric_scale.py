"""The depth node's rangefinder pairing: each frame takes the reading nearest its own stamp, so a frame that
waited for the model still finds its reading after newer ones arrived."""
import numpy as np
import rospy
import tf2_ros
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import Range

from depth_ms.core.types import DepthKind
from depth_ms.metric.config import load_scale_config
from depth_ms.ros.metric_scale import NodeMetricScale


def _range(stamp: float, distance: float) -> Range:
    msg = Range(min_range=0.1, max_range=40.0, range=distance)
    msg.header.stamp, msg.header.frame_id = rospy.Time.from_sec(stamp), "rangefinder_link"
    return msg


def _static_mount() -> tf2_ros.Buffer:
    buffer = tf2_ros.Buffer()
    mount = TransformStamped()
    mount.header.frame_id, mount.child_frame_id = "map", "rangefinder_link"
    mount.transform.translation.z = 5.0
    mount.transform.rotation.y, mount.transform.rotation.w = np.sqrt(0.5), np.sqrt(0.5)  # x axis straight down
    buffer.set_transform_static(mount, "test")
    return buffer


def test_each_frame_takes_the_rangefinder_reading_nearest_its_stamp(rosnode):
    config = load_scale_config({"source": "rangefinder"})
    scale = NodeMetricScale(config, DepthKind.AFFINE_DEPTH, "map", 0.05, 5.0)
    scale.tf_buffer = _static_mount()
    for stamp, distance in ((10.0, 5.0), (10.1, 5.1), (10.2, 5.2), (10.6, 5.6)):
        scale._ranges.add(_range(stamp, distance))
    assert scale._range_reading(rospy.Time.from_sec(10.1)).distance == 5.1  # not the latest (5.6)
    assert scale._range_reading(rospy.Time.from_sec(10.04)).distance == 5.0  # the nearest of 10.0 and 10.1
    assert scale._range_reading(rospy.Time.from_sec(10.55)).distance == 5.6
    assert scale._range_reading(rospy.Time.from_sec(11.0)) is None  # 0.4 s from the nearest: stale
