"""ROS message <-> numpy conversions (cv_bridge for images, one bulk copy for clouds)."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import rospy
import tf2_ros
from cv_bridge import CvBridge, CvBridgeError
from geometry_msgs.msg import Pose, PoseStamped, TransformStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from depth_ms.core.image_ops import BadInputError, check_rgb
from depth_ms.core.pointcloud import XYZRGB_DTYPE
from depth_ms.core.types import DISTORTION_MODELS, Intrinsics

_BRIDGE = CvBridge()

# Colour encodings accepted on the RGB topic, and what happens to them.
RGB_CONVERSIONS = {
    "rgb8": "used as is",
    "bgr8": "channels swapped",
    "rgba8": "alpha dropped",
    "bgra8": "alpha dropped, channels swapped",
    "mono8": "grey replicated to three channels",
}
DEPTH_ENCODINGS = ("32FC1", "16UC1")  # REP 118 metres, or millimetres (OpenNI style)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image of a colour or grey encoding -> (H, W, 3) uint8 RGB.

    Depth encodings (32FC1, 16UC1) and anything not in RGB_CONVERSIONS raise BadInputError naming
    the encoding: those are not camera images, and guessing would publish nonsense.
    """
    if msg.encoding not in RGB_CONVERSIONS:
        hint = " (a depth image on the RGB topic?)" if msg.encoding in DEPTH_ENCODINGS else ""
        raise BadInputError(f"unsupported image encoding '{msg.encoding}'{hint}; accepted: "
                            f"{', '.join(RGB_CONVERSIONS)}")
    _check_buffer(msg)
    try:
        rgb = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")  # (H, W, 3)
    except CvBridgeError as exc:
        raise BadInputError(f"cannot convert {msg.encoding} image: {exc}") from None
    return check_rgb(rgb)


def image_to_depth(msg: Image) -> np.ndarray:
    """32FC1 (metres) or 16UC1 (millimetres, 0 = invalid) -> (H, W) float32 metres, NaN invalid."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise BadInputError(f"depth image encoding '{msg.encoding}' is not one of {', '.join(DEPTH_ENCODINGS)}")
    _check_buffer(msg)
    depth = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough")  # (H, W)
    if msg.encoding == "16UC1":
        metres = depth.astype(np.float32) / 1000.0
        metres[depth == 0] = np.nan
        return metres
    depth = np.array(depth, dtype=np.float32)
    depth[~np.isfinite(depth)] = np.nan
    return depth


def _check_buffer(msg: Image) -> None:
    """Reject images whose data is shorter than height * step (truncated or lying headers)."""
    if msg.width == 0 or msg.height == 0:
        raise BadInputError(f"empty image {msg.width}x{msg.height}")
    if len(msg.data) < msg.height * msg.step:
        raise BadInputError(f"image data has {len(msg.data)} bytes, header says {msg.height}x{msg.step}")


def depth_to_image(depth: np.ndarray, header) -> Image:
    """(H, W) float32 -> 32FC1 Image with the given header."""
    msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(depth, dtype=np.float32), encoding="32FC1")
    msg.header = header
    return msg


def bgr_to_image(bgr: np.ndarray, header) -> Image:
    msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(bgr), encoding="bgr8")
    msg.header = header
    return msg


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(rgb), encoding="rgb8")
    msg.header = header
    return msg


_POINT_FIELDS = [PointField(name=name, offset=XYZRGB_DTYPE.fields[name][1], datatype=PointField.FLOAT32, count=1)
                 for name in XYZRGB_DTYPE.names]


def cloud_to_msg(cloud: np.ndarray, header) -> PointCloud2:
    """Organised (H, W) XYZRGB_DTYPE array -> PointCloud2 in one copy.

    Written here rather than with ``sensor_msgs.point_cloud2.create_cloud`` because that packs one
    point at a time with struct (about 110 ms for 848x480 here, more than this node's whole per-frame
    overhead; see bench/node_overhead.py); ros_numpy is not packaged for Debian.
    """
    if cloud.dtype != XYZRGB_DTYPE or cloud.ndim != 2:
        raise ValueError(f"expected an (H, W) array of {XYZRGB_DTYPE}, got {cloud.dtype} {cloud.shape}")
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = cloud.shape
    msg.fields = _POINT_FIELDS
    msg.is_bigendian = False
    msg.point_step = XYZRGB_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(np.isfinite(cloud["z"]).all())
    msg.data = np.ascontiguousarray(cloud).tobytes()
    return msg


def cloud_from_msg(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 written by :func:`cloud_to_msg` -> (H, W) XYZRGB_DTYPE (tests, labeller)."""
    names = [f.name for f in msg.fields]
    if names != list(XYZRGB_DTYPE.names) or msg.point_step != XYZRGB_DTYPE.itemsize:
        raise BadInputError(f"cloud fields {names} (step {msg.point_step}) are not x, y, z, rgb float32")
    return np.frombuffer(msg.data, dtype=XYZRGB_DTYPE).reshape(msg.height, msg.width)


