"""ROS messages of one simulator frame, in the PX4 SITL ``iris_depth_camera`` layout."""
from __future__ import annotations

from typing import Iterator

import rospy
from sensor_msgs.msg import Range
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from depth_ms.sim import DroneSimulator, SimFrame

from . import conversions

RGB_TOPIC = "/camera/rgb/image_raw"
RGB_INFO_TOPIC = "/camera/rgb/camera_info"
DEPTH_TOPIC = "/camera/depth/image_raw"
DEPTH_INFO_TOPIC = "/camera/depth/camera_info"
POSE_TOPIC = "/mavros/local_position/pose"
RANGE_TOPIC = "/mavros/distance_sensor/lidarlite_pub"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"


class SimMessages:
    """Turns :class:`SimFrame` objects into (topic, message) pairs."""

    def __init__(self, simulator: DroneSimulator) -> None:
        self.simulator = simulator
        self.frames = simulator.config.frames

    def static_transforms(self, stamp: rospy.Time) -> TFMessage:
        """base_link -> camera_link -> optical frame and base_link -> rangefinder (fixed mounts)."""
        sim = self.simulator
        return TFMessage(transforms=[
            conversions.matrix_to_transform(sim.T_base_camera, self.frames.base, self.frames.camera, stamp),
            conversions.matrix_to_transform(sim.T_camera_optical, self.frames.camera, self.frames.optical, stamp),
            conversions.matrix_to_transform(sim.T_base_rangefinder, self.frames.base, self.frames.rangefinder,
                                            stamp),
        ])

    def frame_messages(self, frame: SimFrame, stamp: rospy.Time, seq: int = 0) -> Iterator[tuple[str, object]]:
        """Images, camera infos, pose and the map -> base_link transform of one frame, all at ``stamp``."""
        header = Header(seq=seq, stamp=stamp, frame_id=self.frames.optical)
        info = conversions.camera_info_from_intrinsics(frame.intrinsics, header)
        yield RGB_TOPIC, conversions.rgb_to_image(frame.rgb, header)
        yield RGB_INFO_TOPIC, info
        yield DEPTH_TOPIC, conversions.depth_to_image(frame.depth, header)
        yield DEPTH_INFO_TOPIC, info
        yield POSE_TOPIC, conversions.matrix_to_pose_stamped(frame.T_map_base, self.frames.map, stamp)
        if frame.range is not None:
            yield RANGE_TOPIC, self.range_message(frame.range, stamp, seq)
        yield TF_TOPIC, TFMessage(transforms=[
            conversions.matrix_to_transform(frame.T_map_base, self.frames.map, self.frames.base, stamp)])

    def range_message(self, distance: float, stamp: rospy.Time, seq: int) -> Range:
        """The rangefinder reading as MAVROS's distance_sensor plugin publishes it."""
        sensor = self.simulator.config.rangefinder
        return Range(header=Header(seq=seq, stamp=stamp, frame_id=self.frames.rangefinder),
                     radiation_type=Range.INFRARED, field_of_view=sensor.field_of_view,
                     min_range=sensor.min_range, max_range=sensor.max_range, range=distance)
