"""The native CPU kernels (depth_ms.models.native_kernels) against a float64 numpy convolution.

Odd sizes, channel counts that need padding, both strides and every fused variant: the MiDaS small
fixture only reaches the shapes of two small inputs.
"""
import importlib.util
import os
import shutil

import numpy as np
import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mindspore") is None, reason="mindspore not importable"),
    pytest.mark.skipif(os.environ.get("DEPTH_MS_NATIVE_KERNELS") == "0", reason="native kernels disabled"),
    pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler"),
]


@pytest.fixture(scope="module")
def nk():
    from depth_ms.models import mindspore_device

    mindspore_device.configure("cpu")
    from depth_ms.models import native_kernels

    assert native_kernels.native_library() is not None
    return native_kernels


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


def run(op, *arrays):
    import mindspore as ms

    return op(*(ms.Tensor(np.ascontiguousarray(a, np.float32)) for a in arrays)).asnumpy()


def close(got, ref, tol=2e-5):
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= tol * max(1.0, np.abs(ref).max())


def attention(q, k, v, scale):
    """float64 reference: softmax(scale q k^T) v over (B, N, d), (B, M, d), (B, M, dv)."""
    logits = np.einsum("bnd,bmd->bnm", q.astype(np.float64), k.astype(np.float64)) * scale
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return np.einsum("bnm,bme->bne", probs / probs.sum(-1, keepdims=True), v.astype(np.float64))


@pytest.mark.parametrize("b,n,m,d,dv", [(3, 45, 45, 16, 16), (2, 70, 2, 64, 48), (1, 8, 33, 32, 64), (5, 1, 100, 16, 32)])
def test_fused_attention_matches_softmax_of_scores(nk, b, n, m, d, dv):
    """Query blocks with tails (45, 70 rows), 2 keys (Marigold's context), key counts off the 32-key tiles."""
    rng = np.random.default_rng(b * n + m)
    q, k = rng.standard_normal((b, n, d)) * 3, rng.standard_normal((b, m, d))
    v = rng.standard_normal((b, m, dv))
    close(run(nk.native_attention_op(), q, k, v, np.float32([0.3])), attention(q, k, v, 0.3), tol=1e-5)


def test_fused_attention_reads_heads_side_by_side(nk):
    """q (B, N, H * d) as the projections produce it; the scale's length gives the heads."""
    rng = np.random.default_rng(9)
    b, n, m, heads, d, dv = 2, 41, 19, 3, 16, 32
    q, k = rng.standard_normal((b, n, heads * d)), rng.standard_normal((b, m, heads * d))
    v = rng.standard_normal((b, m, heads * dv))
    split = lambda x, w: x.reshape(b, -1, heads, w).transpose(0, 2, 1, 3).reshape(b * heads, -1, w)  # noqa: E731
    ref = attention(split(q, d), split(k, d), split(v, dv), 0.25).reshape(b, heads, n, dv).transpose(0, 2, 1, 3)
    close(run(nk.native_attention_op(), q, k, v, np.full(heads, 0.25, np.float32)), ref.reshape(b, n, heads * dv),
          tol=1e-5)


