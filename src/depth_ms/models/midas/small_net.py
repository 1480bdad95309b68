"""MiDaS v2.1 small (``midas_v21_small_256``) as a MindSpore network, inference only.

Same computation as the official ``MidasNet_small(features=64, backbone="efficientnet_lite3",
exportable=True, non_negative=True, blocks={'expand': True})`` with the official defaults
``align_corners=True`` in the four fusion blocks and ``align_corners=False`` in the output head:

- encoder: gen-efficientnet ``tf_efficientnet_lite3`` (ReLU6, BatchNorm eps 1e-3, TensorFlow "same"
  padding). Stride-1 convolutions pad symmetrically; stride-2 convolutions pad (k - 2) // 2 before
  and the rest after, which is TF "same" for even inputs. Every stride-2 convolution sees an even
  size when the input sides are multiples of 32, so this matches both gen-efficientnet's dynamic
  padding and the ``exportable=True`` padding (frozen at the first input size) for every accepted
  input; other sizes raise ValueError.
- decoder: four RefineNet-style fusion blocks (x2 bilinear upsampling, align_corners=True) and the
  output head (3x3 conv, x2 bilinear with align_corners=False, 3x3 conv, ReLU, 1x1 conv, ReLU).

Parameter names are the official state-dict keys (``pretrained.layer1.0.weight``,
``scratch.refinenet4.resConfUnit1.conv1.bias``, ...), one to one, except the BatchNorm
``num_batches_tracked`` counters (training bookkeeping, ignored on load). BatchNorm layers hold
``weight``, ``bias``, ``running_mean`` and ``running_var`` like torch.

Fast path (exact in real arithmetic; only float32 rounding changes, the fixture stays within 5e-5 of
the output range):
- each fusion block applies its 1x1 ``out_conv`` before the x2 upsampling instead of after (a 1x1
  convolution commutes with bilinear resampling, whose weights sum to 1), on 4x fewer pixels;
- :meth:`MidasSmall.prepare_inference` (called by :func:`load_midas_small` and
  :func:`build_midas_small`) folds each BatchNorm into the preceding convolution's weights; the
  named parameters keep the checkpoint values, the folded copies live beside them;
- native CPU kernels (:mod:`depth_ms.models.native_kernels`): the encoder runs channels last (NHWC,
  channels zero-padded to a multiple of 16): stem, depthwise and 1x1 convolutions with BatchNorm,
  ReLU6 and residual adds fused in; its four outputs stay channels last and the decoder's 3x3
  projections read them directly. Every other 3x3 convolution of the decoder runs as Winograd
  F(2x2, 3x3) (maps >= WINOGRAD_MIN_WIDTH wide) or the direct kernel, ReLUs and residual adds fused.
  At 256x256 in graph mode: encoder 50 -> 34 ms, whole network 99 -> 60-62 ms (bench_midas_small.py).
  Without the kernels (no compiler, ``DEPTH_MS_NATIVE_KERNELS=0`` or ``native=False``) MindSpore's
  Conv2D runs everything in NCHW, same result up to float32 rounding.
"""
from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from depth_ms.models.base import EstimatorError
from depth_ms.models.native_kernels import (native_conv_op, native_depthwise_nhwc_op, native_pointwise_op,
                                           native_stem_op)
from depth_ms.models.native_packing import PACK, pack_conv, pack_depthwise, pack_pointwise, pack_stem, pack_winograd

from .state_keys import check_state_keys

BN_EPS = 1e-3  # tf_ variants of gen-efficientnet
BN_MOMENTUM = 0.1  # training: running = (1 - m) running + m batch statistics (torch's convention)
STRIDE = 32
FEATURES = 64  # decoder width
HEAD_CHANNELS = 32  # channels of the output head's last 3x3 convolution
# 3x3 convolutions on inputs at least this wide run as Winograd F(2x2, 3x3): faster than the direct
# kernel at every decoder size from 8x8 (512 channels) to 256x256 (32); narrower maps waste most lanes
WINOGRAD_MIN_WIDTH = 8

