"""Temporal consistency: TAE by reprojection with the recorded pose, and flicker on static pixels.

TAE follows Video Depth Anything's ``benchmark/eval/eval_tae.py``: back-project every pixel of frame
a's aligned prediction, move it into frame b with the relative camera pose, round to the nearest pixel
(when several land on one pixel the last one wins, as there), and take AbsRel between the projected
depth and frame b's prediction where both exist and b's ground truth is valid; average with the
reverse direction; x 100. A pair whose projection lands on no valid pixel gives NaN and is left out of
the mean (VDA counts it as 0).

Flicker: over pixels that are valid in both frames and whose ground truth changes by less than
``static_threshold`` (relative), the mean of |(p_t - p_{t-1}) - (g_t - g_{t-1})| / g_t, x 100: how much
the prediction moves where the scene does not (0 for the ground truth itself).

TAE is not 0 for the ground truth itself (pixel rounding, occlusions, disocclusions): compare models
on the same bag, not against zero.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from depth_ms.core.types import Intrinsics


def interpolate_pose(stamp: float, before: Optional[tuple[float, np.ndarray]],
                     after: Optional[tuple[float, np.ndarray]]) -> Optional[np.ndarray]:
    """4x4 pose at ``stamp`` from bracketing (stamp, 4x4) poses: linear position, slerp rotation.

    With one side only, that pose is returned; with none, None.
    """
    if before is None or after is None:
        side = before or after
        return None if side is None else side[1]
    (t0, pose0), (t1, pose1) = before, after
    if t1 <= t0:
        return pose0
    weight = (stamp - t0) / (t1 - t0)
    pose = np.eye(4)
    rotations = Rotation.from_matrix(np.stack([pose0[:3, :3], pose1[:3, :3]]))
    pose[:3, :3] = Slerp([t0, t1], rotations)(stamp).as_matrix()
    pose[:3, 3] = (1.0 - weight) * pose0[:3, 3] + weight * pose1[:3, 3]
    return pose


@lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(W,) and (H,) float32 pixel coordinates."""
    return np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)


def project_depth(depth: np.ndarray, intrinsics: Intrinsics, T_b_a: np.ndarray) -> np.ndarray:
    """(H, W) float32 depth of frame a seen from frame b (0 where nothing lands), same intrinsics.

    A pixel (u, v) at depth Z lands at K (R K^-1 (u, v, 1) Z + t): with H = K R K^-1 and k = K t,
    u' = (Z h0 + k0) / (Z h2 + k2) etc., where h_i = H_i0 u + H_i1 v + H_i2 is separable in u and v.
    Rounding is half-to-even like torch.round in VDA.
    """
    height, width = depth.shape
    k = intrinsics.k
    homography = (k @ T_b_a[:3, :3] @ np.linalg.inv(k)).astype(np.float32)  # (3, 3)
    offset = (k @ T_b_a[:3, 3]).astype(np.float32)  # (3,)
    us, vs = _pixel_grid(width, height)
    planes = np.empty((3, height, width), dtype=np.float32)  # (3, H, W): u' z', v' z', z'
    for i in range(3):
        np.add((homography[i, 0] * us)[None, :], (homography[i, 1] * vs + homography[i, 2])[:, None],
               out=planes[i])
    planes *= depth
    planes += offset[:, None, None]
    u_b, v_b, z_b = planes  # (H, W) each
    with np.errstate(invalid="ignore", divide="ignore"):
        u_b /= z_b
        v_b /= z_b
        np.rint(u_b, out=u_b)
        np.rint(v_b, out=v_b)
        outside = (u_b < 0) | (u_b >= width) | (v_b < 0) | (v_b >= height) | ~(z_b > 0)  # (H, W)
    v_b *= width
    v_b += u_b  # flat target index, exact in float32 below 2**24 pixels
    dump = height * width  # points landing outside go to one extra slot (cheaper than compressing)
    np.copyto(v_b, np.float32(dump), where=outside)
    projected = np.zeros(dump + 1, dtype=np.float32)
    projected[v_b.ravel().astype(np.intp)] = z_b.ravel()  # last write wins, as in VDA
    return projected[:dump].reshape(height, width)


def _projected_abs_rel(depth_a: np.ndarray, depth_b: np.ndarray, mask_b: np.ndarray, intrinsics: Intrinsics,
                       T_b_a: np.ndarray) -> float:
    projected = project_depth(depth_a, intrinsics, T_b_a)  # (H, W)
    compare = mask_b & (projected > 0)  # (H, W)
    count = int(np.count_nonzero(compare))
    if count == 0:
        return math.nan
    error = np.zeros(depth_b.shape, dtype=np.float32)  # (H, W) |d_b - projected| / d_b where compared
    np.divide(np.abs(depth_b - projected), depth_b, out=error, where=compare)
    return float(error.sum(dtype=np.float64)) / count


def tae_pair(depth_a: np.ndarray, depth_b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray,
             intrinsics: Intrinsics, T_map_a: np.ndarray, T_map_b: np.ndarray) -> float:
    """Bidirectional TAE (percent) between consecutive aligned predictions; NaN if nothing overlaps.

    ``mask_a`` / ``mask_b``: pixels to compare at (valid ground truth); the depth must be finite there.
    """
    T_b_a = np.linalg.inv(T_map_b) @ T_map_a
    forward = _projected_abs_rel(depth_a, depth_b, mask_b, intrinsics, T_b_a)
    backward = _projected_abs_rel(depth_b, depth_a, mask_a, intrinsics, np.linalg.inv(T_b_a))
    values = [v for v in (forward, backward) if not math.isnan(v)]
    return 100.0 * sum(values) / len(values) if values else math.nan


def flicker(pred_prev: np.ndarray, pred: np.ndarray, gt_prev: np.ndarray, gt: np.ndarray, mask_prev: np.ndarray,
            mask: np.ndarray, static_threshold: float, min_pixels: int) -> tuple[float, float]:
    """(flicker percent or NaN, share of the valid pixels that are static) between two frames.

    ``mask_prev`` / ``mask``: pixels with valid ground truth and a finite prediction.
    """
    gt_change = gt - gt_prev  # (H, W)
    with np.errstate(invalid="ignore"):
        static = np.abs(gt_change) <= np.float32(static_threshold) * gt  # (H, W)
    static &= mask
    static &= mask_prev
    count = int(np.count_nonzero(static))
    share = count / max(int(np.count_nonzero(mask)), 1)
    if count < min_pixels:
        return math.nan, share
    unexplained = pred - pred_prev  # (H, W) then |(p_t - p_t-1) - (g_t - g_t-1)| / g_t where static
    unexplained -= gt_change
    np.abs(unexplained, out=unexplained)
    relative = np.zeros(gt.shape, dtype=np.float32)
    np.divide(unexplained, gt, out=relative, where=static)
    return 100.0 * float(relative.sum(dtype=np.float64)) / count, share
