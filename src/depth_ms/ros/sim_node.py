"""sim_camera: the embedded drone simulator as a ROS node (PX4 SITL iris_depth_camera topics).

Publishes ``/camera/rgb/image_raw`` (rgb8), ``/camera/rgb/camera_info``, ``/camera/depth/image_raw``
(32FC1 metres, NaN = no return), ``/camera/depth/camera_info``, ``/mavros/local_position/pose``,
the downward rangefinder ``/mavros/distance_sensor/lidarlite_pub`` (sensor_msgs/Range) and TF
map -> base_link (-> camera_link -> optical and -> rangefinder_link, static). Parameters: the keys of
``config/sim.yaml`` (:class:`depth_ms.sim.SimConfig`), checked strictly.
"""
from __future__ import annotations

import time

import rospy
import tf2_ros
from sensor_msgs.msg import CameraInfo, Image, Range
from geometry_msgs.msg import PoseStamped

from depth_ms.sim import DroneSimulator, SimConfig

from . import sim_messages
from .core_logging import forward_core_logs
from .params import private_params_as

_MESSAGE_TYPES = {
    sim_messages.RGB_TOPIC: Image,
    sim_messages.RGB_INFO_TOPIC: CameraInfo,
    sim_messages.DEPTH_TOPIC: Image,
    sim_messages.DEPTH_INFO_TOPIC: CameraInfo,
    sim_messages.POSE_TOPIC: PoseStamped,
    sim_messages.RANGE_TOPIC: Range,
}


def main() -> None:
    rospy.init_node("sim_camera")
    forward_core_logs()
    config = private_params_as(SimConfig)
    simulator = DroneSimulator(config)
    messages = sim_messages.SimMessages(simulator)
    publishers = {topic: rospy.Publisher(topic, msg_type, queue_size=2) for topic, msg_type in _MESSAGE_TYPES.items()}
    tf_broadcaster = tf2_ros.TransformBroadcaster()
    static_broadcaster = tf2_ros.StaticTransformBroadcaster()
    static_broadcaster.sendTransform(messages.static_transforms(rospy.Time.now()).transforms)
    rospy.loginfo(f"sim_camera: {config.width}x{config.height} at {config.rate_hz} Hz, seed {config.seed}")

    rate = rospy.Rate(config.rate_hz)
    index, render_seconds, warned = 0, 0.0, False
    while not rospy.is_shutdown():
        start = time.perf_counter()
        frame = simulator.render(index)
        render_seconds += time.perf_counter() - start
        stamp = rospy.Time.now()
        for topic, msg in messages.frame_messages(frame, stamp, seq=index):
            if topic == sim_messages.TF_TOPIC:
                tf_broadcaster.sendTransform(msg.transforms)
            else:
                publishers[topic].publish(msg)
        index += 1
        if index % 50 == 0:
            mean_ms = render_seconds / 50 * 1e3
            if mean_ms > 1e3 / config.rate_hz and not warned:
                rospy.logwarn(f"sim_camera: rendering takes {mean_ms:.0f} ms per frame, slower than "
                              f"{config.rate_hz} Hz; lower width/height or rate_hz")
                warned = True
            rospy.logdebug(f"sim_camera: {index} frames, render {mean_ms:.1f} ms")
            render_seconds = 0.0
        try:
            rate.sleep()
        except rospy.ROSTimeMovedBackwardsException:
            rospy.logwarn("sim_camera: ROS time moved backwards; continuing")
        except rospy.ROSInterruptException:
            break