# EfficientNet-Lite3 stages after channel (x1.2) and depth (x1.4) scaling, as gen-efficientnet builds
# them: (block type, repeats, depthwise kernel, first stride, expansion ratio, output channels).
LITE3_STAGES = (
    ("ds", 1, 3, 1, 1, 24),
    ("ir", 3, 3, 2, 6, 32),
    ("ir", 3, 5, 2, 6, 48),
    ("ir", 5, 3, 2, 6, 96),
    ("ir", 5, 5, 1, 6, 136),
    ("ir", 6, 5, 2, 6, 232),
    ("ir", 1, 3, 1, 6, 384),
)
STEM_CHANNELS = 32
# pretrained.layerN = the stages listed (layer1 also starts with stem conv, bn, ReLU6)
LAYER_STAGES = {1: (0, 1), 2: (2,), 3: (3, 4), 4: (5, 6)}
ENCODER_CHANNELS = (32, 48, 136, 384)  # outputs of layer1..layer4 (strides 4, 8, 16, 32)


def _he_normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


class Conv2d(nn.Cell):
    """Convolution with torch's parameter names: ``weight`` (C_out, C_in / groups, k, k), optional ``bias``.

    ``padding`` is (top, bottom, left, right). After :meth:`set_folded` the layer runs on the folded
    weight / bias instead (BatchNorm folded in); the parameters keep their values.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: tuple = (0, 0, 0, 0), groups: int = 1, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng or np.random.default_rng(0)
        shape = (out_channels, in_channels // groups, kernel_size, kernel_size)
        self.weight = ms.Parameter(ms.Tensor(_he_normal(rng, shape)), name="weight")
        self.bias = ms.Parameter(ms.Tensor(np.zeros(out_channels, np.float32)), name="bias") if bias else None
        self.conv = ops.Conv2D(out_channels, kernel_size, pad_mode="pad", pad=tuple(padding), stride=stride,
                               group=groups)
        self.stride = stride
        self.padding = tuple(padding)
        self.groups = groups
        self.depthwise = groups == in_channels == out_channels and groups > 1
        self.folded = False
        self.folded_weight = None
        self.folded_bias = None
        self.kernel_size = kernel_size
        self.native_op = None  # native conv kernel (see native_conv_op), variant self.native_variant
        self.native_variant = ""
        self.packed_weight = None
        self.packed_bias = None
        self.winograd_op = None  # Winograd form of a 3x3 native kernel, for inputs >= WINOGRAD_MIN_WIDTH wide
        self.winograd_weight = None

    def set_native(self, variant: str) -> bool:
        """Run as the native kernel ``Conv{k}x{k}{variant}`` on the current (folded) weights; False if not.

        'Plain' and 'FromNhwc' (input channels last) replace :meth:`construct`; the owner calls the other
        variants (extra input or fused activation) through :meth:`run_native`. "" switches back to
        MindSpore's Conv2D.
        """
        k = self.kernel_size
        op = native_conv_op(f"Conv{k}x{k}{variant}") if variant else None
        usable = (self.stride == 1 and self.padding == (k // 2,) * 4 and self.groups == 1
                  and self.weight.shape[0] % PACK == 0)
        if op is None or not usable:
            self.native_op, self.native_variant, self.packed_weight, self.packed_bias = None, "", None, None
            self.winograd_op, self.winograd_weight = None, None
            return False
        if self.folded:
            weight, bias = self.folded_weight.asnumpy(), self.folded_bias.asnumpy()
        else:
            weight = self.weight.asnumpy()
            bias = self.bias.asnumpy() if self.bias is not None else np.zeros(weight.shape[0], np.float32)
        self.packed_weight = ms.Tensor(pack_conv(weight))  # (Co / 8, Ci, k * k, 8)
        self.packed_bias = ms.Tensor(bias.astype(np.float32))
        self.native_op, self.native_variant = op, variant
        self.winograd_op = native_conv_op(f"Winograd3x3{variant}") if k == 3 else None
        self.winograd_weight = None
        if self.winograd_op is not None:
            self.winograd_weight = ms.Tensor(pack_winograd(weight))  # (16, Ci, Co)
        return True

    def run_native(self, x, *residual):
        """The installed native kernel on ``x`` (and the residual its variant adds); Winograd on wide inputs."""
        if self.winograd_op is not None and x.shape[3] >= WINOGRAD_MIN_WIDTH:
            return self.winograd_op(x, self.winograd_weight, self.packed_bias, *residual)  # (N, C_out, H, W)
        return self.native_op(x, self.packed_weight, self.packed_bias, *residual)  # (N, C_out, H, W)

    def set_folded(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Run on ``weight`` (same shape as the parameter) and ``bias`` (C_out,) from now on."""
        self.folded_weight = ms.Tensor(weight.astype(np.float32))  # plain tensors: not checkpoint entries
        self.folded_bias = ms.Tensor(bias.astype(np.float32))
        self.folded = True

    def channels_last(self, variant: str) -> tuple | None:
        """(op, weight, bias) running this folded 1x1 or depthwise conv on NHWC input, or None if unavailable.

        ``variant``: 'Plain', 'Relu6' or 'Residual' for a 1x1 conv (see native_pointwise_op); a
        depthwise conv always adds bias and applies ReLU6. Channels are padded to a multiple of 16.
        """
        weight, bias = self.folded_weight.asnumpy(), self.folded_bias.asnumpy()
        if self.depthwise:
            op, (packed, padded_bias) = native_depthwise_nhwc_op(self.stride), pack_depthwise(weight, bias)
        elif self.kernel_size == 1 and self.groups == 1:
            op, (packed, padded_bias) = native_pointwise_op(variant), pack_pointwise(weight, bias)
        else:
            return None
        return None if op is None else (op, ms.Tensor(packed), ms.Tensor(padded_bias))

    def construct(self, x):
        if self.native_variant in ("Plain", "FromNhwc"):
            return self.run_native(x)  # (N, C_out, H, W)
        if self.folded:
            return ops.bias_add(self.conv(x, self.folded_weight), self.folded_bias)  # (N, C_out, H', W')
        out = self.conv(x, self.weight)  # (N, C_out, H', W')
        if self.bias is not None:
            out = ops.bias_add(out, self.bias)
        return out


