"""Pre- and post-processing of the fast relative-depth models (numpy + Pillow, no MindSpore, no ROS).

Input conversion (core.image_ops.canonical_rgb): uint8 RGB as is; grey (H, W) or (H, W, 1) is repeated;
RGBA (H, W, 4) drops alpha. Anything else (other dtypes, channel counts) is a BadInputError.

Resize: the rule of transformers' ``DPTImageProcessor`` (which the Hugging Face checkpoints of DPT and
Depth Anything ship with) or MiDaS' ``upper_bound``/``lower_bound`` rules, then a multiple of the
network stride. The resampling itself is Pillow's on the uint8 image, exactly what the HF processor does
(Pillow's bicubic uses a = -0.5 and widens its kernel when shrinking, i.e. antialiases; OpenCV's
INTER_CUBIC uses a = -0.75 without antialiasing and differs by several grey levels, which moves the
depth far more than the 1e-4 parity budget). MiDaS v2.1 small's official transform resizes with
OpenCV INTER_CUBIC on float images, so ``resample='cv2_cubic'`` does that.

Post-processing: the (h, w) prediction goes back to the input size with PyTorch's
``interpolate(mode='bicubic' | 'bilinear', align_corners=False)`` (HF's post_process_depth_estimation
and MiDaS' run.py), written as two small interpolation matrices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from depth_ms.core.image_ops import canonical_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
RESIZE_RULES = ("hf", "lower_bound", "upper_bound", "minimal")
RESAMPLES = ("bicubic", "bilinear", "cv2_cubic")
# Pillow's resampling filter ids (PIL.Image.Resampling), as stored in preprocessor_config.json
PIL_RESAMPLE_NAMES = {2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network input: target size, rounding, filter and normalisation."""

    height: int = 384  # target size before rounding (the 'resolution' of the model)
    width: int = 384
    keep_aspect: bool = True
    multiple_of: int = 32  # network stride: sides are rounded to a multiple of it
    rule: str = "hf"  # one of RESIZE_RULES
    resample: str = "bicubic"  # one of RESAMPLES
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    rescale: float = 1.0 / 255.0
    upsample: str = "bicubic"  # prediction -> input size: 'bicubic' or 'bilinear' (align_corners=False)

    def __post_init__(self) -> None:
        if self.rule not in RESIZE_RULES:
            raise ValueError(f"resize rule '{self.rule}' is not one of {', '.join(RESIZE_RULES)}")
        if self.resample not in RESAMPLES:
            raise ValueError(f"resample '{self.resample}' is not one of {', '.join(RESAMPLES)}")
        if self.upsample not in ("bicubic", "bilinear"):
            raise ValueError(f"upsample '{self.upsample}' is not 'bicubic' or 'bilinear'")
        if self.height < 1 or self.width < 1 or self.multiple_of < 1:
            raise ValueError(f"size {self.width}x{self.height} and multiple {self.multiple_of} must be positive")


def _round_to_multiple(value: float, multiple: int, min_value: int = 0, max_value: float | None = None) -> int:
    """MiDaS' constrain_to_multiple_of (round, then floor above max, ceil below min)."""
    x = round(value / multiple) * multiple
    if max_value is not None and x > max_value:
        x = math.floor(value / multiple) * multiple
    if x < min_value:
        x = math.ceil(value / multiple) * multiple
    return int(x)


def target_size(height: int, width: int, prep: Preprocessing) -> tuple[int, int]:
    """(h, w) of the network input for an image of ``height`` x ``width``.

    'hf' scales as little as possible (the scale closer to 1 wins, DPTImageProcessor); 'lower_bound'
    makes both sides at least the target (Depth Anything's official transform); 'upper_bound' at most
    (MiDaS v2.1 small); 'minimal' is MiDaS' name for 'hf'. Each side is then a multiple of
    ``multiple_of`` and never less than one multiple: where the HF processor would round a side of an
    extreme-aspect or tiny image to 0 (and fail), that side becomes ``multiple_of`` instead.
    """
    scale_h, scale_w = prep.height / height, prep.width / width
    if prep.keep_aspect:
        if prep.rule in ("hf", "minimal"):
            scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        elif prep.rule == "lower_bound":
            scale = max(scale_w, scale_h)
        else:
            scale = min(scale_w, scale_h)
        scale_h = scale_w = scale
    m = prep.multiple_of
    if prep.rule == "lower_bound":
        new_h = _round_to_multiple(scale_h * height, m, min_value=prep.height)
        new_w = _round_to_multiple(scale_w * width, m, min_value=prep.width)
    elif prep.rule == "upper_bound":
        new_h = _round_to_multiple(scale_h * height, m, max_value=prep.height)
        new_w = _round_to_multiple(scale_w * width, m, max_value=prep.width)
    else:
        new_h = _round_to_multiple(scale_h * height, m)
        new_w = _round_to_multiple(scale_w * width, m)
    return max(new_h, m), max(new_w, m)