@pytest.mark.parametrize("shape", [(2, 37, 45, 1), (1, 3, 70, 16), (3, 1, 5, 2)])
def test_swap_axes_moves_rows_whole(nk, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    close(run(nk.native_elementwise_op("SwapAxes"), x), x.transpose(0, 2, 1, 3), tol=0)


def test_geglu_gates_the_first_half_with_the_gelu_of_the_second(nk):
    from scipy.special import erf

    x = np.random.default_rng(2).standard_normal((3, 7, 64)) * 3
    ref = x[..., :32] * x[..., 32:] * 0.5 * (1 + erf(x[..., 32:] / np.sqrt(2)))
    close(run(nk.native_elementwise_op("GegluExact"), x), ref, tol=2e-6)


def test_fused_attention_keeps_peaked_rows_and_nan(nk):
    """Logits 80 apart (one-hot probabilities, no overflow); a NaN query row stays NaN, the others finite."""
    q = np.zeros((1, 3, 16))
    q[0, 0, 0], q[0, 1, 0], q[0, 2, 0] = 80.0, -80.0, np.nan
    k = np.zeros((1, 3, 16))
    k[0, :, 0] = [1.0, 0.0, -1.0]
    v = np.arange(48.0).reshape(1, 3, 16)
    got = run(nk.native_attention_op(), q, k, v, np.float32([1.0]))
    np.testing.assert_allclose(got[0, :2], v[0, [0, 2]], atol=1e-4)
    assert np.isnan(got[0, 2]).all()


@pytest.mark.parametrize("batch,ci,co,h,w", [
    (2, 40, 136, 13, 11),  # 2x2 tiles: 2 full gathers + an 8-channel tail, groups of 16 channels, odd map
    (1, 8, 8, 1, 1),       # one tile, one channel block
    (2, 600, 8, 60, 60),   # 2x2 tiles in two panels (V of both images above 16M values)
    (2, 24, 24, 67, 69),   # 4x4 tiles (F(4x4, 3x3)) on a large map: odd edges, a block of 8 filters
    (1, 3, 64, 64, 70),    # 4x4 tiles from 3 channels (TAESD's first convolution)
])
def test_winograd_raw_weight_matches_direct_convolution(nk, batch, ci, co, h, w):
    """Winograd3x3Raw{,Relu,ResidualRelu} (weights (Co, Ci, 3, 3) as stored) on each of their three paths."""
    rng = np.random.default_rng(ci + co + h)
    x = rng.standard_normal((batch, ci, h, w))
    weight = rng.standard_normal((co, ci, 3, 3)) / np.sqrt(9 * ci)
    bias, residual = rng.standard_normal(co), rng.standard_normal((batch, co, h, w))
    plain = conv2d(x, weight, bias)
    close(run(nk.native_conv_op("Winograd3x3Raw"), x, weight, bias), plain)
    close(run(nk.native_conv_op("Winograd3x3RawRelu"), x, weight, bias), np.maximum(plain, 0))
    close(run(nk.native_conv_op("Winograd3x3RawResidualRelu"), x, weight, bias, residual),
          np.maximum(plain + residual, 0))


@pytest.mark.parametrize("ci,co,h,w", [(8, 16, 7, 5), (24, 32, 33, 40), (16, 8, 64, 70), (40, 48, 2, 3)])
def test_winograd_matches_direct_convolution(nk, ci, co, h, w):
    rng = np.random.default_rng(ci + h)
    x = rng.standard_normal((2, ci, h, w))
    weight = rng.standard_normal((co, ci, 3, 3)) / np.sqrt(9 * ci)
    bias, residual = rng.standard_normal(co), rng.standard_normal((2, co, h, w))
    u = nk.pack_winograd(weight)
    plain, relu_in = conv2d(x, weight, bias), conv2d(np.maximum(x, 0), weight, bias)
    close(run(nk.native_conv_op("Winograd3x3Plain"), x, u, bias), plain)
    close(run(nk.native_conv_op("Winograd3x3PostRelu"), x, u, bias), np.maximum(plain, 0))
    close(run(nk.native_conv_op("Winograd3x3PreRelu"), x, u, bias), relu_in)
    close(run(nk.native_conv_op("Winograd3x3PreReluResidual"), x, u, bias, residual), relu_in + residual)
    close(run(nk.native_conv_op("Conv3x3PreReluResidual"), x, nk.pack_conv(weight), bias, residual),
          relu_in + residual)


@pytest.mark.parametrize("ci,co,h,w", [(24, 144, 5, 7), (136, 40, 3, 3), (32, 16, 1, 1)])
def test_pointwise_nhwc_pads_channels_and_fuses(nk, ci, co, h, w):
    rng = np.random.default_rng(ci)
    x = rng.standard_normal((1, ci, h, w))
    weight, bias = rng.standard_normal((co, ci, 1, 1)) / np.sqrt(ci), rng.standard_normal(co)
    packed, padded_bias = nk.pack_pointwise(weight, bias)
    cip, cop = packed.shape
    assert cip % 16 == 0 and cop % 16 == 0 and cip >= ci and cop >= co
    x_nhwc = np.zeros((1, h, w, cip))
    x_nhwc[..., :ci] = x.transpose(0, 2, 3, 1)
    ref = conv2d(x, weight, bias, pads=(0, 0, 0, 0)).transpose(0, 2, 3, 1)  # (1, h, w, co)
    got = run(nk.native_pointwise_op("Plain"), x_nhwc, packed, padded_bias)
    close(got[..., :co], ref)
    assert not got[..., co:].any()  # padding channels stay zero
    close(run(nk.native_pointwise_op("Relu6"), x_nhwc, packed, padded_bias)[..., :co], np.clip(ref, 0, 6))
    if ci == co:
        residual = run(nk.native_pointwise_op("Residual"), x_nhwc, packed, padded_bias, x_nhwc)
        close(residual[..., :co], ref + x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("k,stride,c,h,w", [(3, 1, 32, 9, 13), (5, 1, 40, 6, 5), (3, 2, 24, 16, 22),
                                            (5, 2, 48, 8, 30), (5, 1, 16, 1, 1)])
def test_depthwise_nhwc_tf_same_padding(nk, k, stride, c, h, w):
    rng = np.random.default_rng(k * c)
    x = rng.standard_normal((1, c, h, w))
    weight, bias = rng.standard_normal((c, 1, k, k)) / k, rng.standard_normal(c)
    packed, padded_bias = nk.pack_depthwise(weight, bias)
    cp = packed.shape[1]
    x_nhwc = np.zeros((1, h, w, cp))
    x_nhwc[..., :c] = x.transpose(0, 2, 3, 1)
    oh, ow = -(-h // stride), -(-w // stride)
    pad_h, pad_w = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - w, 0)  # TF "same"
    pads = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    ref = np.clip(conv2d(x, weight, bias, stride, pads, groups=c), 0, 6).transpose(0, 2, 3, 1)
    got = run(nk.native_depthwise_nhwc_op(stride), x_nhwc, packed, padded_bias)
    assert got.shape == (1, oh, ow, cp)
    close(got[..., :c], ref)
    assert not got[..., c:].any()


def test_stem_and_channels_last_projection(nk):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 14, 18))
    weight, bias = rng.standard_normal((32, 3, 3, 3)) / 5, rng.standard_normal(32)
    stem = run(nk.native_stem_op(), x, *nk.pack_stem(weight, bias))  # (1, 7, 9, 32) channels last
    close(stem, np.clip(conv2d(x, weight, bias, 2, (0, 1, 0, 1)), 0, 6).transpose(0, 2, 3, 1))
    # the decoder's projection reads channels-last input and ignores padding channels
    proj = rng.standard_normal((16, 24, 3, 3)) / 10
    features = np.concatenate([stem[..., :24], np.full((1, 7, 9, 8), 1e6)], axis=3)  # 24 real + 8 padding
    got = run(nk.native_conv_op("Conv3x3FromNhwc"), features, nk.pack_conv(proj), np.zeros(16))
    close(got, conv2d(stem[..., :24].transpose(0, 3, 1, 2), proj, np.zeros(16)))


