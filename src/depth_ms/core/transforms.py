"""4x4 homogeneous rigid transforms (numpy only).

Naming: ``T_a_b`` is the pose of frame b in frame a; it maps points from b to a
(``p_a = T_a_b @ p_b``), so ``T_a_c = T_a_b @ T_b_c``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

# REP 103 optical frame (z forward, x right, y down) in a body-style camera frame (x forward, z up):
# static rpy (-pi/2, 0, -pi/2), roll/pitch/yaw about fixed x/y/z axes as in tf ("xyz" extrinsic in scipy).
OPTICAL_RPY = (-math.pi / 2, 0.0, -math.pi / 2)


def make_transform(rotation: np.ndarray, translation) -> np.ndarray:
    """4x4 transform from a 3x3 rotation and a 3-vector translation."""
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return transform



def optical_in_camera() -> np.ndarray:
    """T_camera_optical: the fixed REP 103 axis permutation from camera_link to its optical frame."""
    return make_transform(Rotation.from_euler("xyz", OPTICAL_RPY).as_matrix(), (0.0, 0.0, 0.0))