def resize_image(rgb: np.ndarray, height: int, width: int, resample: str = "bicubic") -> np.ndarray:
    """(height, width, 3) resize of a uint8 image: Pillow filters on uint8 (HF), or OpenCV cubic on floats.

    Returns uint8 for the Pillow filters and float32 in [0, 1] for 'cv2_cubic'.
    """
    if resample == "cv2_cubic":  # MiDaS' transform: float image in [0, 1], cv2.INTER_CUBIC
        return cv2.resize(rgb.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_CUBIC)
    from PIL import Image

    if rgb.shape[:2] == (height, width):
        return rgb
    flt = Image.Resampling.BICUBIC if resample == "bicubic" else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((width, height), resample=flt, reducing_gap=None))


def preprocess(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Network input (1, 3, h, w) float32 from a uint8 image (grey/RGB/RGBA), as the reference processor."""
    rgb = canonical_rgb(image)
    h, w = target_size(rgb.shape[0], rgb.shape[1], prep)
    resized = resize_image(rgb, h, w, prep.resample)  # (h, w, 3)
    if resized.dtype == np.uint8:
        x = (resized.astype(np.float64) * prep.rescale).astype(np.float32)  # as transformers' rescale
    else:
        x = resized.astype(np.float32)  # already in [0, 1]
    mean = np.asarray(prep.mean, np.float32)
    std = np.asarray(prep.std, np.float32)
    x = (x - mean) / std  # (h, w, 3)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)  # (1, 3, h, w)


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (PyTorch's bicubic uses a = -0.75)."""
    t = np.abs(t).astype(np.float32)
    a = np.float32(a)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@lru_cache(maxsize=32)
def interpolation_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """(n_out, n_in) matrix of torch.nn.functional.interpolate(mode, align_corners=False) along one axis.

    Source coordinates and weights are computed in float32 as PyTorch's CPU kernel does (its
    ``opmath_t`` for float tensors); float64 coordinates differ by up to 7e-5 of the range at 384 -> 480.
    """
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    dst = np.arange(n_out, dtype=np.float32)
    # scale * (i + 0.5) - 0.5 rounded once to float32: the compiled kernel fuses it into one FMA
    src = (np.float64(scale) * (dst.astype(np.float64) + 0.5) - 0.5).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    if mode == "bilinear":
        src = np.maximum(src, f32(0.0))
        lo = np.minimum(src.astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = np.clip(src - lo.astype(np.float32), f32(0.0), f32(1.0))
        np.add.at(m, (rows, lo), (f32(1.0) - frac).astype(np.float64))
        np.add.at(m, (rows, hi), frac.astype(np.float64))
    else:  # bicubic: no clamp of the source coordinate, border pixels replicated
        base = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        frac = np.clip(src - base.astype(np.float32), f32(0.0), f32(1.0))
        for k in range(-1, 3):
            idx = np.clip(base + k, 0, n_in - 1)
            np.add.at(m, (rows, idx), _cubic(frac - f32(k)).astype(np.float32).astype(np.float64))
    m.setflags(write=False)
    return m


def upsample_prediction(pred: np.ndarray, height: int, width: int, mode: str = "bicubic") -> np.ndarray:
    """(height, width) float32 from an (h, w) prediction, as torch interpolate(align_corners=False)."""
    pred = np.asarray(pred, np.float64)
    if pred.shape == (height, width):
        return pred.astype(np.float32)
    rows = interpolation_matrix(pred.shape[0], height, mode)  # (H, h)
    cols = interpolation_matrix(pred.shape[1], width, mode)  # (W, w)
    return (rows @ pred @ cols.T).astype(np.float32)  # (H, W)


def from_hf_processor_config(cfg: dict, default: Preprocessing) -> Preprocessing:
    """``default`` with the fields a Hugging Face preprocessor_config.json sets (mean, std, filter, ...).

    Size, keep-aspect and stride stay those of ``default``: the estimator's options decide them
    (:func:`hf_processor_size` reads the file's size for callers that want it).
    """
    fields = {}
    if cfg.get("do_normalize", True) is False:
        fields.update(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    else:
        if "image_mean" in cfg:
            fields["mean"] = _triple(cfg["image_mean"])
        if "image_std" in cfg:
            fields["std"] = _triple(cfg["image_std"])
    if cfg.get("do_rescale", True) is False:
        fields["rescale"] = 1.0
    elif "rescale_factor" in cfg:
        fields["rescale"] = float(cfg["rescale_factor"])
    if "resample" in cfg:
        resample = PIL_RESAMPLE_NAMES.get(int(cfg["resample"]))
        if resample is None:
            raise ValueError(f"preprocessor_config.json resample={cfg['resample']} is not bilinear (2) or "
                             f"bicubic (3)")
        fields["resample"] = resample
    return Preprocessing(**{**default.__dict__, **fields})


def hf_processor_size(cfg: dict) -> tuple[int, int] | None:
    """(height, width) of a preprocessor_config.json 'size' entry (an int or a dict), if any."""
    size = cfg.get("size")
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if isinstance(size, dict) and "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    return None


def _triple(value) -> tuple:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    return tuple(float(v) for v in value)
