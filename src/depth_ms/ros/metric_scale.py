"""The depth node's metric scale in ROS terms: the rangefinder subscription, TF lookups, log lines."""
from __future__ import annotations

from typing import Optional

import message_filters
import numpy as np
import rospy
from sensor_msgs.msg import Range

from depth_ms.core.types import DepthKind, Intrinsics
from depth_ms.metric import MetricScaler, ScaleConfig, ScaleContext, ScaleEstimate
from depth_ms.metric.scaler import RangeReading

from . import conversions


RANGE_HISTORY = 200  # rangefinder messages kept (PX4's lidar publishes at up to 50 Hz: 4 s)


class NodeMetricScale:
    """Feeds :class:`MetricScaler` with what a ROS graph knows about each frame and says what it decided."""

    def __init__(self, config: ScaleConfig, kind: DepthKind, pose_frame: str, pose_timeout: float,
                 note_period: float) -> None:
        self.config = config
        self.scaler = MetricScaler(config, kind)
        self.pose_frame, self.pose_timeout, self.note_period = pose_frame, pose_timeout, note_period
        self.tf_buffer = None  # set by the node when it listens to TF
        self._ranges: Optional[message_filters.Cache] = None
        if config.reads_rangefinder:  # a history, so a frame that waited for the model still finds its own reading
            self._ranges = message_filters.Cache(message_filters.Subscriber(config.rangefinder.topic, Range,
                                                                            queue_size=5), cache_size=RANGE_HISTORY)

    def reset(self) -> None:
        self.scaler.reset()

    def estimate(self, values: np.ndarray, intrinsics: Optional[Intrinsics], stamp: rospy.Time,
                 pose: Optional[np.ndarray], gt_depth: Optional[np.ndarray]) -> ScaleEstimate:
        """This frame's metric scale from the configured source; logs when its state changes."""
        config = self.config
        context = ScaleContext(stamp.to_sec(), intrinsics, pose if config.uses_pose else None,
                               self._range_reading(stamp) if config.reads_rangefinder else None,
                               gt_depth if config.source == "ground_truth" else None)
        estimate = self.scaler.update(values, context)
        if estimate.change:
            (rospy.loginfo if estimate.metric else rospy.logwarn)(estimate.change)
        if not estimate.metric:
            topics = ("depth/image not published, depth/points carries the display stretch "
                      "(scale.display_stretch), not metres" if config.display_stretch
                      else "depth/image and depth/points not published")
            rospy.logwarn_throttle_identical(
                self.note_period, f"no metric scale ({estimate.reason}): {topics}; the relative map is on "
                "depth/relative")
        return estimate

    def _range_reading(self, stamp: rospy.Time) -> Optional[RangeReading]:
        """The rangefinder reading nearest the image stamp if within ``max_age`` of it and within its range,
        with the sensor's pose."""
        def gap(m: Range) -> float:
            return abs((m.header.stamp - stamp).to_sec())

        around = [self._ranges.getElemBeforeTime(stamp), self._ranges.getElemAfterTime(stamp)]
        nearest = [m for m in around if m is not None]
        if not nearest:
            return None
        msg = min(nearest, key=gap)
        if gap(msg) > self.config.rangefinder.max_age:
            return None
        if not msg.min_range <= msg.range <= msg.max_range or self.tf_buffer is None:
            return None
        pose = conversions.lookup_pose(self.tf_buffer, self.pose_frame, msg.header.frame_id, msg.header.stamp,
                                       self.pose_timeout)
        return RangeReading(float(msg.range), pose) if pose is not None else None
