"""Back-projection of depth maps into point clouds (structured numpy arrays, no per-point loops)."""
from __future__ import annotations

import functools

import cv2
import numpy as np

from .types import Intrinsics

# One point as RViz reads it: xyz float32 plus colour packed into a float32 "rgb" field (PCL layout).
XYZRGB_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


@functools.lru_cache(maxsize=8)  # once per camera_info (Intrinsics is frozen, so hashable)
def pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ray slopes (x / z, y / z) in the optical frame, each (H, W) float32.

    A pixel with depth Z back-projects to (X, Y, Z) = (ray_x * Z, ray_y * Z, Z): Z along the optical
    axis as in REP 118, not a range along a unit ray. Pinhole: ((u - cx) / fx, (v - cy) / fy); with lens
    distortion the pixel grid is undistorted by OpenCV (the model image_geometry wraps, vectorised here
    because image_geometry's rectifyPoint takes one point at a time).
    """
    if intrinsics.distortion_model and any(intrinsics.distortion):
        return _undistorted_rays(intrinsics)
    u = (np.arange(intrinsics.width, dtype=np.float32) - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx)
    v = (np.arange(intrinsics.height, dtype=np.float32) - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy)
    ray_x = np.broadcast_to(u[None, :], (intrinsics.height, intrinsics.width))  # (H, W)
    ray_y = np.broadcast_to(v[:, None], (intrinsics.height, intrinsics.width))  # (H, W)
    return ray_x, ray_y


def _undistorted_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ray slopes of every pixel of a distorted image (plumb_bob / rational_polynomial or equidistant)."""
    v, u = np.mgrid[0:intrinsics.height, 0:intrinsics.width].astype(np.float64)  # (H, W) each
    pixels = np.stack([u.ravel(), v.ravel()], axis=-1)[:, None, :]  # (H * W, 1, 2)
    coefficients = np.asarray(intrinsics.distortion, dtype=np.float64)
    if intrinsics.distortion_model == "equidistant":
        rays = cv2.fisheye.undistortPoints(pixels, intrinsics.k, coefficients[:4])  # (H * W, 1, 2)
    else:
        rays = cv2.undistortPoints(pixels, intrinsics.k, coefficients)  # (H * W, 1, 2)
    rays = rays.reshape(intrinsics.height, intrinsics.width, 2).astype(np.float32)  # (H, W, 2)
    return rays[..., 0], rays[..., 1]


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float32 (...) with bits 0x00RRGGBB, the packing RViz's RGB8 transformer reads."""
    rgb = np.asarray(rgb).astype(np.uint32)
    packed = (rgb[..., 0] << np.uint32(16)) | (rgb[..., 1] << np.uint32(8)) | rgb[..., 2]  # (...)
    return np.asarray(packed, dtype=np.uint32).view(np.float32)


def depth_to_xyzrgb(depth: np.ndarray, intrinsics: Intrinsics, rgb: np.ndarray | None = None,
                    stride: int = 1) -> np.ndarray:
    """Organised cloud (H', W') of XYZRGB_DTYPE from a metric depth map in the optical frame.

    ``depth``: float32 (H, W) metres, NaN or non-positive = invalid (the point gets NaN xyz, like
    depth_image_proc). ``rgb``: uint8 (H, W, 3) or None (white). ``stride`` keeps every n-th pixel.
    """
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth is {depth.shape[1]}x{depth.shape[0]} but intrinsics are "
                         f"{intrinsics.width}x{intrinsics.height}")
    if rgb is not None and rgb.shape[:2] != depth.shape:
        raise ValueError(f"rgb {rgb.shape[:2]} and depth {depth.shape} differ in size")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    ray_x, ray_y = pixel_rays(intrinsics)
    z = depth[::stride, ::stride].astype(np.float32)  # (H', W')
    z = np.where(np.isfinite(z) & (z > 0), z, np.float32(np.nan))
    cloud = np.empty(z.shape, dtype=XYZRGB_DTYPE)  # (H', W')
    cloud["x"] = ray_x[::stride, ::stride] * z
    cloud["y"] = ray_y[::stride, ::stride] * z
    cloud["z"] = z
    if rgb is None:
        cloud["rgb"] = pack_rgb(np.full(z.shape + (3,), 255, np.uint8))
    else:
        cloud["rgb"] = pack_rgb(rgb[::stride, ::stride])
    return cloud


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous transform to (..., 3) points."""
    return points @ transform[:3, :3].T + transform[:3, 3]
