"""Carry the previous frame's depth latent into the current view (warm-start scheme "renoise_warp").

Two sources of motion: the drone pose (``Frame.pose_map_camera``, optical frame, with intrinsics)
and dense optical flow between the two frames (OpenCV's DIS, used when no pose is known). Both give,
for every current latent pixel, where it was in the previous frame; the previous latent is sampled
there (bilinear, edges replicated). Latents are (1, C, h, w) numpy arrays at 1/f of the processing
image size.
"""
from __future__ import annotations

import cv2
import numpy as np

from depth_ms.core.types import Intrinsics


def _sample(latent: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """latent (1, C, h, w) sampled at float pixel maps (h, w) -> (1, C, h, w)."""
    chans = [cv2.remap(latent[0, c], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for c in range(latent.shape[1])]
    return np.stack(chans)[None].astype(latent.dtype)


def flow_to_previous(prev_grey: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """(H, W, 2) flow from the current frame to the previous one (uint8 greys of equal size)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    # (H, W, 2): current pixel + flow = previous pixel
    return dis.calc(np.ascontiguousarray(grey), np.ascontiguousarray(prev_grey), None)


def warp_by_flow(latent: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp a latent with image-resolution flow (current -> previous), scaled to the latent grid."""
    h, w = latent.shape[-2:]
    fh, fw = flow.shape[:2]
    small = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA)  # (h, w, 2) in image pixels
    small[..., 0] *= w / fw
    small[..., 1] *= h / fh
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return _sample(latent, grid_x + small[..., 0], grid_y + small[..., 1])


def warp_by_pose(latent: np.ndarray, prev_depth: np.ndarray, intrinsics: Intrinsics,
                 pose_prev: np.ndarray, pose_curr: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Backward-warp a latent with the camera motion and the previous depth (metres, (h, w) at latent size).

    The current depth is unknown, so each current pixel starts with the previous depth at the same
    pixel and is refined by re-sampling the previous depth where it projects (``iterations`` times).
    ``intrinsics`` describe the latent grid; poses are 4x4 optical-frame-to-map transforms.
    """
    h, w = latent.shape[-2:]
    prev_from_curr = np.linalg.inv(pose_prev) @ pose_curr  # (4, 4)
    rot, trans = prev_from_curr[:3, :3], prev_from_curr[:3, 3]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy,
                     np.ones_like(u)], axis=-1)  # (h, w, 3)
    depth = prev_depth.astype(np.float64)
    map_x, map_y = u.astype(np.float32), v.astype(np.float32)
    for _ in range(max(1, iterations)):
        points = rays * depth[..., None] @ rot.T + trans  # (h, w, 3) in the previous camera
        z = np.where(points[..., 2] > 1e-3, points[..., 2], np.nan)
        map_x = (intrinsics.fx * points[..., 0] / z + intrinsics.cx).astype(np.float32)
        map_y = (intrinsics.fy * points[..., 1] / z + intrinsics.cy).astype(np.float32)
        behind = ~np.isfinite(map_x) | ~np.isfinite(map_y)
        map_x[behind], map_y[behind] = u[behind], v[behind]
        depth = cv2.remap(prev_depth.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    return _sample(latent, map_x, map_y)
