"""Marigold's training targets and noise, in numpy (Ke et al., CVPR 2024).

- :func:`normalised_depth`: metric depth -> [-1, 1] per image by its 2 % / 98 % quantiles; pixels with no
  ground truth (the simulator's NaN: no return within range, i.e. sky) are taken as far (+1).
- :func:`multires_noise`: Gaussian noise plus coarser octaves of noise, their strength annealed with the
  timestep, renormalised to unit variance (Marigold's ``multi_res_noise_like``).
- :func:`noisy_and_velocity`: DDPM forward noising at per-sample timesteps and the v-prediction target.
"""
from __future__ import annotations

import cv2
import numpy as np


def normalised_depth(depth: np.ndarray, mask: np.ndarray, low: float = 0.02, high: float = 0.98) -> np.ndarray:
    """(B, H, W) metres and 0/1 ``mask`` -> (B, 3, H, W) float32 in [-1, 1], replicated to 3 channels."""
    out = np.ones(depth.shape, np.float32)  # invalid = far
    for b in range(depth.shape[0]):
        valid = mask[b] > 0
        if not valid.any():
            continue
        near, far = np.quantile(depth[b][valid], [low, high])
        scaled = (depth[b] - near) / max(far - near, 1e-6) * 2.0 - 1.0  # (H, W)
        out[b] = np.where(valid, np.clip(scaled, -1.0, 1.0), 1.0)
    return np.repeat(out[:, None], 3, axis=1)  # (B, 3, H, W)


def multires_noise(shape: tuple, rng: np.random.Generator, strength: float, levels: int,
                   timesteps: np.ndarray, train_steps: int) -> np.ndarray:
    """(B, C, h, w) unit-variance noise with ``levels`` coarser octaves, octave i weighted by
    (``strength`` * t / T)^i; plain Gaussian noise when ``strength`` is 0."""
    noise = rng.standard_normal(shape).astype(np.float32)  # (B, C, h, w)
    if strength <= 0:
        return noise
    b, c, h, w = shape
    weight = strength * timesteps.astype(np.float32) / train_steps  # (B,)
    total_var = np.ones(b, np.float32)
    for level in range(1, levels + 1):
        lh, lw = max(1, h >> level), max(1, w >> level)
        coarse = rng.standard_normal((b, c, lh, lw)).astype(np.float32)  # (B, C, lh, lw)
        up = np.stack([np.stack([cv2.resize(coarse[i, j], (w, h), interpolation=cv2.INTER_LINEAR)
                                 for j in range(c)]) for i in range(b)])  # (B, C, h, w)
        noise += up * (weight ** level)[:, None, None, None]
        total_var += weight ** (2 * level)
    return noise / np.sqrt(total_var)[:, None, None, None]


def noisy_and_velocity(clean: np.ndarray, noise: np.ndarray, alphas_cumprod: np.ndarray, timesteps: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """x_t = sqrt(a) x0 + sqrt(1 - a) eps and v = sqrt(a) eps - sqrt(1 - a) x0, per sample (B, C, h, w)."""
    a = alphas_cumprod[timesteps].astype(np.float32)[:, None, None, None]  # (B, 1, 1, 1)
    sa, sb = np.sqrt(a), np.sqrt(1.0 - a)
    return (sa * clean + sb * noise).astype(np.float32), (sa * noise - sb * clean).astype(np.float32)


__all__ = ["multires_noise", "noisy_and_velocity", "normalised_depth"]
