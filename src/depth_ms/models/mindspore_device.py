"""MindSpore device layer: context set-up and CPU/GPU fallbacks for Ascend-only ``mint`` kernels.

mindone 0.5.0 builds its models from ``mindspore.mint``, whose functions and layers dispatch to
"ext" kernels (Conv2DExt, GeluExt, LayerNormExt, Arange, ...) that MindSpore 2.7.1 registers only
for Ascend. :func:`configure` selects device and execution mode and, off Ascend, reroutes exactly
the calls the project's models make to classic ``mindspore.ops`` primitives, which have CPU (oneDNN
or native) and GPU kernels. Parameter names and ``Cell`` structure are untouched, so checkpoints
load as before. Every rerouted call is one row of :data:`FALLBACKS`; nothing else is patched.
On CPU some fallbacks (LayerNorm, GroupNorm, 3x3 convolution) and :func:`gelu_exact` run the
project's native kernels (:mod:`depth_ms.models.native_kernels`, built by the catkin build from ``native/``) where
MindSpore's CPU ops were 2-30x slower than PyTorch's; ``DEPTH_MS_NATIVE_KERNELS=0`` turns them off.

Importing this module does not import MindSpore, so :func:`configure` can set oneDNN's
environment before MindSpore's CPU backend loads it. Call it before anything imports ``mindspore``.

Measured on a 2-core AVX-512 host (AMD EPYC), MindSpore 2.7.1 with its bundled oneDNN 2.2.0:
- oneDNN 2.2 reads ``DNNL_MAX_CPU_ISA`` only; ``ONEDNN_MAX_CPU_ISA`` is ignored. All convolutions
  and matmuls of an SD2-size UNet ran ``gemm:jit`` (no reference kernel, first call 4.3 s). An
  AVX2 cap made one 320->320 3x3 conv at 40x30 24 ms instead of 14 ms and the UNet 5.6 s
  instead of 4.2 s, so by default no cap is set.
- Blocking launch (``pynative_synchronize``) made that UNet 2.2x faster in PyNative (4.2 s vs
  9.3 s), so it is on by default on CPU.
- SD2-size UNet, 40x30 latents, 77 text tokens: PyNative 3.0-4.2 s per call; graph mode 1.9 s
  after a 21 s first call (6.6 GB peak RSS).
- Graph mode (GRAPH_MODE or ``ms.jit``) works for UNet2DConditionModel, AutoencoderKL,
  AutoencoderTiny, CLIPTextModel and DPT (plain and hybrid). DepthAnythingForDepthEstimation does
  not compile: mindone's backbone calls ``self`` inside ``construct`` and Dinov2 uses torch-style
  ``Tensor.transpose``.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEVICES = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}
MODES = ("pynative", "graph")
CPU_ISAS = ("auto", "SSE41", "AVX", "AVX2", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "ALL")

# Bound by _load_mindspore(); the fallbacks resolve these globals at call (or graph-parse) time.
ms = None
ops = None
# Native CPU kernels (depth_ms.models.native_kernels) bound by configure() on CPU, else None: exact
# GELU, last-axis LayerNorm, GroupNorm, Winograd 3x3 convolution and fused attention, which MindSpore's
# CPU ops ran 1.5-30x slower than PyTorch or than fused (bench/bench_native_ops.py). DEPTH_MS_NATIVE_KERNELS=0
# turns them off.
_NATIVE_GELU = None
_NATIVE_LAYER_NORM = None
_NATIVE_WINOGRAD = None
_NATIVE_WINOGRAD_RELU = None  # (Winograd3x3RawRelu, Winograd3x3RawResidualRelu): TAESD blocks
_NATIVE_GROUP_NORM = None
_NATIVE_ATTENTION = None
_NATIVE_SWAP_AXES = None
_NATIVE_GEGLU = None
NATIVE_ATTENTION_MAX_HEAD_DIM = 128  # wider heads (the VAE's single 512-wide head) stay on BatchMatMul: 18 vs 17 ms
# smaller maps (8x10 latents and less) stay on oneDNN: there the per-call weight transform outweighs the gain
WINOGRAD_MIN_PIXELS = 256

_ORIGINALS: dict[str, object] = {}  # target -> attribute it replaced
_STATE: dict[str, object] = {}


def _load_mindspore() -> None:
    global ms, ops
    if ms is None:
        import mindspore
        import mindspore.mint  # noqa: F401 (fallback targets live here)
        import mindspore.ops

        ms, ops = mindspore, mindspore.ops


# ---------------------------------------------------------------------------------------------
# Fallback implementations: classic mindspore.ops primitives, valid in PyNative and graph mode.
# Argument names follow the mint functions they replace.
# ---------------------------------------------------------------------------------------------

def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _arange(start=0, end=None, step=1, *, dtype=None):
    """mint.arange on the classic Range kernel (int64 for integer bounds, else float32)."""
    return ops.arange(start, end, step, dtype=dtype)  # (ceil((end - start) / step),)


def _stack(tensors, dim=0):
    """mint.stack on the classic Stack kernel."""
    return ops.stack(tensors, dim)


def _split(tensor, split_size_or_sections, dim=0):
    """mint.split by slicing (graph mode has no CPU SplitWithSize kernel)."""
    return ops.split(tensor, split_size_or_sections, dim)


def _baddbmm(input, batch1, batch2, *, beta=1, alpha=1):  # noqa: A002
    """beta * input + alpha * batch1 @ batch2 on BatchMatMul; input is ignored when beta == 0."""
    prod = ops.bmm(batch1, batch2)  # (B, N, M)
    if alpha != 1:
        prod = prod * alpha
    if beta == 0:
        return prod
    if beta != 1:
        return input * beta + prod
    return input + prod


def _randn(*size, generator=None, dtype=None):
    """mint.randn on StandardNormal (global seed); mindone uses it to initialise parameters."""
    if generator is not None:
        raise NotImplementedError("mint.randn fallback: a Generator is not supported off Ascend")
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)
    out = ops.standard_normal(shape)  # shape
    return out if dtype is None else out.astype(dtype)


def _tensor_normal_(self, mean=0.0, std=1.0, *, generator=None):
    """Tensor.normal_ (in place, used by mindone's _init_weights) on StandardNormal."""
    if generator is not None:
        raise NotImplementedError("Tensor.normal_ fallback: a Generator is not supported off Ascend")
    values = ops.standard_normal(self.shape) * std + mean  # self.shape
    self.assign_value(values.astype(self.dtype))
    return self


def _tensor_zero_(self):
    """Tensor.zero_ (in place) via assign_value."""
    self.assign_value(ops.zeros(self.shape, self.dtype))
    return self


def _tensor_repeat_interleave(self, repeats, dim=None, *, output_size=None):
    """Tensor.repeat_interleave (attention-mask preparation) on the classic RepeatInterleave path."""
    return ops.repeat_interleave(self, repeats, dim)  # axis `dim` repeated (input flattened if None)


def _pad(input, pad, mode="constant", value=None):  # noqa: A002
    """mint pad: a zero pad on the classic Pad kernel, the other pads on the classic PadV3 kernels.

    In a compiled CPU graph, MindSpore 2.7.1's gradient of PadV3 is right on the graph's first run only and
    wrong on later ones (test/models/test_pad_gradient.py), so the layers before a pad (the VAE encoder's
    downsamplers) trained on wrong gradients. Pad's gradient holds, and its output is the same."""
    pad = tuple(pad)
    if mode == "constant" and not value:
        pairs = len(pad) // 2  # torch order: (before, after) from the last axis backwards
        paddings = ((0, 0),) * (input.ndim - pairs) + tuple(
            [(pad[2 * (pairs - 1 - i)], pad[2 * (pairs - 1 - i) + 1]) for i in range(pairs)])
        return ops.Pad(paddings)(input)  # each padded axis grown by its two pads
    return ops.pad(input, pad, mode, value)


def _dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """mint dropout: identity in eval or with p == 0, else the classic Dropout kernel."""
    if not training or p == 0:
        return input
    return ops.dropout(input, p=p, training=True)  # same shape as input


# Abramowitz & Stegun 7.1.26: erfc(a) = poly(t) exp(-a^2), t = 1 / (1 + p a), a >= 0, |error| <= 1.5e-7.
_ERFC_P = 0.3275911
_ERFC_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _gelu(input, approximate="none"):  # noqa: A002
    """Exact (erf) or tanh GELU; the classic GeLU kernel is the tanh form.

    The exact form is x Phi(x) = relu(x) - |x| erfc(|x| / sqrt 2) / 2 with erfc as a rational
    polynomial times exp (|error| <= 7e-7 vs float64): the Erf kernel is single-threaded on CPU and
    made GELU 2.2x slower (32 vs 15 ms on 1.5 M values). Infinite inputs give NaN.
    """
    if approximate == "tanh":
        return ops.gelu(input, approximate="tanh")
    a = ops.abs(input)
    t = ops.reciprocal(a * (_ERFC_P * 0.7071067811865476) + 1.0)
    c0, c1, c2, c3, c4 = _ERFC_A
    poly = t * (c0 + t * (c1 + t * (c2 + t * (c3 + t * c4))))  # erfc(|x| / sqrt 2) / exp(-x^2 / 2)
    return ops.relu(input) - a * (poly * ops.exp(input * input * -0.5) * 0.5)  # same shape as input


def gelu_exact(input):  # noqa: A002
    """Exact GELU: the native kernel on CPU (one multi-threaded pass, 8x faster on 2 M values), else
    the fallback's ops. Only for code whose graphs are statically typed: inside mindone's DPT-Hybrid
    forward a native op landed in a runtime-typed subgraph that MindSpore cannot run ('The prim is
    not a PrimitivePy'), so the ``mint`` GELU fallback itself stays on MindSpore ops."""
    if _NATIVE_GELU is not None and input.dtype == ms.float32:
        return _NATIVE_GELU(input)
    return _gelu(input)


def layer_norm_last_axis(input, weight, bias, eps):  # noqa: A002
    """LayerNorm over the last axis with (D,) ``weight`` and ``bias``: the native kernel on CPU, else ops."""
    if _NATIVE_LAYER_NORM is not None and input.dtype == ms.float32:
        return _NATIVE_LAYER_NORM(input, weight, bias, ops.ones((1,), ms.float32) * eps)  # same shape as input
    return ops.LayerNorm(-1, -1, eps)(input, weight, bias)[0]


def group_norm(input, num_groups, weight, bias, eps, relu=False):  # noqa: A002
    """GroupNorm (N, C, ...) with (C,) ``weight`` / ``bias`` [+ ReLU]: native on CPU (13 ms -> ~1 ms on
    256 x 96 x 96 values), else ``ops.group_norm``."""
    if _NATIVE_GROUP_NORM is not None and input.dtype == ms.float32:
        op = _NATIVE_GROUP_NORM[1] if relu else _NATIVE_GROUP_NORM[0]
        return op(input, weight, bias, ops.ones((num_groups,), ms.float32) * eps)  # same shape as input
    out = ops.group_norm(input, num_groups, weight, bias, eps)
    return ops.relu(out) if relu else out


def _group_norm_construct(self, input):  # noqa: A002
    """mint GroupNorm through :func:`group_norm` (affine; without weights, MindSpore's kernel)."""
    if self.weight is None or self.bias is None:
        return ops.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)
    return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


