"""Every native kernel (native/, libdepth_ms_kernels.so) against a naive float64 numpy reference, called
through ctypes with MindSpore's "aot" calling convention: no MindSpore in this process.

Odd sizes, channel counts that need padding, both strides, every fused variant and each code path of the
Winograd convolutions; also the thread count under a CPU affinity mask and the loader's refusals.
"""
import ctypes
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from depth_ms.models import native_packing as packing
from depth_ms.models.native_library import KERNELS, native_library, output_shape

pytestmark = pytest.mark.skipif(os.environ.get("DEPTH_MS_NATIVE_KERNELS") == "0", reason="native kernels disabled")


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    path = native_library()
    assert path is not None, "libdepth_ms_kernels.so not found: build the workspace (scripts/setup.sh)"
    return ctypes.CDLL(path)


def run(kernel, *arrays):
    """Calls ``kernel`` as MindSpore would: inputs then the output in params, their shapes and dtypes."""
    inputs = [np.ascontiguousarray(a, np.float32) for a in arrays]
    out = np.empty(output_shape(kernel, *(a.shape for a in inputs)), np.float32)
    tensors = [*inputs, out]
    count = len(tensors)
    params = (ctypes.c_void_p * count)(*(t.ctypes.data for t in tensors))
    ndims = (ctypes.c_int * count)(*(t.ndim for t in tensors))
    shape_rows = [(ctypes.c_int64 * max(t.ndim, 1))(*t.shape) for t in tensors]
    shapes = (ctypes.POINTER(ctypes.c_int64) * count)(*(ctypes.cast(r, ctypes.POINTER(ctypes.c_int64))
                                                         for r in shape_rows))
    dtypes = (ctypes.c_char_p * count)(*([b"float32"] * count))
    status = getattr(library(), kernel)(count, params, ndims, shapes, dtypes, None, None)
    assert status == 0, f"{kernel} returned {status}"
    return out


