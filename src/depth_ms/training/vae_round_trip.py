"""What a Marigold-family VAE keeps: depth and RGB encoded (posterior mean) and decoded at the processing size.

The depth round trip bounds what any UNet can output through this decoder; the RGB round trip shows how
much of the image the UNet's RGB latent still holds. The VAE stage validates with both, and
``bench/bench_vae_round_trip.py`` compares VAEs with them. The caller configures the device first.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from depth_ms.models.marigold import imaging

from . import checkpoints as ckpt
from .augment import signed_unit
from .diffusion import normalised_depth

VAE_METADATA = "depth_ms.marigold_vae"  # the VAE stage's checkpoint metadata key: the AutoencoderKL config


def vae_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def posterior_mean(vae, x):
    """(B, 3, H, W) in [-1, 1] -> (B, C, H/f, W/f) posterior mean (unscaled)."""
    return vae.encode(x)[0][:, :int(vae.config.latent_channels)]


def latent_size(height: int, width: int, resolution: int, factor: int) -> tuple[int, int]:
    """The processing size of a (height, width) frame, rounded down to the VAE's ``factor``."""
    h, w = imaging.processing_size(height, width, resolution)
    return max(factor, h // factor * factor), max(factor, w // factor * factor)


def depth_at_processing_size(depth: np.ndarray, resolution: int, factor: int = 1) -> np.ndarray:
    """Metric depth (H, W), NaN invalid -> (1, 3, h, w) normalised to [-1, 1] as the VAE sees it, at the
    processing size rounded down to ``factor``."""
    h, w = latent_size(*depth.shape, resolution, factor)
    small = imaging.resize(np.nan_to_num(depth, nan=0.0)[None], h, w, False)  # (1, h, w)
    valid = imaging.resize(np.isfinite(depth)[None].astype(np.float32), h, w, False) > 0.99  # (1, h, w)
    return normalised_depth(small, valid)  # (1, 3, h, w)


def depth_round_trip(vae, depth: np.ndarray, resolution: int) -> np.ndarray:
    """Metric depth (H, W), NaN invalid -> normalised, encoded, decoded: affine depth (h, w) in [0, 1]."""
    import mindspore as ms

    x = depth_at_processing_size(depth, resolution, vae_factor(vae))  # (1, 3, h, w)
    out = vae.decode(posterior_mean(vae, ms.Tensor(x)))[0].asnumpy()  # (1, 3, h, w)
    return (np.clip(out.mean(axis=1)[0], -1.0, 1.0) + 1.0) / 2.0  # (h, w)


def rgb_psnr(vae, rgb: np.ndarray, resolution: int) -> float:
    """PSNR (dB, peak 1) of the RGB round trip of uint8 ``rgb`` (H, W, 3) at the processing size."""
    import mindspore as ms

    h, w = latent_size(*rgb.shape[:2], resolution, vae_factor(vae))
    x = imaging.resize(signed_unit(rgb.astype(np.float32) / 255.0), h, w, True)[None]  # (1, 3, h, w) in [-1, 1]
    out = vae.decode(posterior_mean(vae, ms.Tensor(x)))[0].asnumpy()  # (1, 3, h, w)
    mse = float(np.mean(((np.clip(out, -1.0, 1.0) - x) / 2.0) ** 2))
    return 10.0 * float(np.log10(1.0 / max(mse, 1e-12)))


def load_vae(path: Path):
    """The AutoencoderKL of a Marigold folder (its ``vae/`` or the folder itself) or of a VAE-stage checkpoint
    (its folder or ``model.safetensors``), in eval mode."""
    import mindspore as ms
    from mindone.diffusers import AutoencoderKL

    from depth_ms.models.marigold.checkpoint import load_diffusers_model
    from .marigold_folder import build_vae

    path = Path(path)
    if (path / "vae" / "config.json").is_file():
        path = path / "vae"
    if (path / "config.json").is_file():
        vae = load_diffusers_model(AutoencoderKL, str(path))
    else:
        file = path / "model.safetensors" if path.is_dir() else path
        tensors, metadata = ckpt.read_safetensors(file)
        if VAE_METADATA not in metadata:
            raise ckpt.CheckpointError(f"{file}: not a Marigold VAE-stage checkpoint (no {VAE_METADATA} metadata)")
        vae = build_vae(json.loads(metadata[VAE_METADATA]), 0)
        params = dict(vae.parameters_and_names())
        if set(params) != set(tensors):
            raise ckpt.CheckpointError(f"{file}: its tensors are not this AutoencoderKL's (a UNet-stage checkpoint?)")
        for name, param in params.items():
            param.set_data(ms.Tensor(tensors[name]))
    vae.set_train(False)
    return vae


__all__ = ["VAE_METADATA", "depth_at_processing_size", "depth_round_trip", "latent_size", "load_vae", "posterior_mean",
           "rgb_psnr", "vae_factor"]
