"""Message builders and a topic recorder for the ROS tests."""
from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
import rospy
from cv_bridge import CvBridge
from sensor_msgs.msg import CameraInfo, Image

from depth_ms.core.types import Intrinsics
from depth_ms.ros import conversions

BRIDGE = CvBridge()


def mean_abs_rel(depth: np.ndarray, gt: np.ndarray) -> float:
    """Mean |depth - gt| / gt over pixels finite in both (metres, no alignment)."""
    valid = np.isfinite(depth) & np.isfinite(gt)
    return float(np.mean(np.abs(depth[valid] - gt[valid]) / gt[valid]))


def image_msg(array: np.ndarray, encoding: str, stamp: float, frame_id: str = "cam_optical") -> Image:
    msg = BRIDGE.cv2_to_imgmsg(array, encoding=encoding)
    msg.header.stamp = rospy.Time.from_sec(stamp)
    msg.header.frame_id = frame_id
    return msg


def info_msg(width: int, height: int, stamp: float, fx: float = 100.0, frame_id: str = "cam_optical") -> CameraInfo:
    header = image_msg(np.zeros((1, 1), np.uint8), "mono8", stamp, frame_id).header
    return conversions.camera_info_from_intrinsics(
        Intrinsics(fx, fx, (width - 1) / 2, (height - 1) / 2, width, height), header)


class Recorder:
    """Subscribes to topics and keeps every message, indexed by topic and stamp."""

    def __init__(self, topics: dict[str, type]) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, list] = defaultdict(list)
        self.subscribers = [rospy.Subscriber(topic, msg_type, self._callback, callback_args=topic, queue_size=50,
                                             buff_size=2 ** 26)
                            for topic, msg_type in topics.items()]

    def _callback(self, msg, topic: str) -> None:
        with self.lock:
            self.messages[topic].append(msg)

    def get(self, topic: str) -> list:
        with self.lock:
            return list(self.messages[topic])

    def by_stamp(self, topic: str, stamp: float):
        for msg in self.get(topic):
            if abs(msg.header.stamp.to_sec() - stamp) < 1e-6:
                return msg
        return None

    def close(self) -> None:
        for sub in self.subscribers:
            sub.unregister()
