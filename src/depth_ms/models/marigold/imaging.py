"""Marigold's image pre/post-processing in numpy: resize, pad, unpad.

The resize is the separable (anti-aliased) bilinear filter that diffusers' Marigold processor uses
through ``torch.nn.functional.interpolate(..., antialias=True)``; OpenCV's INTER_AREA/INTER_LINEAR
differ from it by up to a few percent of the range near edges, which breaks the 1e-4 parity bar, so
it is written here as two small weight matrices (one per axis).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from depth_ms.core.image_ops import BadInputError

MAX_PIXELS = 8192 * 8192  # larger inputs are refused (memory), not silently processed


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, antialias: bool) -> np.ndarray:
    """(n_out, n_in) weights of 1-D bilinear resampling, half-pixel centres.

    With ``antialias`` and shrinking, the triangle is widened by the scale (a box-filtered
    bilinear, as PIL and torch do); otherwise it is plain linear interpolation with edge clamping.
    """
    scale = n_in / n_out
    stretch = scale if (antialias and scale > 1.0) else 1.0
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo = max(int(centre - stretch + 0.5), 0)
        hi = min(int(centre + stretch + 0.5), n_in)
        j = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((j + 0.5 - centre) / stretch))
        if w.sum() <= 0:  # degenerate (single source pixel)
            j, w = np.array([min(int(centre), n_in - 1)]), np.ones(1)
        weights[i, j] = w / w.sum()
    return weights.astype(np.float32)


def resize(image: np.ndarray, height: int, width: int, antialias: bool) -> np.ndarray:
    """Resize (C, H, W) float32 to (C, height, width) with :func:`resize_matrix` on each axis."""
    c, h, w = image.shape
    if (h, w) == (height, width):
        return image
    wy = resize_matrix(h, height, antialias)  # (height, H)
    wx = resize_matrix(w, width, antialias)  # (width, W)
    return np.einsum("yh,chw,xw->cyx", wy, image, wx, optimize=True).astype(np.float32)  # (C, height, width)


def processing_size(height: int, width: int, max_edge: int) -> tuple[int, int]:
    """(h, w) with the longer edge ``max_edge`` (0 keeps the input size), as diffusers rounds it."""
    if max_edge <= 0:
        return height, width
    longest = max(height, width)
    h, w = height * max_edge // longest, width * max_edge // longest
    if h == 0 or w == 0:
        raise BadInputError(f"extreme aspect ratio {width}x{height}: a side would be 0 at {max_edge} px")
    return h, w


def to_model_input(rgb: np.ndarray, max_edge: int, align: int, min_side: int = 1
                   ) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (H, W, 3) -> float32 (1, 3, PH', PW') in [-1, 1], resized and edge-padded to ``align``.

    Sides shorter than ``min_side`` (the network's total stride) are edge-padded up to it, so tiny
    images (down to 1x1) still run. Returns the array and the (bottom, right) padding that
    :func:`unpad` removes.
    """
    x = rgb.transpose(2, 0, 1).astype(np.float32) / 255.0 * 2.0 - 1.0  # (3, H, W)
    h, w = processing_size(rgb.shape[0], rgb.shape[1], max_edge)
    x = resize(x, h, w, antialias=True)  # (3, h, w)
    pad_h, pad_w = max(-h % align, min_side - h), max(-w % align, min_side - w)
    x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")  # (3, h + pad_h, w + pad_w)
    return x[None], (pad_h, pad_w)


def unpad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Drop the bottom/right padding of (..., H, W)."""
    pad_h, pad_w = padding
    return x[..., : x.shape[-2] - pad_h, : x.shape[-1] - pad_w]


def thumbnail(rgb: np.ndarray, width: int = 64) -> np.ndarray:
    """Small grey float32 image in [0, 1] for scene-cut tests (aspect kept)."""
    h = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    grey = rgb.astype(np.float32).mean(axis=2)[None] / 255.0  # (1, H, W)
    return resize(grey, h, width, antialias=True)[0]  # (h, width)
