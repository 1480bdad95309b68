"""Cells that run layers of loaded mindone models on the native CPU kernels (instance-level swaps).

The ``mint`` fallbacks of :mod:`depth_ms.models.mindspore_device` cover layers built from ``mint``;
mindone's DPT builds its ViT from ``mindspore.nn.LayerNorm`` (the classic kernel: 3 ms per 577 x 768
tokens on 2 cores) and its BiT backbone from ``nn.GroupNorm`` (``ops.group_norm``: 17 ms on
256 x 96 x 96 values, PyTorch 0.4 ms), and calls GELU through ``GELUActivation.act``, where a native op
landed in a runtime-typed subgraph when the whole mindone class was compiled. So after loading, :func:`swap_in`
replaces those child cells of one model with the cells below, which hold the same parameters. The
model's forward must then be one of ours (hf_models' compositions compile with them).
Import after :func:`depth_ms.models.mindspore_device.configure`.
"""
from __future__ import annotations

from mindspore import nn

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


def swap_in(model: nn.Cell) -> int:
    """Replace ``model``'s last-axis ``nn.LayerNorm``, exact ``GELUActivation`` and BiT GroupNorm (+ ReLU)
    children; how many.

    Does nothing (0) when the native kernels are unavailable (not CPU, no compiler, disabled).
    """
    if not mindspore_device.native_kernels_bound():
        return 0
    from mindone.transformers.activations import GELUActivation
    from mindone.transformers.models.bit.modeling_bit import BitGroupNormActivation

    swaps = []
    for _, parent in model.cells_and_names():
        for name, child in parent.name_cells().items():
            if isinstance(child, nn.LayerNorm) and child.begin_norm_axis in (-1, len(child.normalized_shape)) \
                    and len(child.normalized_shape) == 1:
                swaps.append((parent, name, LastAxisLayerNorm(child)))
            elif type(child) is GELUActivation and child.act is not child._gelu_python:
                swaps.append((parent, name, ExactGelu()))
            elif type(child) is BitGroupNormActivation and type(child.activation).__name__ in ("ReLU", "Identity") \
                    and child.affine:
                swaps.append((parent, name, GroupNormActivation(child, type(child.activation).__name__ == "ReLU")))
    for parent, name, cell in swaps:
        setattr(parent, name, cell)
    if swaps:  # re-attached parameters got names relative to their new parent; graph mode needs them unique
        for full_name, param in model.parameters_and_names():
            param.name = full_name
    return len(swaps)