def same_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, depthwise: bool = False,
              rng: np.random.Generator | None = None) -> Conv2d:
    """Bias-free conv with TF "same" padding for even inputs (stride 2) or any input (stride 1)."""
    total = kernel_size - stride  # TF "same" total padding when the input is a multiple of the stride
    before = total // 2
    pads = (before, total - before, before, total - before)
    return Conv2d(in_channels, out_channels, kernel_size, stride, pads, groups=in_channels if depthwise else 1,
                  bias=False, rng=rng)


def torch_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
               rng: np.random.Generator | None = None) -> Conv2d:
    """Stride-1 conv with symmetric padding k // 2 (torch ``padding=k // 2``)."""
    p = kernel_size // 2
    return Conv2d(in_channels, out_channels, kernel_size, 1, (p, p, p, p), bias=bias, rng=rng)


class BatchNorm2d(nn.Cell):
    """BatchNorm with torch's names: ``weight``, ``bias``, ``running_mean``, ``running_var``.

    In training mode (``set_train(True)``) it normalises with batch statistics and updates the running ones.
    """

    def __init__(self, channels: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = ms.Parameter(ms.Tensor(np.ones(channels, np.float32)), name="weight")
        self.bias = ms.Parameter(ms.Tensor(np.zeros(channels, np.float32)), name="bias")
        self.running_mean = ms.Parameter(ms.Tensor(np.zeros(channels, np.float32)), name="running_mean",
                                         requires_grad=False)
        self.running_var = ms.Parameter(ms.Tensor(np.ones(channels, np.float32)), name="running_var",
                                        requires_grad=False)
        self.folded = False

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift), float64 (C,): y = x * scale + shift."""
        var = self.running_var.asnumpy().astype(np.float64)
        scale = self.weight.asnumpy().astype(np.float64) / np.sqrt(var + self.eps)
        shift = self.bias.asnumpy().astype(np.float64) - self.running_mean.asnumpy().astype(np.float64) * scale
        return scale, shift

    def construct(self, x):
        if self.folded:
            return x
        if self.training:  # batch statistics; the running ones are updated in place
            return ops.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=True,
                                  momentum=BN_MOMENTUM, eps=self.eps)  # (N, C, H, W)
        scale = self.weight / ops.sqrt(self.running_var + self.eps)  # (C,)
        shift = self.bias - self.running_mean * scale  # (C,)
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)  # (N, C, H, W)


def fold(conv: Conv2d, bn: BatchNorm2d) -> None:
    """Fold ``bn`` into ``conv`` (which has no bias) and make ``bn`` the identity."""
    scale, shift = bn.scale_shift()
    weight = conv.weight.asnumpy().astype(np.float64) * scale[:, None, None, None]
    conv.set_folded(weight, shift)
    bn.folded = True


def channels_last_ops(*convs_and_variants: tuple) -> list | None:
    """[(op, weight, bias), ...] for (conv, variant) pairs (see Conv2d.channels_last), or None if any is missing."""
    found = [conv.channels_last(variant) for conv, variant in convs_and_variants]
    return None if any(f is None for f in found) else found


class DepthwiseSeparable(nn.Cell):
    """gen-efficientnet DepthwiseSeparableConv: dw conv, BN, ReLU6, pw conv, BN (+ skip when shapes match)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 rng: np.random.Generator) -> None:
        super().__init__()
        self.conv_dw = same_conv(in_channels, in_channels, kernel_size, stride, depthwise=True, rng=rng)
        self.bn1 = BatchNorm2d(in_channels)
        self.conv_pw = same_conv(in_channels, out_channels, 1, rng=rng)
        self.bn2 = BatchNorm2d(out_channels)
        self.act = nn.ReLU6()
        self.has_residual = stride == 1 and in_channels == out_channels
        self.nhwc = None  # after fold_batchnorm(native=True): [(op, weight, bias)] x 2, channels last

    def fold_batchnorm(self, native: bool = True) -> None:
        fold(self.conv_dw, self.bn1)
        fold(self.conv_pw, self.bn2)
        self.nhwc = channels_last_ops((self.conv_dw, ""), (self.conv_pw, "Residual" if self.has_residual
                                                            else "Plain")) if native else None

    def construct(self, x):
        if self.nhwc is not None:  # x (N, H, W, C_in') channels last, padded
            (dw, dw_w, dw_b), (pw, pw_w, pw_b) = self.nhwc
            out = dw(x, dw_w, dw_b)  # (N, H / s, W / s, C_in')
            return pw(out, pw_w, pw_b, x) if self.has_residual else pw(out, pw_w, pw_b)  # (N, H / s, W / s, C_out')
        out = self.act(self.bn1(self.conv_dw(x)))  # (N, C_in, H / s, W / s)
        out = self.bn2(self.conv_pw(out))  # (N, C_out, H / s, W / s)
        return out + x if self.has_residual else out


