"""4x4 homogeneous rigid transforms (numpy only).

Naming: ``T_a_b`` is the pose of frame b in frame a; it maps points from b to a
(``p_a = T_a_b @ p_b``), so ``T_a_c = T_a_b @ T_b_c``.
"""
from __future__ import annotations

import numpy as np


def make_transform(rotation: np.ndarray, translation) -> np.ndarray:
    """4x4 transform from a 3x3 rotation and a 3-vector translation."""
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return transform

