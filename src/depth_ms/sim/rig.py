"""Fixed camera mount: base_link (FLU) -> camera_link (x forward, pitched down) -> optical frame."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from depth_ms.core.transforms import make_transform

from .config import CameraMountConfig, RangefinderConfig


def camera_in_base(mount: CameraMountConfig) -> np.ndarray:
    """T_base_camera: the mount offset, pitched down by ``pitch_deg`` (a positive rotation about +y)."""
    rotation = Rotation.from_euler("y", mount.pitch_deg, degrees=True).as_matrix()
    return make_transform(rotation, (mount.x, mount.y, mount.z))


def rangefinder_in_base(mount: RangefinderConfig) -> np.ndarray:
    """T_base_rangefinder: below base_link, its x axis (the Range beam) pointing down (pitch +90 deg)."""
    return make_transform(Rotation.from_euler("y", 90.0, degrees=True).as_matrix(), (0.0, 0.0, mount.z))


def ground_tilt(slope_deg: float, uphill_azimuth_deg: float) -> np.ndarray:
    """T_map_world: the world (ground z = 0 and everything on it) tilted so it rises by ``slope_deg`` towards
    ``uphill_azimuth_deg`` (counter-clockwise from east) in the gravity-aligned map frame."""
    azimuth = np.radians(uphill_azimuth_deg)
    axis = np.array([-np.sin(azimuth), np.cos(azimuth), 0.0])  # horizontal, perpendicular to uphill
    return make_transform(Rotation.from_rotvec(-np.radians(slope_deg) * axis).as_matrix(), (0.0, 0.0, 0.0))