def intrinsics_from_camera_info(msg: CameraInfo) -> Intrinsics:
    """CameraInfo -> Intrinsics (from K; binning/ROI are not supported and rejected)."""
    if msg.binning_x > 1 or msg.binning_y > 1 or msg.roi.width or msg.roi.height:
        raise BadInputError("camera_info with binning or ROI is not supported")
    intrinsics = Intrinsics.from_k(msg.K, msg.width, msg.height)
    if not intrinsics.is_valid():
        raise BadInputError(f"camera_info has invalid K {list(msg.K)} or size {msg.width}x{msg.height}")
    if any(msg.D):
        if msg.distortion_model not in DISTORTION_MODELS:
            raise BadInputError(f"camera_info distortion model '{msg.distortion_model}' is not one of "
                                f"{', '.join(DISTORTION_MODELS)}")
        intrinsics = replace(intrinsics, distortion_model=msg.distortion_model, distortion=tuple(msg.D))
    return intrinsics


def camera_info_from_intrinsics(intrinsics: Intrinsics, header) -> CameraInfo:
    """A CameraInfo for ``intrinsics`` with their distortion (plumb_bob with zeros when there is none)."""
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = intrinsics.width, intrinsics.height
    msg.distortion_model = intrinsics.distortion_model or "plumb_bob"
    msg.D = list(intrinsics.distortion) if intrinsics.distortion_model else [0.0] * 5
    msg.K = intrinsics.k.flatten().tolist()
    msg.R = np.eye(3).flatten().tolist()
    msg.P = np.hstack([intrinsics.k, np.zeros((3, 1))]).flatten().tolist()
    return msg


def matrix_to_pose(matrix: np.ndarray) -> Pose:
    """4x4 homogeneous transform -> geometry_msgs/Pose."""
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in matrix[:3, 3])
    qx, qy, qz, qw = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    return pose


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 homogeneous transform."""
    matrix = np.eye(4)
    q = pose.orientation
    matrix[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    matrix[:3, 3] = pose.position.x, pose.position.y, pose.position.z
    return matrix


def matrix_to_transform(matrix: np.ndarray, parent: str, child: str, stamp) -> TransformStamped:
    """4x4 transform (child pose in parent) -> TransformStamped."""
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    pose = matrix_to_pose(matrix)
    msg.transform.translation.x = pose.position.x
    msg.transform.translation.y = pose.position.y
    msg.transform.translation.z = pose.position.z
    msg.transform.rotation = pose.orientation
    return msg


def transform_to_matrix(msg: TransformStamped) -> np.ndarray:
    """TransformStamped (child pose in parent) -> 4x4 transform."""
    t, q = msg.transform.translation, msg.transform.rotation
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    matrix[:3, 3] = t.x, t.y, t.z
    return matrix


def lookup_pose(buffer, fixed_frame: str, frame: str, stamp, timeout: float) -> Optional[np.ndarray]:
    """4x4 pose of ``frame`` in ``fixed_frame`` at ``stamp`` from a tf2 buffer, or None when TF lacks it."""
    try:
        msg = buffer.lookup_transform(fixed_frame, frame, stamp, rospy.Duration(timeout))
    except tf2_ros.TransformException:  # lookup, connectivity, extrapolation, invalid argument, timeout
        return None
    return transform_to_matrix(msg)


def matrix_to_pose_stamped(matrix: np.ndarray, frame_id: str, stamp) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose = matrix_to_pose(matrix)
    return msg