def conv3x3(input, weight, bias):  # noqa: A002
    """3x3 convolution, stride 1, padding 1, groups 1, (C_out,) ``bias``: Winograd (:func:`_conv2d`'s rule) or ops."""
    return _conv2d(input, weight, bias, 1, 1, 1, 1)


def conv_transpose2d(input, weight, bias, stride):  # noqa: A002
    """Transposed convolution, weight (C_in, C_out, kh, kw), no padding (the ``mint`` fallback)."""
    return _conv_transpose2d(input, weight, bias, stride)


def native_kernels_bound() -> bool:
    """True when configure() bound the native CPU kernels (see _NATIVE_GELU)."""
    return _NATIVE_GELU is not None


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """LayerNorm over the trailing ``len(normalized_shape)`` axes on the classic LayerNorm kernel."""
    shape = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
    if len(shape) == 1 and weight is not None and bias is not None:
        return layer_norm_last_axis(input, weight, bias, eps)
    axis = input.ndim - len(shape)  # the kernel rejects negative axes below -1
    if weight is None:
        weight = ops.ones(shape, input.dtype)
    if bias is None:
        bias = ops.zeros(shape, input.dtype)
    return ops.LayerNorm(axis, axis, eps)(input, weight, bias)[0]  # same shape as input


def _winograd_applies(input, weight, stride, padding, dilation, groups) -> bool:  # noqa: A002
    """True when the native Winograd kernels take this convolution: built (CPU), 3x3, stride 1, zero padding 1,
    groups 1, float32, a map of at least WINOGRAD_MIN_PIXELS pixels."""
    return _NATIVE_WINOGRAD is not None and groups == 1 and not isinstance(padding, str) and \
        _pair(padding) == (1, 1) and _pair(stride) == (1, 1) and _pair(dilation) == (1, 1) and \
        weight.shape[2] == 3 and weight.shape[3] == 3 and \
        input.shape[2] * input.shape[3] >= WINOGRAD_MIN_PIXELS and input.dtype == ms.float32