class InvertedResidual(nn.Cell):
    """gen-efficientnet InvertedResidual without SE: pw expand, BN, ReLU6, dw, BN, ReLU6, pw project, BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expansion: int,
                 rng: np.random.Generator) -> None:
        super().__init__()
        mid = in_channels * expansion  # already a multiple of 8 for every Lite3 block
        self.conv_pw = same_conv(in_channels, mid, 1, rng=rng)
        self.bn1 = BatchNorm2d(mid)
        self.conv_dw = same_conv(mid, mid, kernel_size, stride, depthwise=True, rng=rng)
        self.bn2 = BatchNorm2d(mid)
        self.conv_pwl = same_conv(mid, out_channels, 1, rng=rng)
        self.bn3 = BatchNorm2d(out_channels)
        self.act = nn.ReLU6()
        self.has_residual = stride == 1 and in_channels == out_channels
        self.nhwc = None  # after fold_batchnorm(native=True): [(op, weight, bias)] x 3, channels last

    def fold_batchnorm(self, native: bool = True) -> None:
        fold(self.conv_pw, self.bn1)
        fold(self.conv_dw, self.bn2)
        fold(self.conv_pwl, self.bn3)
        self.nhwc = channels_last_ops((self.conv_pw, "Relu6"), (self.conv_dw, ""), (
            self.conv_pwl, "Residual" if self.has_residual else "Plain")) if native else None

    def construct(self, x):
        if self.nhwc is not None:  # x (N, H, W, C_in') channels last, padded
            (pw, pw_w, pw_b), (dw, dw_w, dw_b), (pwl, pwl_w, pwl_b) = self.nhwc
            out = dw(pw(x, pw_w, pw_b), dw_w, dw_b)  # (N, H / s, W / s, C_mid')
            return pwl(out, pwl_w, pwl_b, x) if self.has_residual else pwl(out, pwl_w, pwl_b)  # (.., C_out')
        out = self.act(self.bn1(self.conv_pw(x)))  # (N, C_mid, H, W)
        out = self.act(self.bn2(self.conv_dw(out)))  # (N, C_mid, H / s, W / s)
        out = self.bn3(self.conv_pwl(out))  # (N, C_out, H / s, W / s)
        return out + x if self.has_residual else out


def _stage(spec: tuple, in_channels: int, rng: np.random.Generator) -> nn.SequentialCell:
    kind, repeats, kernel, stride, expansion, out_channels = spec
    blocks = []
    for i in range(repeats):
        block_in, block_stride = (in_channels, stride) if i == 0 else (out_channels, 1)
        if kind == "ds":
            blocks.append(DepthwiseSeparable(block_in, out_channels, kernel, block_stride, rng))
        else:
            blocks.append(InvertedResidual(block_in, out_channels, kernel, block_stride, expansion, rng))
    return nn.SequentialCell(blocks)


class Encoder(nn.Cell):
    """``pretrained``: EfficientNet-Lite3 cut into layer1..layer4 (strides 4, 8, 16, 32)."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        stages, channels = [], STEM_CHANNELS
        for spec in LITE3_STAGES:
            stages.append(_stage(spec, channels, rng))
            channels = spec[-1]
        stem = [same_conv(3, STEM_CHANNELS, 3, 2, rng=rng), BatchNorm2d(STEM_CHANNELS), nn.ReLU6()]
        self.layer1 = nn.SequentialCell(stem + [stages[i] for i in LAYER_STAGES[1]])
        self.layer2 = nn.SequentialCell([stages[i] for i in LAYER_STAGES[2]])
        self.layer3 = nn.SequentialCell([stages[i] for i in LAYER_STAGES[3]])
        self.layer4 = nn.SequentialCell([stages[i] for i in LAYER_STAGES[4]])
        self.channels_last = False  # stem and blocks on the native NHWC kernels (set by fold_batchnorm)
        self.stem_nhwc = None  # (op, weight, bias) of the stem when channels_last

    def blocks(self) -> list:
        """Every depthwise-separable / inverted-residual block, in order."""
        return [block for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for cell in layer.cells()
                if isinstance(cell, nn.SequentialCell) for block in cell.cells()]

    def fold_batchnorm(self, native: bool = True) -> None:
        fold(self.layer1[0], self.layer1[1])
        for block in self.blocks():
            block.fold_batchnorm(native)
        stem = self.layer1[0]
        op = native_stem_op() if native else None
        self.stem_nhwc = (op, *map(ms.Tensor, pack_stem(stem.folded_weight.asnumpy(), stem.folded_bias.asnumpy()))
                          ) if op is not None else None
        self.channels_last = self.stem_nhwc is not None and all(block.nhwc is not None for block in self.blocks())
        if not self.channels_last:
            self.stem_nhwc = None
            for block in self.blocks():
                block.nhwc = None

    def construct(self, x):
        if self.channels_last:
            return self.construct_channels_last(x)
        layer_1 = self.layer1(x)  # (N, 32, H / 4, W / 4)
        layer_2 = self.layer2(layer_1)  # (N, 48, H / 8, W / 8)
        layer_3 = self.layer3(layer_2)  # (N, 136, H / 16, W / 16)
        layer_4 = self.layer4(layer_3)  # (N, 384, H / 32, W / 32)
        return layer_1, layer_2, layer_3, layer_4

    def construct_channels_last(self, x):
        """Stem and blocks on the NHWC kernels; the four outputs stay channels last (N, h, w, C' >= C),
        with channels zero-padded to a multiple of 16 (MindSpore's transpose to NCHW took ~2 ms each)."""
        op, weight, bias = self.stem_nhwc
        out = self.layer1[4](self.layer1[3](op(x, weight, bias)))  # (N, H / 4, W / 4, 32)
        features = [out]
        for layer in (self.layer2, self.layer3, self.layer4):
            out = layer(out)  # (N, H / s, W / s, C')
            features.append(out)
        return tuple(features)