def test_native_cells_swap_keeps_outputs_and_compiles(nk):
    """native_cells.swap_in on mindone's DPT/BiT layer kinds: same output eagerly and under ms.jit."""
    import mindspore as ms
    from mindone.transformers.activations import GELUActivation
    from types import SimpleNamespace

    from mindone.transformers.models.bit.modeling_bit import BitGroupNormActivation, WeightStandardizedConv2d
    from mindspore import nn

    from depth_ms.models import native_cells

    class Block(nn.Cell):
        def __init__(self):
            super().__init__()
            self.std_conv = WeightStandardizedConv2d(8, 16, 3, stride=1, padding="SAME")
            self.norm = BitGroupNormActivation(SimpleNamespace(num_groups=4, hidden_act="relu"), 16)
            self.conv = nn.Conv2d(16, 16, 3, stride=1, padding=1, pad_mode="pad", has_bias=True)
            self.up = nn.Conv2dTranspose(16, 8, 2, stride=2, pad_mode="pad", padding=0, has_bias=True)
            self.layer_norm = nn.LayerNorm((8,), epsilon=1e-6)
            self.act = GELUActivation()

        def construct(self, x):
            y = self.up(self.conv(self.norm(self.std_conv(x))))  # (N, 8, 2H, 2W)
            return self.act(self.layer_norm(y.transpose(0, 2, 3, 1)))  # (N, 2H, 2W, 8)

    rng = np.random.default_rng(11)
    block = Block()
    for name, param in block.parameters_and_names():
        param.set_data(ms.Tensor(rng.standard_normal(param.shape).astype(np.float32) * 0.3))
    x = ms.Tensor(rng.standard_normal((1, 8, 40, 36)).astype(np.float32))  # 1440 pixels: Winograd
    before = block(x).asnumpy()
    assert native_cells.swap_in(block) == 6
    kinds = {type(c).__name__ for _, c in block.cells_and_names()}
    assert {"StandardizedConv2d", "GroupNormActivation", "Conv3x3", "BlockTransposedConv", "LastAxisLayerNorm",
            "ExactGelu"} <= kinds
    assert len({p.name for p in block.get_parameters()}) == len(list(block.get_parameters()))  # unique names
    np.testing.assert_allclose(block(x).asnumpy(), before, atol=2e-5)
    np.testing.assert_allclose(ms.jit(block.construct)(x).asnumpy(), before, atol=2e-5)