def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """NCHW convolution on the classic Conv2D kernel; padding int, pair, 'same' or 'valid'.

    On CPU, 3x3 stride-1 convolutions padded by 1 (groups 1, float32) on maps of at least
    WINOGRAD_MIN_PIXELS pixels run as the native Winograd kernel instead, which transforms the weight on
    every call (4x4 output tiles on large maps, 2x2 tiles by panels otherwise; see native_kernels). C_out is
    padded to a multiple of 8 with zero filters: TAESD's last 64 -> 3 convolution at 640x480 took 118 ms in
    oneDNN.
    """
    if _winograd_applies(input, weight, stride, padding, dilation, groups):
        out_ch = weight.shape[0]
        if bias is None:
            bias = ops.zeros((out_ch,), ms.float32)
        if out_ch % 8 == 0:
            return _NATIVE_WINOGRAD(input, weight, bias)  # (N, C_out, H, W)
        extra = 8 - out_ch % 8
        weight = ops.concat((weight, ops.zeros((extra,) + weight.shape[1:], ms.float32)), 0)  # (C_out', C_in, 3, 3)
        bias = ops.concat((bias, ops.zeros((extra,), ms.float32)), 0)
        return _NATIVE_WINOGRAD(input, weight, bias)[:, :out_ch]  # (N, C_out, H, W)
    if isinstance(padding, str):
        out = ops.conv2d(input, weight, None, _pair(stride), padding, 0, _pair(dilation), groups)
    else:
        out = ops.conv2d(input, weight, None, _pair(stride), "pad", _pair(padding), _pair(dilation), groups)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)  # (N, C_out, H', W')
    return out


