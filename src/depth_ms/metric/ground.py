"""Metric depth of the flat ground seen by a posed camera, and the ground point a rangefinder measures."""
from __future__ import annotations

from typing import Optional

import numpy as np

from depth_ms.core.pointcloud import pixel_rays
from depth_ms.core.types import Intrinsics


def ground_plane_depth(intrinsics: Intrinsics, T_map_optical: np.ndarray, ground_height: float,
                       max_distance: float, stride: int = 1) -> np.ndarray:
    """(H', W') float32 depth along the optical axis at which each pixel's ray meets the plane
    z = ``ground_height`` of the map frame; NaN where it does not (ray level or upwards, camera below
    the plane, or farther than ``max_distance``). ``stride`` keeps every n-th pixel.
    """
    ray_x, ray_y = pixel_rays(intrinsics)
    rotation, origin = T_map_optical[:3, :3], T_map_optical[:3, 3]
    # z component in the map of the optical ray (ray_x, ray_y, 1): the ray climbs dz per metre of depth.
    dz = (rotation[2, 0] * ray_x[::stride, ::stride] + rotation[2, 1] * ray_y[::stride, ::stride]
          + rotation[2, 2])  # (H', W')
    height = origin[2] - ground_height
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (-height / dz).astype(np.float32)  # (H', W')
    usable = (dz < 0) & (depth > 0) & (depth <= max_distance) & (height > 0)
    return np.where(usable, depth, np.float32(np.nan))


def rangefinder_ground_point(distance: float, T_map_sensor: np.ndarray) -> np.ndarray:
    """The map point a Range reading measures: ``distance`` along the sensor frame's x axis (REP 117 / Range)."""
    return T_map_sensor[:3, 3] + distance * T_map_sensor[:3, 0]


def project_point(point_map: np.ndarray, intrinsics: Intrinsics,
                  T_map_optical: np.ndarray) -> Optional[tuple[int, int, float]]:
    """(column, row, depth) of a map point in the image, or None when behind the camera or outside."""
    T_optical_map = np.linalg.inv(T_map_optical)
    x, y, z = T_optical_map[:3, :3] @ point_map + T_optical_map[:3, 3]
    if z <= 0:
        return None
    column = int(round(intrinsics.fx * x / z + intrinsics.cx))
    row = int(round(intrinsics.fy * y / z + intrinsics.cy))
    if not (0 <= column < intrinsics.width and 0 <= row < intrinsics.height):
        return None
    return column, row, float(z)
