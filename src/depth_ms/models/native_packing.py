"""Weights in the layouts the native kernels read (numpy only); see depth_ms.models.native_kernels."""
from __future__ import annotations

import numpy as np

PACK = 8  # output channels per register block of the conv kernels

NHWC_LANES = 16  # channel padding of the NHWC kernels


def padded_channels(channels: int) -> int:
    """``channels`` rounded up to a multiple of NHWC_LANES (the NHWC kernels' channel padding)."""
    return -(-channels // NHWC_LANES) * NHWC_LANES


def pack_stem(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Co, Ci, 3, 3), (Co,) -> (9 * Ci, Co'), (Co',): rows (ky, kx, ci), channels zero-padded."""
    co, ci, k = weight.shape[:3]
    packed = np.zeros((k * k * ci, padded_channels(co)), np.float32)
    packed[:, :co] = weight.transpose(2, 3, 1, 0).reshape(k * k * ci, co)
    return packed, _pad_bias(bias, padded_channels(co))


def pack_pointwise(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Co, Ci, 1, 1), (Co,) -> (Ci', Co'), (Co',): transposed, zero-padded to multiples of NHWC_LANES."""
    co, ci = weight.shape[:2]
    packed = np.zeros((padded_channels(ci), padded_channels(co)), np.float32)
    packed[:ci, :co] = weight.reshape(co, ci).T
    return packed, _pad_bias(bias, padded_channels(co))


def pack_depthwise(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, 1, k, k), (C,) -> (k * k, C'), (C',): taps major, channels zero-padded to NHWC_LANES."""
    c, k = weight.shape[0], weight.shape[2]
    packed = np.zeros((k * k, padded_channels(c)), np.float32)
    packed[:, :c] = weight.reshape(c, k * k).T
    return packed, _pad_bias(bias, padded_channels(c))


def _pad_bias(bias: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[:bias.shape[0]] = bias
    return out


WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def pack_winograd(weight: np.ndarray) -> np.ndarray:
    """(Co, Ci, 3, 3) -> U (16, Ci, Co) = G g G^T per channel pair, in float64 then float32."""
    co, ci = weight.shape[:2]
    u = np.einsum("ak,oikl,bl->abio", WINOGRAD_G, weight.astype(np.float64), WINOGRAD_G)  # (4, 4, Ci, Co)
    return np.ascontiguousarray(u.reshape(16, ci, co), np.float32)


def pack_conv(weight: np.ndarray) -> np.ndarray:
    """(Co, Ci, k, k) -> (Co / 8, Ci, k * k, 8): eight output channels side by side per input channel and tap."""
    co, ci, k = weight.shape[:3]
    return np.ascontiguousarray(weight.reshape(co // PACK, PACK, ci, k * k).transpose(0, 2, 3, 1), np.float32)