def _conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                      dilation=1):
    """Transposed convolution, weight (C_in, C_out / groups, kh, kw), on Conv2DBackpropInput.

    The full, unpadded result is cropped by ``padding``; ``output_padding`` extra rows/columns at
    the bottom/right are zero where nothing contributes, as in PyTorch. A kernel equal to its stride
    (DPT / Depth Anything reassembly: 4x4 stride 4, 2x2 stride 2) places disjoint blocks: one matrix
    product and a transpose (4 ms instead of 27 ms through the general path below for DPT's 48-channel
    4x4 / stride 4 at 37x37).
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    dh, dw = _pair(dilation)
    n, c_in, h, w = input.shape
    kh, kw = weight.shape[2], weight.shape[3]
    if (kh, kw) == (sh, sw) and (ph, pw, oph, opw) == (0, 0, 0, 0) and (dh, dw) == (1, 1) and groups == 1:
        c_out = weight.shape[1]
        columns = weight.reshape(c_in, -1).swapaxes(0, 1)  # (C_out kh kw, C_in)
        blocks = ops.matmul(columns, input.reshape(n, c_in, h * w))  # (N, C_out kh kw, h w)
        out = blocks.reshape(n, c_out, kh, kw, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c_out, h * kh, w * kw)
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)
    c_out = weight.shape[1] * groups
    full_h = (h - 1) * sh + dh * (kh - 1) + 1
    full_w = (w - 1) * sw + dw * (kw - 1) + 1
    deconv = ops.Conv2DTranspose(c_out, (kh, kw), pad_mode="valid", stride=(sh, sw), dilation=(dh, dw), group=groups)
    out = deconv(input, weight, (n, c_out, full_h, full_w))  # (N, C_out, full_h, full_w)
    out_h = full_h - 2 * ph + oph
    out_w = full_w - 2 * pw + opw
    extra_h = max(ph + out_h - full_h, 0)
    extra_w = max(pw + out_w - full_w, 0)
    if extra_h or extra_w:
        out = ops.pad(out, (0, extra_w, 0, extra_h))
    out = out[:, :, ph:ph + out_h, pw:pw + out_w]  # (N, C_out, out_h, out_w)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def _interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,  # noqa: A002
                 recompute_scale_factor=None):
    """mint interpolate with 4-D bilinear on ResizeBilinearV2 and bicubic as two matmuls.

    Other modes keep mint's implementation (they have CPU kernels). With a fractional
    ``scale_factor`` source coordinates follow the size ratio (as recompute_scale_factor=True).
    """
    if input.ndim != 4 or mode not in ("bilinear", "bicubic"):
        return _ORIGINALS["mindspore.mint.nn.functional.interpolate"](
            input, size, scale_factor, mode, align_corners, recompute_scale_factor)
    if size is None:
        sf_h, sf_w = _pair(scale_factor)
        size = (int(input.shape[2] * sf_h), int(input.shape[3] * sf_w))
    size = _pair(size)
    corners = bool(align_corners)
    if mode == "bilinear":
        return ops.ResizeBilinearV2(corners, not corners)(input, size)  # (N, C, H', W')
    return _bicubic(input, size, corners)


def _cubic_weights(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) bicubic resampling matrix, PyTorch's convention (A = -0.75, clamped borders).

    MindSpore's ResizeBicubic uses A = -0.5 and differs from PyTorch by up to 0.2 on unit noise.
    In graph mode this runs at compile time (shapes are constants).
    """
    a = -0.75
    if align_corners:
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(src)
    t = src - base
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    for k in range(-1, 3):
        d = np.abs(t - k)
        wk = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                      np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
        idx = np.clip(base + k, 0, n_in - 1).astype(np.int64)
        np.add.at(mat, (np.arange(n_out), idx), wk)
    return mat.astype(np.float32)


def _bicubic(input, size, align_corners):  # noqa: A002
    """Separable bicubic resize: rows and columns each one matrix product."""
    n, c, h, w = input.shape
    wh = ms.Tensor(_cubic_weights(h, size[0], align_corners), input.dtype)  # (H', H)
    ww = ms.Tensor(_cubic_weights(w, size[1], align_corners).T, input.dtype)  # (W, W')
    x = ops.matmul(input.reshape(n * c, h, w), ww)  # (N*C, H, W')
    x = ops.matmul(wh, x)  # (N*C, H', W')
    return x.reshape(n, c, size[0], size[1])


def _linear(input, weight, bias=None):  # noqa: A002
    """x @ weight.T + bias as one 2-D MatMul (weight read transposed, not copied) and BiasAdd.

    The Dense kernel behind mint's Linear took 2-10x longer on CPU at the UNet's shapes (e.g. 93 vs
    20 ms for (75, 1280) -> 10240), and was 2.3 of the UNet's 4.2 s in PyNative.
    """
    lead = input.shape[:-1]
    out = ops.MatMul(transpose_b=True)(input.reshape(-1, input.shape[-1]), weight)  # (prod(lead), out)
    if bias is not None:
        out = ops.bias_add(out, bias)
    return out.reshape(lead + (weight.shape[0],))  # (..., out)


def _linear_construct(self, input):  # noqa: A002
    """mint.nn.Linear.construct on :func:`_linear` (same weight / bias parameters)."""
    return _linear(input, self.weight, self.bias)


def _attention_scores(self, query, key, attention_mask=None):
    """mindone Attention.get_attention_scores: softmax(scale q k^T + mask) with k read transposed.

    mindone scales q and k by sqrt(scale) each and copies k^T before a bmm; one BatchMatMul with
    transpose_b on (q * scale) saves two passes and the copy.
    """
    dtype = query.dtype
    if self.upcast_attention:
        query, key = query.float(), key.float()
    scores = ops.BatchMatMul(transpose_b=True)(query * self.scale, key)  # (B, N_q, N_k)
    if attention_mask is not None:
        scores = scores + attention_mask.to(scores.dtype)
    if self.upcast_softmax:
        scores = scores.float()
    return ops.softmax(scores, -1).to(dtype)  # (B, N_q, N_k)


def swap_axes_12(x):
    """(A, R, C, D) -> (A, C, R, D), contiguous: the native copy on CPU, else ``swapaxes``.

    MindSpore 2.7's CPU graphs do not reuse the memory of Transpose outputs, nor of the ops that
    consume them (measured: 10 transpose + add pairs on 10 MB held 220 MB; the same with this
    kernel, 0), so the UNet's head and layout transposes go through here.
    """
    if _NATIVE_SWAP_AXES is not None and x.dtype == ms.float32:
        return _NATIVE_SWAP_AXES(x)  # (A, C, R, D)
    return x.swapaxes(1, 2)