def conv2d(x, weight, bias, stride=1, pads=(1, 1, 1, 1), groups=1):
    """float64 reference: x (N, Ci, H, W), weight (Co, Ci / groups, k, k), pads (top, bottom, left, right)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), pads[:2], pads[2:]))
    co, cig, k = weight.shape[:3]
    n, _, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, co, oh, ow))
    for o in range(co):
        g = o // (co // groups)
        for ky in range(k):
            for kx in range(k):
                patch = x[:, g * cig:(g + 1) * cig, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, weight[o, :, ky, kx].astype(np.float64))
    return out + bias[None, :, None, None]


def close(got, ref, tol=2e-5):
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= tol * max(1.0, np.abs(ref).max())


def attention(q, k, v, scale):
    """float64 reference: softmax(scale q k^T) v over (B, N, d), (B, M, d), (B, M, dv)."""
    logits = np.einsum("bnd,bmd->bnm", q.astype(np.float64), k.astype(np.float64)) * scale
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return np.einsum("bnm,bme->bne", probs / probs.sum(-1, keepdims=True), v.astype(np.float64))


@pytest.mark.parametrize("b,n,m,d,dv", [(3, 45, 45, 16, 16), (2, 70, 2, 64, 48), (1, 8, 33, 32, 64), (5, 1, 100, 16, 32)])
def test_fused_attention_matches_softmax_of_scores(b, n, m, d, dv):
    """Query blocks with tails (45, 70 rows), 2 keys (Marigold's context), key counts off the 32-key tiles."""
    rng = np.random.default_rng(b * n + m)
    q, k = rng.standard_normal((b, n, d)) * 3, rng.standard_normal((b, m, d))
    v = rng.standard_normal((b, m, dv))
    close(run("Attention", q, k, v, np.float32([0.3])), attention(q, k, v, 0.3), tol=1e-5)


def test_fused_attention_reads_heads_side_by_side():
    """q (B, N, H * d) as the projections produce it; the scale's length gives the heads."""
    rng = np.random.default_rng(9)
    b, n, m, heads, d, dv = 2, 41, 19, 3, 16, 32
    q, k = rng.standard_normal((b, n, heads * d)), rng.standard_normal((b, m, heads * d))
    v = rng.standard_normal((b, m, heads * dv))
    split = lambda x, w: x.reshape(b, -1, heads, w).transpose(0, 2, 1, 3).reshape(b * heads, -1, w)  # noqa: E731
    ref = attention(split(q, d), split(k, d), split(v, dv), 0.25).reshape(b, heads, n, dv).transpose(0, 2, 1, 3)
    close(run("Attention", q, k, v, np.full(heads, 0.25, np.float32)), ref.reshape(b, n, heads * dv),
          tol=1e-5)


@pytest.mark.parametrize("shape", [(2, 37, 45, 1), (1, 3, 70, 16), (3, 1, 5, 2)])
def test_swap_axes_moves_rows_whole(shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    close(run("SwapAxes", x), x.transpose(0, 2, 1, 3), tol=0)


def test_geglu_gates_the_first_half_with_the_gelu_of_the_second():
    from scipy.special import erf

    x = np.random.default_rng(2).standard_normal((3, 7, 64)) * 3
    ref = x[..., :32] * x[..., 32:] * 0.5 * (1 + erf(x[..., 32:] / np.sqrt(2)))
    close(run("GegluExact", x), ref, tol=2e-6)


def test_fused_attention_keeps_peaked_rows_and_nan():
    """Logits 80 apart (one-hot probabilities, no overflow); a NaN query row stays NaN, the others finite."""
    q = np.zeros((1, 3, 16))
    q[0, 0, 0], q[0, 1, 0], q[0, 2, 0] = 80.0, -80.0, np.nan
    k = np.zeros((1, 3, 16))
    k[0, :, 0] = [1.0, 0.0, -1.0]
    v = np.arange(48.0).reshape(1, 3, 16)
    got = run("Attention", q, k, v, np.float32([1.0]))
    np.testing.assert_allclose(got[0, :2], v[0, [0, 2]], atol=1e-4)
    assert np.isnan(got[0, 2]).all()


@pytest.mark.parametrize("batch,ci,co,h,w", [
    (2, 40, 136, 13, 11),  # 2x2 tiles: 2 full gathers + an 8-channel tail, groups of 16 channels, odd map
    (1, 8, 8, 1, 1),       # one tile, one channel block
    (2, 600, 8, 60, 60),   # 2x2 tiles in two panels (V of both images above 16M values)
    (2, 24, 24, 67, 69),   # 4x4 tiles (F(4x4, 3x3)) on a large map: odd edges, a block of 8 filters
    (1, 3, 64, 64, 70),    # 4x4 tiles from 3 channels (TAESD's first convolution)
])
def test_winograd_raw_weight_matches_direct_convolution(batch, ci, co, h, w):
    """Winograd3x3Raw{,Relu,ResidualRelu} (weights (Co, Ci, 3, 3) as stored) on each of their three paths."""
    rng = np.random.default_rng(ci + co + h)
    x = rng.standard_normal((batch, ci, h, w))
    weight = rng.standard_normal((co, ci, 3, 3)) / np.sqrt(9 * ci)
    bias, residual = rng.standard_normal(co), rng.standard_normal((batch, co, h, w))
    plain = conv2d(x, weight, bias)
    close(run("Winograd3x3Raw", x, weight, bias), plain)
    close(run("Winograd3x3RawRelu", x, weight, bias), np.maximum(plain, 0))
    close(run("Winograd3x3RawResidualRelu", x, weight, bias, residual),
          np.maximum(plain + residual, 0))


@pytest.mark.parametrize("ci,co,h,w", [(8, 16, 7, 5), (24, 32, 33, 40), (16, 8, 64, 70), (40, 48, 2, 3)])
def test_winograd_matches_direct_convolution(ci, co, h, w):
    rng = np.random.default_rng(ci + h)
    x = rng.standard_normal((2, ci, h, w))
    weight = rng.standard_normal((co, ci, 3, 3)) / np.sqrt(9 * ci)
    bias, residual = rng.standard_normal(co), rng.standard_normal((2, co, h, w))
    u = packing.pack_winograd(weight)
    plain, relu_in = conv2d(x, weight, bias), conv2d(np.maximum(x, 0), weight, bias)
    close(run("Winograd3x3Plain", x, u, bias), plain)
    close(run("Winograd3x3PostRelu", x, u, bias), np.maximum(plain, 0))
    close(run("Winograd3x3PreRelu", x, u, bias), relu_in)
    close(run("Winograd3x3PreReluResidual", x, u, bias, residual), relu_in + residual)
    close(run("Conv3x3PreReluResidual", x, packing.pack_conv(weight), bias, residual),
          relu_in + residual)


@pytest.mark.parametrize("ci,co,h,w", [(24, 144, 5, 7), (136, 40, 3, 3), (32, 16, 1, 1)])
def test_pointwise_nhwc_pads_channels_and_fuses(ci, co, h, w):
    rng = np.random.default_rng(ci)
    x = rng.standard_normal((1, ci, h, w))
    weight, bias = rng.standard_normal((co, ci, 1, 1)) / np.sqrt(ci), rng.standard_normal(co)
    packed, padded_bias = packing.pack_pointwise(weight, bias)
    cip, cop = packed.shape
    assert cip % 16 == 0 and cop % 16 == 0 and cip >= ci and cop >= co
    x_nhwc = np.zeros((1, h, w, cip))
    x_nhwc[..., :ci] = x.transpose(0, 2, 3, 1)
    ref = conv2d(x, weight, bias, pads=(0, 0, 0, 0)).transpose(0, 2, 3, 1)  # (1, h, w, co)
    got = run("PointwiseNhwcPlain", x_nhwc, packed, padded_bias)
    close(got[..., :co], ref)
    assert not got[..., co:].any()  # padding channels stay zero
    close(run("PointwiseNhwcRelu6", x_nhwc, packed, padded_bias)[..., :co], np.clip(ref, 0, 6))
    if ci == co:
        residual = run("PointwiseNhwcResidual", x_nhwc, packed, padded_bias, x_nhwc)
        close(residual[..., :co], ref + x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("k,stride,c,h,w", [(3, 1, 32, 9, 13), (5, 1, 40, 6, 5), (3, 2, 24, 16, 22),
                                            (5, 2, 48, 8, 30), (5, 1, 16, 1, 1)])
def test_depthwise_nhwc_tf_same_padding(k, stride, c, h, w):
    rng = np.random.default_rng(k * c)
    x = rng.standard_normal((1, c, h, w))
    weight, bias = rng.standard_normal((c, 1, k, k)) / k, rng.standard_normal(c)
    packed, padded_bias = packing.pack_depthwise(weight, bias)
    cp = packed.shape[1]
    x_nhwc = np.zeros((1, h, w, cp))
    x_nhwc[..., :c] = x.transpose(0, 2, 3, 1)
    oh, ow = -(-h // stride), -(-w // stride)
    pad_h, pad_w = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - w, 0)  # TF "same"
    pads = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    ref = np.clip(conv2d(x, weight, bias, stride, pads, groups=c), 0, 6).transpose(0, 2, 3, 1)
    got = run(f"DepthwiseNhwcStride{stride}", x_nhwc, packed, padded_bias)
    assert got.shape == (1, oh, ow, cp)
    close(got[..., :c], ref)
    assert not got[..., c:].any()


def test_stem_and_channels_last_projection():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 14, 18))
    weight, bias = rng.standard_normal((32, 3, 3, 3)) / 5, rng.standard_normal(32)
    stem = run("StemConv3x3Stride2Nhwc", x, *packing.pack_stem(weight, bias))  # (1, 7, 9, 32) channels last
    close(stem, np.clip(conv2d(x, weight, bias, 2, (0, 1, 0, 1)), 0, 6).transpose(0, 2, 3, 1))
    # the decoder's projection reads channels-last input and ignores padding channels
    proj = rng.standard_normal((16, 24, 3, 3)) / 10
    features = np.concatenate([stem[..., :24], np.full((1, 7, 9, 8), 1e6)], axis=3)  # 24 real + 8 padding
    got = run("Conv3x3FromNhwc", features, packing.pack_conv(proj), np.zeros(16))
    close(got, conv2d(stem[..., :24].transpose(0, 3, 1, 2), proj, np.zeros(16)))




@pytest.mark.parametrize("ci,co,h,w", [(8, 16, 7, 5), (3, 24, 19, 33), (16, 8, 1, 1)])
def test_direct_convolutions_match(ci, co, h, w):
    """Conv3x3{Plain,PreRelu,PostRelu} and Conv1x1Plain on packed weights (Co / 8, Ci, k * k, 8)."""
    rng = np.random.default_rng(ci * h + w)
    x = rng.standard_normal((2, ci, h, w))
    weight, bias = rng.standard_normal((co, ci, 3, 3)) / np.sqrt(9 * ci), rng.standard_normal(co)
    packed = packing.pack_conv(weight)
    plain = conv2d(x, weight, bias)
    close(run("Conv3x3Plain", x, packed, bias), plain)
    close(run("Conv3x3PostRelu", x, packed, bias), np.maximum(plain, 0))
    close(run("Conv3x3PreRelu", x, packed, bias), conv2d(np.maximum(x, 0), weight, bias))
    pointwise = weight[:, :, 1:2, 1:2]
    close(run("Conv1x1Plain", x, packing.pack_conv(pointwise), bias), conv2d(x, pointwise, bias, pads=(0, 0, 0, 0)))


def test_gelu_is_the_exact_erf_form_and_keeps_nan():
    from scipy.special import erf

    x = np.concatenate([np.random.default_rng(4).standard_normal(1000) * 4, [0.0, -30.0, 30.0, np.nan]])
    got = run("GeluExact", x.reshape(4, 251))
    ref = x * 0.5 * (1 + erf(x / np.sqrt(2)))
    close(got.ravel()[:-1], ref[:-1], tol=2e-6)
    assert np.isnan(got.ravel()[-1])


@pytest.mark.parametrize("shape", [(3, 7, 40), (1, 1, 16), (2, 5, 1000)])
def test_layer_norm_over_the_last_axis(shape):
    rng = np.random.default_rng(shape[-1])
    x = rng.standard_normal(shape) * 5 + 100  # a large mean: centred second moments
    weight, bias = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mean) / np.sqrt(var + 1e-5) * weight + bias
    close(run("LayerNormLastAxis", x, weight, bias, np.float32([1e-5])), ref, tol=2e-5)


