"""Fixed camera mount: base_link (FLU) -> camera_link (x forward, pitched down) -> optical frame."""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from depth_ms.core.transforms import make_transform

from .config import CameraMountConfig

# REP 103 optical frame (z forward, x right, y down) in a body-style camera frame: static rpy (-pi/2, 0, -pi/2),
# roll/pitch/yaw about fixed x/y/z axes as in tf ("xyz" extrinsic in scipy).
OPTICAL_RPY = (-math.pi / 2, 0.0, -math.pi / 2)


def camera_in_base(mount: CameraMountConfig) -> np.ndarray:
    """T_base_camera: the mount offset, pitched down by ``pitch_deg`` (a positive rotation about +y)."""
    rotation = Rotation.from_euler("y", mount.pitch_deg, degrees=True).as_matrix()
    return make_transform(rotation, (mount.x, mount.y, mount.z))


def optical_in_camera() -> np.ndarray:
    """T_camera_optical: the fixed REP 103 axis permutation."""
    return make_transform(Rotation.from_euler("xyz", OPTICAL_RPY).as_matrix(), (0.0, 0.0, 0.0))