def channels_to_tokens(x):
    """(B, C, H, W) -> (B, H * W, C)."""
    b, c, h, w = x.shape
    return swap_axes_12(x.reshape(b, c, h * w, 1)).reshape(b, h * w, c)


def tokens_to_channels(x, height, width):
    """(B, H * W, C) -> (B, C, H, W)."""
    b, n, c = x.shape
    return swap_axes_12(x.reshape(b, n, c, 1)).reshape(b, c, height, width)


def _native_attention_fits(query, value_dim: int, heads: int, masked: bool) -> bool:
    """True when the fused kernel takes these heads: unmasked float32, d and dv multiples of 16, d small."""
    head = query.shape[-1] // heads
    return (not masked and _NATIVE_ATTENTION is not None and query.dtype == ms.float32 and head % 16 == 0
            and value_dim % (16 * heads) == 0 and head <= NATIVE_ATTENTION_MAX_HEAD_DIM)


def _attention_processor_call(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                              temb=None):
    """mindone AttnProcessor2_0.__call__ with the heads left side by side for the fused kernel.

    The same steps as mindone's (spatial norm, group norm, cross-attention norm, q / k norms, residual,
    rescale); where the fused kernel fits, q, k and v go to it as the projections produce them, without
    the three head transposes and the one back, and 4-D inputs change layout with :func:`swap_axes_12`.
    Otherwise mindone's path (``scaled_dot_product_attention`` on transposed heads).
    """
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    input_ndim = hidden_states.ndim
    height, width = 0, 0
    if input_ndim == 4:
        height, width = hidden_states.shape[2], hidden_states.shape[3]
        hidden_states = channels_to_tokens(hidden_states)  # (B, HW, C)
    batch_size = hidden_states.shape[0] if encoder_hidden_states is None else encoder_hidden_states.shape[0]
    sequence_length = hidden_states.shape[1] if encoder_hidden_states is None else encoder_hidden_states.shape[1]
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.swapaxes(1, 2)).swapaxes(1, 2)
    query = attn.to_q(hidden_states)  # (B, N, H * d)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)  # (B, M, H * d)
    value = attn.to_v(encoder_hidden_states)  # (B, M, H * dv)
    heads = attn.heads
    if attn.norm_q is None and attn.norm_k is None and _native_attention_fits(query, value.shape[-1], heads,
                                                                                attention_mask is not None):
        hidden_states = _NATIVE_ATTENTION(query, key, value, ops.ones((heads,), ms.float32) * attn.scale)
    else:
        head_dim = key.shape[-1] // heads
        query = query.view(batch_size, -1, heads, head_dim).swapaxes(1, 2)  # (B, H, N, d)
        key = key.view(batch_size, -1, heads, head_dim).swapaxes(1, 2)
        value = value.view(batch_size, -1, heads, value.shape[-1] // heads).swapaxes(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = attn.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                          dropout_p=0.0, is_causal=False)  # (B, H, N, dv)
        hidden_states = hidden_states.swapaxes(1, 2).reshape(batch_size, -1, value.shape[1] * value.shape[-1])
        hidden_states = hidden_states.to(query.dtype)
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))  # (B, N, C_out)
    if input_ndim == 4:
        hidden_states = tokens_to_channels(hidden_states, height, width)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


def _continuous_inputs(self, hidden_states):
    """mindone Transformer2DModel._operate_on_continuous_inputs with :func:`channels_to_tokens`."""
    hidden_states = self.norm(hidden_states)
    if not self.use_linear_projection:
        hidden_states = self.proj_in(hidden_states)
        return channels_to_tokens(hidden_states), hidden_states.shape[1]
    return self.proj_in(channels_to_tokens(hidden_states)), hidden_states.shape[1]


def _continuous_outputs(self, hidden_states, residual, batch_size, height, width, inner_dim):
    """mindone Transformer2DModel._get_output_for_continuous_inputs with :func:`tokens_to_channels`."""
    if not self.use_linear_projection:
        return self.proj_out(tokens_to_channels(hidden_states, height, width)) + residual
    return tokens_to_channels(self.proj_out(hidden_states), height, width) + residual


def _math_attention_op(self, query, key, value, attn_mask=None):
    """mindone Attention.math_attention_op: softmax(scale q k^T + mask) v over (..., N, d) heads.

    Unmasked float32 heads with d and dv multiples of 16 (d <= NATIVE_ATTENTION_MAX_HEAD_DIM) run the
    native fused kernel on CPU, which never stores the (N, M) probabilities: an SD2 UNet's 5 x 1200^2
    self-attention took 11 instead of 25 ms, at 4800 tokens 166 instead of 323 ms, and the UNet pass at
    640x480 peaked 0.8 GB lower. Otherwise mindone's own path: get_attention_scores, then bmm.
    """
    lead = query.shape[:-2]
    q = query.reshape(-1, query.shape[-2], query.shape[-1])  # (B, N, d)
    k = key.reshape(-1, key.shape[-2], key.shape[-1])  # (B, M, d)
    v = value.reshape(-1, value.shape[-2], value.shape[-1])  # (B, M, dv)
    value_dim = value.shape[-1]
    if _native_attention_fits(q, value_dim, 1, attn_mask is not None):
        out = _NATIVE_ATTENTION(q, k, v, ops.ones((1,), ms.float32) * self.scale)  # (B, N, dv)
    else:
        if attn_mask is not None and attn_mask.dtype == ms.bool_:  # True = attend, as in mindone
            lowest = float(np.finfo(np.float32).min) if query.dtype == ms.float32 else -65504.0
            attn_mask = ops.logical_not(attn_mask).astype(query.dtype) * lowest
        out = ops.BatchMatMul()(self.get_attention_scores(q, k, attn_mask), v)  # (B, N, dv)
    return out.reshape(lead + out.shape[-2:])