class ResidualConvUnit(nn.Cell):
    """x + conv2(relu(conv1(relu(x)))), 3x3 convolutions with bias (no BatchNorm in the small model)."""

    def __init__(self, features: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.conv1 = torch_conv(features, features, 3, rng=rng)
        self.conv2 = torch_conv(features, features, 3, rng=rng)
        self.relu = nn.ReLU()
        self.native = False

    def use_native(self, enabled: bool = True) -> None:
        """Both convolutions as native kernels, ReLUs and the residual add fused in (if available)."""
        self.native = (self.conv1.set_native("PreRelu" if enabled else "")
                       and self.conv2.set_native("PreReluResidual" if enabled else ""))
        if not self.native:
            self.conv1.set_native("")
            self.conv2.set_native("")

    def construct(self, x):
        if self.native:
            return self.conv2.run_native(self.conv1.run_native(x), x)  # (N, C, H, W)
        out = self.conv1(self.relu(x))  # (N, C, H, W)
        return self.conv2(self.relu(out)) + x


class Upsample2x(nn.Cell):
    """x2 bilinear resize, torch ``F.interpolate(scale_factor=2, mode='bilinear', align_corners=...)``."""

    def __init__(self, align_corners: bool) -> None:
        super().__init__()
        self.resize = ops.ResizeBilinearV2(align_corners=align_corners, half_pixel_centers=not align_corners)

    def construct(self, x):
        return self.resize(x, (x.shape[2] * 2, x.shape[3] * 2))  # (N, C, 2H, 2W)


class FeatureFusionBlock(nn.Cell):
    """out_conv(up2(resConfUnit2(x + resConfUnit1(skip)))), out_conv run before the upsampling (equal)."""

    def __init__(self, features: int, expand: bool, rng: np.random.Generator) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features, rng)  # unused in refinenet4 (kept: it is in the checkpoint)
        self.resConfUnit2 = ResidualConvUnit(features, rng)
        self.out_conv = torch_conv(features, features // 2 if expand else features, 1, rng=rng)
        self.upsample = Upsample2x(align_corners=True)

    def construct(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)  # (N, C, H, W)
        out = self.out_conv(self.resConfUnit2(x))  # (N, C_out, H, W)
        return self.upsample(out)  # (N, C_out, 2H, 2W)


class Decoder(nn.Cell):
    """``scratch``: 3x3 projections of the encoder outputs, four fusion blocks and the output head."""

    def __init__(self, rng: np.random.Generator, encoder_channels: tuple = ENCODER_CHANNELS,
                 features: int = FEATURES, head: int = HEAD_CHANNELS) -> None:
        super().__init__()
        widths = (features, features * 2, features * 4, features * 8)  # blocks={'expand': True}
        self.layer1_rn = torch_conv(encoder_channels[0], widths[0], 3, bias=False, rng=rng)
        self.layer2_rn = torch_conv(encoder_channels[1], widths[1], 3, bias=False, rng=rng)
        self.layer3_rn = torch_conv(encoder_channels[2], widths[2], 3, bias=False, rng=rng)
        self.layer4_rn = torch_conv(encoder_channels[3], widths[3], 3, bias=False, rng=rng)
        self.refinenet4 = FeatureFusionBlock(widths[3], True, rng)
        self.refinenet3 = FeatureFusionBlock(widths[2], True, rng)
        self.refinenet2 = FeatureFusionBlock(widths[1], True, rng)
        self.refinenet1 = FeatureFusionBlock(widths[0], False, rng)
        self.output_conv = nn.SequentialCell([
            torch_conv(features, features // 2, 3, rng=rng),
            Upsample2x(align_corners=False),  # the head's Interpolate keeps align_corners=False
            torch_conv(features // 2, head, 3, rng=rng),
            nn.ReLU(),
            torch_conv(head, 1, 1, rng=rng),
            nn.ReLU(),  # non_negative=True
        ])

    def use_native(self, enabled: bool = True, channels_last_inputs: bool = False) -> None:
        """Every 3x3 and 1x1 convolution as a native kernel (where available), or none if not ``enabled``.

        ``channels_last_inputs``: the encoder features come channels last (see Encoder.construct_channels_last).
        """
        for conv in (self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn):
            if not conv.set_native(("FromNhwc" if channels_last_inputs else "Plain") if enabled else "") \
                    and channels_last_inputs:
                raise RuntimeError("channels-last encoder features need the native decoder kernels")
        self.output_conv[0].set_native("Plain" if enabled else "")
        self.output_conv[2].set_native("PostRelu" if enabled else "")  # with the ReLU after it
        for block in (self.refinenet1, self.refinenet2, self.refinenet3, self.refinenet4):
            block.resConfUnit1.use_native(enabled)
            block.resConfUnit2.use_native(enabled)
            block.out_conv.set_native("Plain" if enabled else "")

    def construct(self, layer_1, layer_2, layer_3, layer_4):
        path_4 = self.refinenet4(self.layer4_rn(layer_4))  # (N, 256, H / 16, W / 16)
        path_3 = self.refinenet3(path_4, self.layer3_rn(layer_3))  # (N, 128, H / 8, W / 8)
        path_2 = self.refinenet2(path_3, self.layer2_rn(layer_2))  # (N, 64, H / 4, W / 4)
        path_1 = self.refinenet1(path_2, self.layer1_rn(layer_1))  # (N, 64, H / 2, W / 2)
        head = self.output_conv
        out = head[1](head[0](path_1))  # (N, 32, H, W)
        if head[2].native_variant == "PostRelu":
            out = head[2].run_native(out)  # (N, 32, H, W)
        else:
            out = head[3](head[2](out))
        return head[5](head[4](out))  # (N, 1, H, W)


class MidasSmall(nn.Cell):
    """MiDaS v2.1 small: normalised (N, 3, H, W) float32 -> relative inverse depth (N, H, W).

    H and W must be multiples of 32 (at least 32); the official transform resizes to such sizes.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.pretrained = Encoder(rng)
        self.scratch = Decoder(rng)

    def prepare_inference(self, native: bool = True) -> None:
        """Fold every BatchNorm into its convolution and, with ``native``, install the native kernels.

        Call again after changing parameters (the folded / packed weights are copies), before compiling.
        """
        self.set_train(False)
        self.pretrained.fold_batchnorm(native)
        self.scratch.use_native(native, self.pretrained.channels_last)

    def construct(self, x):
        height, width = x.shape[2], x.shape[3]
        if height < STRIDE or width < STRIDE or height % STRIDE != 0 or width % STRIDE != 0:
            raise ValueError(f"MiDaS small needs input sides that are multiples of {STRIDE} (>= {STRIDE}), "
                             f"got {height}x{width} (HxW)")
        depth = self.scratch(*self.pretrained(x))  # (N, 1, H, W)
        return depth.squeeze(1)  # (N, H, W)


def build_midas_small(seed: int = 0, native: bool = True) -> MidasSmall:
    """MiDaS small with deterministic random weights (He-normal convs, identity BatchNorm), BN folded."""
    net = MidasSmall(seed)
    net.prepare_inference(native)
    return net


def state_names(net: nn.Cell) -> dict[str, ms.Parameter]:
    """Checkpoint key -> parameter."""
    return dict(net.parameters_and_names())


def load_state(net: MidasSmall, tensors: dict[str, np.ndarray], source: str, native: bool = True) -> MidasSmall:
    """Copy ``tensors`` (official key -> array) into ``net``; EstimatorError on any key or shape mismatch."""

    params = state_names(net)
    check_state_keys({k: tuple(v.shape) for k, v in tensors.items()},
                     {k: tuple(p.shape) for k, p in params.items()}, source)
    for name, param in params.items():
        param.set_data(ms.Tensor(np.ascontiguousarray(tensors[name], np.float32)))
    net.prepare_inference(native)
    return net


def load_midas_small(path: str, native: bool = True) -> MidasSmall:
    """MiDaS small from a ``.safetensors`` file holding the official state-dict keys (see convert.py)."""
    from depth_ms.models import weights

    weights.require(path, "MiDaS v2.1 small weights")
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception as e:  # noqa: BLE001 (any parse failure is a bad file)
        raise EstimatorError(f"cannot read MiDaS small weights {path}: {e}") from e
    return load_state(MidasSmall(), tensors, path, native)


__all__ = ["MidasSmall", "build_midas_small", "load_midas_small", "load_state", "state_names",
           "BN_EPS", "STRIDE"]
