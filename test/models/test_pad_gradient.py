"""The device layer's constant pad: PadV3's output, and a gradient that a compiled graph keeps right after its
first run (MindSpore 2.7.1's PadV3 gradient does not, which made the VAE encoder train on wrong gradients)."""
import numpy as np
import pytest

pytest.importorskip("mindspore")

from depth_ms.models import mindspore_device  # noqa: E402

mindspore_device.configure("cpu")

import mindspore as ms  # noqa: E402
from mindone.diffusers.models.downsampling import Downsample2D  # noqa: E402
from mindspore import mint, ops  # noqa: E402


def _inputs(count, shape):
    rng = np.random.default_rng(0)
    return [ms.Tensor(rng.standard_normal(shape).astype(np.float32)) for _ in range(count)]


@pytest.mark.parametrize("pad, value", [((0, 1, 0, 1), None), ((2, 0, 1, 3), 0.5), ((1, 1), -1.0),
                                        ((0, 2, 0, 0, 1, 0), 0)])
def test_constant_pad_matches_padv3(pad, value):
    (x,) = _inputs(1, (2, 3, 5, 7))
    expected = ops.pad(x, pad, "constant", value).asnumpy()
    np.testing.assert_array_equal(mint.nn.functional.pad(x, pad, mode="constant", value=value).asnumpy(), expected)


def test_reflect_pad_stays_on_padv3():
    (x,) = _inputs(1, (1, 2, 6, 6))
    np.testing.assert_array_equal(mint.nn.functional.pad(x, (1, 1, 2, 2), mode="reflect").asnumpy(),
                                  ops.pad(x, (1, 1, 2, 2), "reflect").asnumpy())


def _gradient_after_another_run(fn, first, second):
    """(gradient at ``second`` on a compiled graph's first run, the same after a run at ``first``)."""
    grad = ms.jit(ms.grad(fn))
    fresh = grad(second).asnumpy().copy()
    grad(first)
    return fresh, grad(second).asnumpy()


def test_padv3_gradient_of_a_compiled_graph_changes_after_its_first_run():
    """Why the device layer zero-pads on the classic Pad kernel; when MindSpore fixes PadV3, this test says so."""
    weights = ms.Tensor(np.linspace(0.0, 1.0, 17 * 17, dtype=np.float32).reshape(17, 17))

    def by_padv3(x):  # x (2, 4, 16, 16)
        return (ops.pad(x, (0, 1, 0, 1)) ** 2 * weights).sum()

    def by_device_layer(x):
        return (mint.nn.functional.pad(x, (0, 1, 0, 1), mode="constant", value=0) ** 2 * weights).sum()

    first, second = _inputs(2, (2, 4, 16, 16))
    truth = 2 * second.asnumpy() * weights.asnumpy()[:16, :16]  # d/dx of sum(pad(x)^2 w)
    for fn, holds in ((by_padv3, False), (by_device_layer, True)):
        fresh, later = _gradient_after_another_run(fn, first, second)
        np.testing.assert_allclose(fresh, truth, rtol=1e-6)
        assert np.allclose(later, truth, rtol=1e-6) == holds, fn.__name__


def test_vae_downsampler_gradient_holds_in_a_compiled_graph():
    """diffusers' VAE encoder downsampler (pad right and bottom, stride-2 convolution): every run of the compiled
    gradient gives what its first run gives."""
    down = Downsample2D(8, use_conv=True, out_channels=8, padding=0)
    down.set_train(True)

    def loss(x):  # x (2, 8, 16, 16) -> (2, 8, 8, 8)
        return (down(x) ** 2).mean()

    first, second = _inputs(2, (2, 8, 16, 16))
    fresh, later = _gradient_after_another_run(loss, first, second)
    np.testing.assert_allclose(later, fresh, rtol=1e-5, atol=1e-8)