def _conv2d_construct(self, input):  # noqa: A002
    """mint.nn.Conv2d.construct on the classic Conv2D kernel (same weight / bias parameters)."""
    if self.padding_mode != "zeros":
        x = ops.pad(input, self._reversed_padding, self.padding_mode)  # (N, C, H + pads, W + pads)
        return _conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
    return _conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _fusable_conv(conv, input) -> bool:  # noqa: A002
    """A mint.nn.Conv2d that Winograd3x3Raw{Relu,ResidualRelu} can run on ``input`` as is (bias, C_out % 8 == 0)."""
    return conv.padding_mode == "zeros" and conv.bias is not None and conv.weight.shape[0] % 8 == 0 and \
        _winograd_applies(input, conv.weight, conv.stride, conv.padding, conv.dilation, conv.groups)


def _tiny_block_construct(self, x):
    """mindone AutoencoderTinyBlock.construct, ReLU(conv3(ReLU(conv2(ReLU(conv1(x))))) + x): on CPU three native
    Winograd calls with the ReLUs and the residual add in their epilogues. Unfused, each of those four
    elementwise ops read and wrote a whole 64-channel map (TAESD at 640x480: 79 MB at full resolution)."""
    first, act, second, third = self.conv[0], self.conv[1], self.conv[2], self.conv[4]
    if _NATIVE_WINOGRAD_RELU is not None and isinstance(act, ms.mint.nn.ReLU) and \
            isinstance(self.skip, ms.mint.nn.Identity) and _fusable_conv(first, x) and \
            first.weight.shape[0] == x.shape[1] and _fusable_conv(second, x) and _fusable_conv(third, x):
        relu_conv, residual_relu_conv = _NATIVE_WINOGRAD_RELU
        y = relu_conv(x, first.weight, first.bias)  # (N, C, H, W)
        y = relu_conv(y, second.weight, second.bias)  # (N, C, H, W)
        return residual_relu_conv(y, third.weight, third.bias, x)  # (N, C, H, W)
    return self.fuse(self.conv(x) + self.skip(x))


def _conv_transpose2d_construct(self, input, output_size=None):  # noqa: A002
    """mint.nn.ConvTranspose2d.construct on Conv2DBackpropInput (same parameters)."""
    output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2,
                                          self.dilation)
    return _conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                             self.groups, self.dilation)


def _layer_norm_construct(self, input):  # noqa: A002
    """mint.nn.LayerNorm.construct on the classic LayerNorm kernel (same parameters)."""
    return _layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


def _geglu_construct(self, hidden_states):
    """mindone GEGLU.construct: the native fused kernel on CPU (one pass instead of two slices, a GELU
    and a product; slices are view ops, which CPU graphs free late), else the gate split by slicing
    (graph mode has no CPU Chunk kernel) and the exact GELU of :func:`gelu_exact`."""
    hidden_states = self.proj(hidden_states)  # (..., 2 * dim_out)
    half = hidden_states.shape[-1] // 2
    if _NATIVE_GEGLU is not None and hidden_states.dtype == ms.float32 and half % 16 == 0:
        return _NATIVE_GEGLU(hidden_states)  # (..., dim_out)
    return hidden_states[..., :half] * gelu_exact(hidden_states[..., half:])  # (..., dim_out)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fallback:
    """One rerouted call: ``target`` (dotted attribute path) is replaced by ``impl`` off Ascend."""

    target: str
    kernels: str  # what fails on CPU without it
    used_by: str  # where the project's models reach it
    impl: Callable


