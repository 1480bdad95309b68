"""Batches for training: random scale and crop, horizontal flip, colour jitter; deterministic per step.

Each batch is drawn from a generator seeded by (seed, step, rank), so a resumed run sees exactly the
batches of an uninterrupted one, and data-parallel workers see different, fixed parts of the global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from depth_ms.core.config import ConfigError
from depth_ms.models.midas.preprocess import IMAGENET_MEAN, IMAGENET_STD

from .samples import Sample

MEAN, STD = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)  # MiDaS' normalisation, as the estimator's


@dataclass
class AugmentConfig:
    """Random crop and scale, flip and colour jitter (each off at 0)."""

    scale: tuple[float, float] = (1.0, 1.6)  # zoom beyond the smallest cover of the crop
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    gamma: float = 0.2  # exponent drawn from [1 - g, 1 + g]

    def validate(self) -> None:
        if not (1.0 <= self.scale[0] <= self.scale[1]):
            raise ConfigError(f"augment.scale: expected [low >= 1, high >= low], got {list(self.scale)}")
        if not 0 <= self.flip <= 1:
            raise ConfigError(f"augment.flip: expected a probability, got {self.flip}")
        for key in ("brightness", "contrast", "saturation", "gamma"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"augment.{key}: expected [0, 1), got {getattr(self, key)}")


def step_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    """The generator of one worker's batch at one step."""
    return np.random.default_rng([seed, step, rank])


def crop_and_scale(sample: Sample, height: int, width: int, zoom: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A ``height`` x ``width`` crop of ``sample`` resized by the smallest cover factor times ``zoom``."""
    src_h, src_w = sample.depth.shape
    factor = max(height / src_h, width / src_w) * zoom
    size_w, size_h = max(width, round(src_w * factor)), max(height, round(src_h * factor))
    rgb = cv2.resize(sample.rgb, (size_w, size_h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    depth = cv2.resize(sample.depth, (size_w, size_h), interpolation=cv2.INTER_NEAREST)
    top = int(rng.integers(0, size_h - height + 1))
    left = int(rng.integers(0, size_w - width + 1))
    return rgb[top:top + height, left:left + width], depth[top:top + height, left:left + width]


def jitter(rgb: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter of uint8 (H, W, 3) -> float32 (H, W, 3) in [0, 1]."""
    image = rgb.astype(np.float32) / 255.0  # (H, W, 3)
    if config.brightness:
        image *= rng.uniform(1 - config.brightness, 1 + config.brightness)
    if config.contrast:
        mean = image.mean()
        image = (image - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
    if config.saturation:
        grey = image.mean(axis=2, keepdims=True)  # (H, W, 1)
        image = (image - grey) * rng.uniform(1 - config.saturation, 1 + config.saturation) + grey
    np.clip(image, 0.0, 1.0, out=image)
    if config.gamma:
        image **= rng.uniform(1 - config.gamma, 1 + config.gamma)
    return image


def normalise(image: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) in [0, 1] -> ImageNet-normalised (3, H, W)."""
    return ((image - MEAN) / STD).transpose(2, 0, 1)  # (3, H, W)


def signed_unit(image: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) in [0, 1] -> (3, H, W) in [-1, 1]: the VAE's input range (Marigold, Stable Diffusion)."""
    return (image * 2.0 - 1.0).transpose(2, 0, 1)  # (3, H, W)


def make_batch(samples: list[Sample], indices: np.ndarray, height: int, width: int, config: AugmentConfig,
               rng: np.random.Generator, to_input: Callable[[np.ndarray], np.ndarray] = normalise
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (B, 3, h, w) by ``to_input`` (ImageNet-normalised by default), depth (B, h, w) metres with 0 where
    invalid, mask (B, h, w) 0/1)."""
    images, depths = [], []
    for i in indices:
        zoom = rng.uniform(*config.scale)
        rgb, depth = crop_and_scale(samples[int(i)], height, width, zoom, rng)
        if rng.random() < config.flip:
            rgb, depth = rgb[:, ::-1], depth[:, ::-1]
        images.append(to_input(jitter(rgb, config, rng)))
        depths.append(depth)
    depth = np.stack(depths).astype(np.float32)  # (B, h, w)
    mask = np.isfinite(depth)  # (B, h, w)
    return (np.stack(images).astype(np.float32), np.where(mask, depth, 0.0).astype(np.float32),
            mask.astype(np.float32))


__all__ = ["AugmentConfig", "crop_and_scale", "jitter", "make_batch", "normalise", "signed_unit", "step_rng"]
