"""The native kernels as MindSpore ops (depth_ms.models.native_kernels): ops.Custom infers their output
shapes and gives what MindSpore's own ops give; native_cells swaps them into mindone's layers.

Each kernel against a float64 reference, without MindSpore: test/native/test_kernels.py.
"""
import importlib.util
import os

import numpy as np
import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mindspore") is None, reason="mindspore not importable"),
    pytest.mark.skipif(os.environ.get("DEPTH_MS_NATIVE_KERNELS") == "0", reason="native kernels disabled"),
]


@pytest.fixture(scope="module")
def nk():
    from depth_ms.models import mindspore_device

    mindspore_device.configure("cpu")
    from depth_ms.models import native_kernels, native_library

    assert native_library.native_library() is not None
    return native_kernels


def test_custom_ops_match_mindspore_conv_and_attention(nk):
    import mindspore as ms
    from mindspore import ops

    rng = np.random.default_rng(5)
    x = ms.Tensor(rng.standard_normal((2, 16, 21, 19)).astype(np.float32))
    weight = ms.Tensor((rng.standard_normal((24, 16, 3, 3)) / 12).astype(np.float32))
    bias = ms.Tensor(rng.standard_normal(24).astype(np.float32))
    ref = ops.conv2d(x, weight, pad_mode="pad", padding=1) + bias.reshape(1, 24, 1, 1)
    np.testing.assert_allclose(nk.native_conv_op("Winograd3x3Raw")(x, weight, bias).asnumpy(), ref.asnumpy(),
                               atol=2e-5)
    q, k, v = (ms.Tensor(rng.standard_normal(shape).astype(np.float32)) for shape in
               [(2, 33, 32), (2, 17, 32), (2, 17, 16)])
    ref = ops.softmax(ops.matmul(q, k.transpose(0, 2, 1)) * 0.2, axis=-1) @ v
    got = nk.native_attention_op()(q, k, v, ms.Tensor(np.float32([0.2])))
    assert got.shape == (2, 33, 16)
    np.testing.assert_allclose(got.asnumpy(), ref.asnumpy(), atol=2e-5)


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