_F = "mindspore.mint.nn.functional."
# Found by running each model class on CPU (PyNative and graph) until it ran. stack, baddbmm and
# repeat_interleave are not reached by the unmasked forward passes; they cover mindone's image
# processor and masked attention, which these models' code can call.
FALLBACKS: tuple[Fallback, ...] = (
    Fallback("mindspore.mint.arange", "Arange", "UNet timestep embedding", _arange),
    Fallback("mindspore.mint.split", "SplitWithSize (graph mode only)", "UNet timestep embedding", _split),
    Fallback("mindspore.mint.stack", "StackExt", "mindone VaeImageProcessor (pipelines)", _stack),
    Fallback("mindspore.mint.baddbmm", "Baddbmm", "masked attention (get_attention_scores)", _baddbmm),
    Fallback("mindspore.mint.randn", "Randn", "Dinov2 (Depth Anything) parameter init", _randn),
    Fallback("mindspore.common.tensor.Tensor.normal_", "InplaceNormal", "Depth Anything _init_weights",
             _tensor_normal_),
    Fallback("mindspore.common.tensor.Tensor.zero_", "InplaceZero", "Depth Anything _init_weights", _tensor_zero_),
    Fallback("mindspore.common.tensor.Tensor.repeat_interleave", "RepeatInterleaveInt",
             "masked attention (prepare_attention_mask)", _tensor_repeat_interleave),
    Fallback(_F + "pad", "ConstantPadND, ReflectionPad2D, ReplicationPad2D; PadV3's gradient in graphs",
             "VAE Downsample2D", _pad),
    Fallback(_F + "dropout", "DropoutExt (even in eval)", "Dinov2 attention", _dropout),
    Fallback(_F + "gelu", "GeluExt", "GEGLU, CLIP, DPT, Dinov2 (also mint.nn.GELU)", _gelu),
    Fallback(_F + "layer_norm", "LayerNormExt", "functional form of mint.nn.LayerNorm", _layer_norm),
    Fallback(_F + "conv2d", "Conv2DExt, Conv2DPadding", "functional form of mint.nn.Conv2d", _conv2d),
    Fallback(_F + "conv_transpose2d", "ConvTranspose2D", "functional form of mint.nn.ConvTranspose2d",
             _conv_transpose2d),
    Fallback(_F + "interpolate", "UpsampleBilinear2D, UpsampleBicubic2D", "Depth Anything neck/head, Dinov2 "
             "position embeddings", _interpolate),
    Fallback("mindspore.mint.nn.Conv2d.construct", "Conv2DExt, Conv2DPadding", "UNet, VAE, TAESD, Depth Anything",
             _conv2d_construct),
    Fallback("mindspore.mint.nn.ConvTranspose2d.construct", "ConvTranspose2D", "Depth Anything reassemble",
             _conv_transpose2d_construct),
    Fallback(_F + "linear", "Dense (runs, but 2-10x slower than MatMul on CPU)", "functional form of "
             "mint.nn.Linear", _linear),
    Fallback("mindspore.mint.nn.Linear.construct", "Dense (runs, but 2-10x slower than MatMul on CPU)",
             "UNet attention and feed-forward, CLIP, DPT, Dinov2", _linear_construct),
    Fallback("mindspore.mint.nn.LayerNorm.construct", "LayerNormExt", "UNet transformers, Dinov2",
             _layer_norm_construct),
    Fallback("mindspore.mint.nn.GroupNorm.construct", "none (speed: ops.group_norm is ~30x slower than native)",
             "UNet, VAE resnets", _group_norm_construct),
    Fallback("mindone.diffusers.models.attention_processor.Attention.get_attention_scores",
             "none (speed: no k^T copy, one scaling pass)", "UNet, VAE mid-block attention",
             _attention_scores),
    Fallback("mindone.diffusers.models.attention_processor.Attention.math_attention_op",
             "none (speed and memory: fused attention, no (N, M) probabilities)", "UNet and VAE attention",
             _math_attention_op),
    Fallback("mindone.diffusers.models.attention_processor.AttnProcessor2_0.__call__",
             "none (memory and speed: no head transposes, whose outputs CPU graphs never reuse)",
             "UNet and VAE attention", _attention_processor_call),
    Fallback("mindone.diffusers.models.transformers.transformer_2d.Transformer2DModel."
             "_operate_on_continuous_inputs", "none (memory: native layout change, see swap_axes_12)",
             "UNet transformers", _continuous_inputs),
    Fallback("mindone.diffusers.models.transformers.transformer_2d.Transformer2DModel."
             "_get_output_for_continuous_inputs", "none (memory: native layout change, see swap_axes_12)",
             "UNet transformers", _continuous_outputs),
    Fallback("mindone.diffusers.models.activations.GEGLU.construct", "Chunk (graph mode only)",
             "UNet feed-forward", _geglu_construct),
    Fallback("mindone.diffusers.models.unets.unet_2d_blocks.AutoencoderTinyBlock.construct",
             "none (speed and memory: ReLUs and residual add fused into the convolutions)", "TAESD",
             _tiny_block_construct),
)


def _resolve_owner(target: str):
    """(owner object, attribute name) of a dotted target such as 'mindspore.mint.nn.Conv2d.construct'."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(f"cannot resolve fallback target {target!r}")


def _install_fallbacks() -> None:
    for fb in FALLBACKS:
        if fb.target in _ORIGINALS:
            continue
        try:
            owner, attr = _resolve_owner(fb.target)
        except ImportError:
            if fb.target.startswith("mindspore."):
                raise
            continue  # mindone not installed: nothing of it to fix
        _ORIGINALS[fb.target] = getattr(owner, attr)
        setattr(owner, attr, fb.impl)


def installed_fallbacks() -> list[str]:
    """Installed fallbacks as ``'<target> (<kernels it avoids>)'``, in table order."""
    return [f"{fb.target} ({fb.kernels})" for fb in FALLBACKS if fb.target in _ORIGINALS]


# ---------------------------------------------------------------------------------------------
# Context
# ---------------------------------------------------------------------------------------------

def cpu_has_avx512() -> bool:
    """True when /proc/cpuinfo lists avx512f."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


