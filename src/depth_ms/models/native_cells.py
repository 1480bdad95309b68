"""Cells that run layers of loaded mindone models on the native CPU kernels (instance-level swaps).

The ``mint`` fallbacks of :mod:`depth_ms.models.mindspore_device` cover layers built from ``mint``;
mindone's DPT builds its ViT from ``mindspore.nn.LayerNorm`` (the classic kernel: 3 ms per 577 x 768
tokens on 2 cores) and its BiT backbone from ``nn.GroupNorm`` (``ops.group_norm``: 17 ms on
256 x 96 x 96 values, PyTorch 0.4 ms), and calls GELU through ``GELUActivation.act``, where a native op
landed in a runtime-typed subgraph when the whole mindone class was compiled; its 3x3 convolutions and
transposed convolutions are classic ``nn`` cells too. So after loading, :func:`swap_in` replaces those
child cells of one model with the cells below, which hold the same parameters (hf_models' forwards
compile with them).
Import after :func:`depth_ms.models.mindspore_device.configure`.
"""
from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from depth_ms.models import mindspore_device


class ExactGelu(nn.Cell):
    """x Phi(x) through :func:`mindspore_device.gelu_exact`."""

    def construct(self, x):
        return mindspore_device.gelu_exact(x)


class LastAxisLayerNorm(nn.Cell):
    """A ``mindspore.nn.LayerNorm`` over the last axis, same ``gamma`` / ``beta`` parameters, native kernel."""

    def __init__(self, layer: nn.LayerNorm) -> None:
        super().__init__()
        self.gamma = layer.gamma
        self.beta = layer.beta
        self.epsilon = float(layer.epsilon)

    def construct(self, x):
        return mindspore_device.layer_norm_last_axis(x, self.gamma, self.beta, self.epsilon)


class GroupNormActivation(nn.Cell):
    """mindone BiT's ``BitGroupNormActivation`` (an ``nn.GroupNorm``, then ReLU or nothing) on the native kernel."""

    def __init__(self, layer: nn.GroupNorm, relu: bool) -> None:
        super().__init__()
        self.gamma = layer.gamma
        self.beta = layer.beta
        self.num_groups = int(layer.num_groups)
        self.eps = float(layer.eps)
        self.relu = relu

    def construct(self, x):
        return mindspore_device.group_norm(x, self.num_groups, self.gamma, self.beta, self.eps, self.relu)


class StandardizedConv2d(nn.Cell):
    """mindone BiT's ``WeightStandardizedConv2d`` with its weight standardised once, at swap time.

    mindone re-standardises the (fixed, inference) weight on every call with five small ops; here the
    same ops run once. 3x3 stride-1 convolutions padded by 1 go through :func:`mindspore_device.conv3x3`
    (Winograd on larger maps; MindSpore's classic Conv2D took 8 ms at 64 x 96 x 96, PyTorch 3.7 ms).
    """

    def __init__(self, conv: nn.Cell) -> None:
        super().__init__()
        weight = conv.weight
        mean = conv.mean_op(weight, [1, 2, 3])
        var = weight.var((1, 2, 3), keepdims=True)
        self.weight = ms.Tensor(((weight - mean) / ops.sqrt(var + conv.eps)).asnumpy())  # constant, not a Parameter
        self.bias = _zeros_bias(conv, weight.shape[0])
        self.pad = conv.pad  # DynamicPad2d for TF "same" with stride > 1, else None
        self.conv2d = conv.conv2d
        self.winograd = _is_winograd_conv(conv) and conv.pad is None

    def construct(self, x):
        if self.winograd:
            return mindspore_device.conv3x3(x, self.weight, self.bias)  # (N, C_out, H, W)
        if self.pad is not None:
            x = self.pad(x)
        return ops.bias_add(self.conv2d(x, self.weight), self.bias)  # (N, C_out, H', W')


def _zeros_bias(layer: nn.Cell, channels: int):
    return layer.bias if layer.has_bias else ms.Tensor(np.zeros(channels, np.float32))


