"""Small numpy/OpenCV image operations shared by the node and the offline tools."""
from __future__ import annotations

import cv2
import numpy as np

MIN_IMAGE_SIDE = 2  # below this nothing (colouring, clouds, models) is meaningful


class BadInputError(ValueError):
    """An input frame that cannot be used; the message says why (the frame is skipped, the node lives)."""


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 image; returns it C-contiguous."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadInputError(f"expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
    if min(rgb.shape[:2]) < MIN_IMAGE_SIDE:
        raise BadInputError(f"image {rgb.shape[1]}x{rgb.shape[0]} is smaller than "
                            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    return np.ascontiguousarray(rgb)


def canonical_rgb(image: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) from RGB, grey (H, W) / (H, W, 1) (replicated) or RGBA (alpha dropped).

    Anything else (other dtypes or channel counts, empty images, more than ``max_pixels``) raises
    BadInputError naming the shape / dtype.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise BadInputError(f"expected a uint8 image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise BadInputError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)  # (H, W, 3)
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # (H, W, 3)
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise BadInputError(f"empty image {w}x{h}")
    if max_pixels is not None and h * w > max_pixels:
        raise BadInputError(f"image {w}x{h} exceeds {max_pixels} pixels")
    return np.ascontiguousarray(image)


def sanitize_metric_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = np.inf) -> np.ndarray:
    """float32 copy with inf, non-positive and out-of-range values set to NaN (REP 118 invalid)."""
    depth = np.array(depth, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(depth) | (depth <= 0) | (depth < min_depth) | (depth > max_depth)
    depth[bad] = np.nan
    return depth


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float depth map keeping NaN holes: bilinear where all neighbours are valid, else NaN."""
    if depth.shape == (height, width):
        return depth
    valid = np.isfinite(depth).astype(np.float32)  # (H, W)
    filled = np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    resized = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)  # (h, w)
    coverage = cv2.resize(valid, (width, height), interpolation=cv2.INTER_LINEAR)  # (h, w)
    resized[coverage < 0.999] = np.nan
    return resized


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaged (shrink) or bilinear (grow) resize of an (H, W, 3) image."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = width < rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