def _apply_cpu_isa(max_cpu_isa: str) -> str | None:
    """Cap oneDNN's ISA before MindSpore loads; return the cap in force (None: oneDNN's choice)."""
    current = os.environ.get("DNNL_MAX_CPU_ISA")
    if max_cpu_isa == "auto" or current == max_cpu_isa:
        return current
    if "mindspore" in sys.modules:
        raise RuntimeError(f"max_cpu_isa={max_cpu_isa!r} must be applied before mindspore is imported "
                           f"(DNNL_MAX_CPU_ISA is {current!r}); call configure() first or set the variable")
    # MindSpore 2.7.1 bundles oneDNN 2.2, which reads only the DNNL_ name; later oneDNN reads ONEDNN_.
    os.environ["DNNL_MAX_CPU_ISA"] = max_cpu_isa
    os.environ["ONEDNN_MAX_CPU_ISA"] = max_cpu_isa
    return max_cpu_isa


def _bind_native_kernels() -> None:
    """Bind the native CPU kernels the fallbacks use (each None when they cannot be built)."""
    global _NATIVE_GELU, _NATIVE_LAYER_NORM, _NATIVE_WINOGRAD, _NATIVE_GROUP_NORM, _NATIVE_ATTENTION
    global _NATIVE_SWAP_AXES, _NATIVE_GEGLU, _NATIVE_WINOGRAD_RELU
    from depth_ms.models import native_kernels

    plain, relu = (native_kernels.native_elementwise_op(k) for k in ("GroupNormPlain", "GroupNormRelu"))
    _NATIVE_GROUP_NORM = (plain, relu) if plain is not None and relu is not None else None
    _NATIVE_GELU = native_kernels.native_elementwise_op("GeluExact")
    _NATIVE_LAYER_NORM = native_kernels.native_elementwise_op("LayerNormLastAxis")
    _NATIVE_WINOGRAD = native_kernels.native_conv_op("Winograd3x3Raw")
    relu, residual_relu = (native_kernels.native_conv_op(k)
                           for k in ("Winograd3x3RawRelu", "Winograd3x3RawResidualRelu"))
    _NATIVE_WINOGRAD_RELU = (relu, residual_relu) if relu is not None and residual_relu is not None else None
    _NATIVE_ATTENTION = native_kernels.native_attention_op()
    _NATIVE_SWAP_AXES = native_kernels.native_elementwise_op("SwapAxes")
    _NATIVE_GEGLU = native_kernels.native_elementwise_op("GegluExact")


def keep_torch_out() -> None:
    """Tell transformers / diffusers not to import PyTorch (USE_TORCH=0) unless the caller decided already.

    They import it whenever it is installed; the product never needs it. Estimator factories call this;
    :func:`configure` does not, so that tests can still load the PyTorch references after configuring.
    """
    os.environ.setdefault("USE_TORCH", "0")


def configure(device: str = "cpu", mode: str = "pynative", *, device_id: int | None = None,
              synchronize: bool | None = None, max_cpu_isa: str = "auto") -> dict:
    """Set MindSpore's device and execution mode and, off Ascend, install :data:`FALLBACKS`.

    Args:
        device: "cpu", "gpu" or "ascend" (any case).
        mode: "pynative" or "graph" (GRAPH_MODE). ``ms.jit`` works from either.
        device_id: GPU/Ascend index; None keeps MindSpore's default (0).
        synchronize: blocking kernel launch (``pynative_synchronize``). None: on for CPU (2.2x
            faster UNet on 2 cores), MindSpore's default elsewhere. Once on, it stays on.
        max_cpu_isa: oneDNN ISA cap such as "AVX2"; "auto" leaves oneDNN's choice (or an existing
            DNNL_MAX_CPU_ISA), measured fastest on the AVX-512 host. Needs mindspore not yet imported.

    Returns:
        Summary for logs: device, mode, synchronize, cpu_isa, cpu_avx512, native_kernels, fallbacks.

    Idempotent: a repeated call re-applies the mode; fallbacks are never installed twice. The
    device itself cannot change once MindSpore has initialised it (RuntimeError).
    """
    dev_key = str(device).lower()
    if dev_key not in DEVICES:
        raise ValueError(f"unknown MindSpore device {device!r}; expected one of {sorted(DEVICES)}")
    mode_key = str(mode).lower()
    if mode_key not in MODES:
        raise ValueError(f"unknown MindSpore mode {mode!r}; expected one of {list(MODES)}")
    isa = "auto" if str(max_cpu_isa).lower() == "auto" else str(max_cpu_isa).upper()
    if isa not in CPU_ISAS:
        raise ValueError(f"unknown max_cpu_isa {max_cpu_isa!r}; expected one of {list(CPU_ISAS)}")
    target = DEVICES[dev_key]
    cpu_isa = _apply_cpu_isa(isa) if target == "CPU" else None

    _load_mindspore()
    try:
        ms.set_device(target) if device_id is None else ms.set_device(target, int(device_id))
    except RuntimeError as exc:
        raise RuntimeError(f"cannot switch MindSpore to {target} (device_id={device_id}) in this process: "
                           f"{str(exc).splitlines()[0]}") from exc
    ms.set_context(mode=ms.GRAPH_MODE if mode_key == "graph" else ms.PYNATIVE_MODE)
    sync = (target == "CPU") if synchronize is None else bool(synchronize)
    if sync:
        ms.runtime.launch_blocking()
    if target != "Ascend":
        _install_fallbacks()
    if target == "CPU":
        _bind_native_kernels()
    _STATE.update(device=target, mode=mode_key, synchronize=bool(sync or _STATE.get("synchronize")),
                  cpu_isa=cpu_isa, cpu_avx512=cpu_has_avx512(), native_kernels=_NATIVE_GELU is not None)
    return dict(_STATE, fallbacks=installed_fallbacks())