def _is_winograd_conv(conv: nn.Conv2d) -> bool:
    """A classic 3x3 convolution, stride 1, padding 1, groups 1 (what conv3x3 computes)."""
    return (tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1) and conv.pad_mode == "pad"
            and conv.padding in (1, (1, 1, 1, 1)) and tuple(conv.dilation) in ((1, 1), (1, 1, 1, 1))
            and conv.group == 1)


class Conv3x3(nn.Cell):
    """A classic ``nn.Conv2d`` (3x3, stride 1, padding 1) through :func:`mindspore_device.conv3x3` (DPT's
    neck and head: 3x3 convolutions with 256 channels on maps up to 192 x 192)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = _zeros_bias(conv, conv.weight.shape[0])

    def construct(self, x):
        return mindspore_device.conv3x3(x, self.weight, self.bias)  # (N, C_out, H, W)


class BlockTransposedConv(nn.Cell):
    """A classic ``nn.Conv2dTranspose`` whose kernel equals its stride, through the matmul path of
    the device layer's ``conv_transpose2d`` (2.1 vs 2.9 ms for a 48-channel 4x4 / stride 4 at 37x37)."""

    def __init__(self, conv: nn.Conv2dTranspose) -> None:
        super().__init__()
        self.weight = conv.weight  # (C_in, C_out, k, k)
        self.bias = _zeros_bias(conv, conv.weight.shape[1])
        self.stride = tuple(conv.stride)

    def construct(self, x):
        return mindspore_device.conv_transpose2d(x, self.weight, self.bias, self.stride)  # (N, C_out, kH, kW)


def swap_in(model: nn.Cell) -> int:
    """Replace ``model``'s last-axis ``nn.LayerNorm``, exact ``GELUActivation``, BiT GroupNorm (+ ReLU), BiT
    weight-standardised convolution, classic 3x3 convolution and block transposed convolution children
    (call after loading the weights); how many.

    Does nothing (0) when the native kernels are unavailable (not CPU, no compiler, disabled).
    """
    if not mindspore_device.native_kernels_bound():
        return 0
    from mindone.transformers.activations import GELUActivation
    from mindone.transformers.models.bit.modeling_bit import BitGroupNormActivation, WeightStandardizedConv2d

    swaps = []
    for _, parent in model.cells_and_names():
        for name, child in parent.name_cells().items():
            if isinstance(child, nn.LayerNorm) and child.begin_norm_axis == -1 and child.begin_params_axis == -1 \
                    and len(child.normalized_shape) == 1:
                swaps.append((parent, name, LastAxisLayerNorm(child)))
            elif type(child) is GELUActivation and getattr(child.act, "__func__", None) is not \
                    GELUActivation._gelu_python:  # the exact form, not the python erf one
                swaps.append((parent, name, ExactGelu()))
            elif type(child) is BitGroupNormActivation and type(child.activation).__name__ in ("ReLU", "Identity") \
                    and child.affine:
                swaps.append((parent, name, GroupNormActivation(child, type(child.activation).__name__ == "ReLU")))
            elif type(child) is WeightStandardizedConv2d:
                swaps.append((parent, name, StandardizedConv2d(child)))
            elif type(child) is nn.Conv2d and _is_winograd_conv(child):
                swaps.append((parent, name, Conv3x3(child)))
            elif type(child) is nn.Conv2dTranspose and tuple(child.kernel_size) == tuple(child.stride) \
                    and child.padding in (0, (0, 0, 0, 0)) and child.pad_mode in ("pad", "valid", "same") \
                    and tuple(child.dilation) in ((1, 1), (1, 1, 1, 1)) and child.group == 1:
                swaps.append((parent, name, BlockTransposedConv(child)))
    for parent, name, cell in swaps:
        setattr(parent, name, cell)
    if swaps:  # re-attached parameters got names relative to their new parent; graph mode needs them unique
        for full_name, param in model.parameters_and_names():
            param.name = full_name
    return len(swaps)
