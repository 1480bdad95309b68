"""Output bag of a labelling run, for replay in RViz: aligned prediction, ground truth, error images.

Topics (all stamped with the frame's original header stamp and frame id):
``/label/rgb/image_raw`` (rgb8), ``/label/camera_info``, ``/label/depth/ground_truth`` and
``/label/depth/aligned`` (32FC1 metres), ``/label/depth/error`` (32FC1 signed relative error
(p - g) / g), ``/label/depth/error_colored`` (bgr8: blue too near, red too far, black not scored),
``/label/camera_pose`` (PoseStamped of the optical frame in ``map``).
"""
from __future__ import annotations

from pathlib import Path

import rosbag
import rospy
from std_msgs.msg import Header

from depth_ms.evaluation.labels import error_to_bgr
from depth_ms.evaluation.scoring import ScoredFrame

from . import conversions

NAMESPACE = "/label"


class OutputBagWriter:
    """Sink writing one group of messages per scored frame."""

    def __init__(self, path: Path, error_range: float, map_frame: str = "map") -> None:
        self.path = Path(path)
        self.error_range = error_range
        self.map_frame = map_frame
        self._bag = rosbag.Bag(str(self.path), "w")
        self.written = 0

    def add(self, scored: ScoredFrame) -> None:
        record = scored.record
        stamp = rospy.Time.from_sec(record.stamp)
        header = Header(seq=record.index, stamp=stamp, frame_id=record.frame_id)
        error = scored.signed_rel_error  # (H, W)
        messages = [
            ("depth/ground_truth", conversions.depth_to_image(record.gt, header)),
            ("depth/aligned", conversions.depth_to_image(scored.aligned, header)),
            ("depth/error", conversions.depth_to_image(error, header)),
            ("depth/error_colored", conversions.bgr_to_image(error_to_bgr(error, self.error_range), header)),
        ]
        if record.rgb is not None:
            messages.append(("rgb/image_raw", conversions.rgb_to_image(record.rgb, header)))
        if record.intrinsics is not None:
            intrinsics = record.intrinsics
            height, width = record.gt.shape
            if intrinsics.size != (width, height) and intrinsics.same_aspect(width, height):
                intrinsics = intrinsics.scaled_to(width, height)
            messages.append(("camera_info", conversions.camera_info_from_intrinsics(intrinsics, header)))
        if record.pose is not None:
            messages.append(("camera_pose", conversions.matrix_to_pose_stamped(record.pose, self.map_frame, stamp)))
        for name, msg in messages:
            self._bag.write(f"{NAMESPACE}/{name}", msg, stamp)
        self.written += 1

    def close(self) -> None:
        self._bag.close()