@pytest.mark.parametrize("shape,groups", [((2, 32, 9, 7), 8), ((1, 12, 5), 3), ((1, 8, 40, 30), 1)])
def test_group_norm_per_sample_and_group(shape, groups):
    rng = np.random.default_rng(groups)
    x = rng.standard_normal(shape) * 3 - 7
    c = shape[1]
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    g = x.reshape(shape[0], groups, -1)
    normed = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-6)).reshape(shape)
    affine = (1, c) + (1,) * (len(shape) - 2)
    ref = normed * weight.reshape(affine) + bias.reshape(affine)
    eps = np.full(groups, 1e-6, np.float32)
    close(run("GroupNormPlain", x, weight, bias, eps), ref, tol=2e-5)
    close(run("GroupNormRelu", x, weight, bias, eps), np.maximum(ref, 0), tol=2e-5)


def test_every_exported_kernel_is_known_and_tested():
    source = open(__file__).read()
    for kernel in KERNELS:
        assert hasattr(library(), kernel), kernel
        assert f'"{kernel}"' in source or kernel.startswith(("PointwiseNhwc", "DepthwiseNhwcStride")), kernel


def _threads_in_child(env: dict, cpus: set[int] | None = None) -> int:
    code = ("import ctypes, os, sys\n"
            f"cpus = {sorted(cpus) if cpus else None!r}\n"
            "if cpus: os.sched_setaffinity(0, cpus)\n"
            "lib = ctypes.CDLL(sys.argv[1]); lib.NativeThreads.restype = ctypes.c_int64\n"
            "print(lib.NativeThreads())")
    out = subprocess.run([sys.executable, "-c", code, native_library()], env=env, capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


def _cgroup_cpus() -> int:
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
    except (OSError, ValueError):
        return 1 << 30
    return 1 << 30 if quota == "max" else max(1, -(-int(quota) // int(period)))


def test_thread_count_follows_the_affinity_mask_and_the_override():
    env = {k: v for k, v in os.environ.items() if k != "DEPTH_MS_NATIVE_THREADS"}
    assert _threads_in_child(env) == min(len(os.sched_getaffinity(0)), _cgroup_cpus(), 16)
    assert _threads_in_child(env, {min(os.sched_getaffinity(0))}) == 1
    assert _threads_in_child({**env, "DEPTH_MS_NATIVE_THREADS": "3"}, {min(os.sched_getaffinity(0))}) == 3
