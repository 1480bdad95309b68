import math

import numpy as np
import pytest

from depth_ms.core.node_config import DepthNodeConfig
from depth_ms.core.products import make_products, output_frame, relative_to_display_metres
from depth_ms.core.types import DepthKind, DepthPrediction, Intrinsics


def _inputs(width=8, height=6):
    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    intr = Intrinsics(10.0, 10.0, (width - 1) / 2, (height - 1) / 2, width, height)
    return rgb, intr


def _products(rgb, prediction, intrinsics, config, metric_scale=None, display_stretch=False):
    return make_products(output_frame(rgb, prediction, intrinsics, config), config, metric_scale, display_stretch)


def test_metric_products_clip_range_and_rescale_intrinsics():
    rgb, intr = _inputs()
    depth = np.full((6, 8), 5.0, np.float32)
    depth[0, 0], depth[0, 1] = 0.1, 100.0  # outside [0.2, 65.535] -> NaN
    config = DepthNodeConfig(output_scale=0.5)
    out = _products(rgb, DepthPrediction(depth, DepthKind.METRIC), intr, config)
    assert out.depth.shape == (3, 4) and out.depth.dtype == np.float32 and out.relative is None
    assert np.isnan(out.depth[0, 0]) and np.nanmax(out.depth) == pytest.approx(5.0)
    assert out.intrinsics.size == (4, 3) and out.intrinsics.fx == pytest.approx(5.0)
    assert out.colored.shape == (3, 4, 3) and out.cloud.shape == (3, 4) and not out.cloud_is_display_stretch
    np.testing.assert_allclose(out.cloud["z"][1:, 1:], 5.0)


def test_no_intrinsics_means_no_cloud_and_size_mismatch_is_an_error():
    rgb, _ = _inputs()
    pred = DepthPrediction(np.ones((6, 8), np.float32), DepthKind.METRIC)
    out = _products(rgb, pred, None, DepthNodeConfig())
    assert out.cloud is None and out.intrinsics is None and out.depth.shape == (6, 8)
    with pytest.raises(ValueError, match="returned 4x3 for a 8x6"):
        output_frame(rgb, DepthPrediction(np.ones((3, 4), np.float32), DepthKind.METRIC), None, DepthNodeConfig())


@pytest.mark.parametrize("kind", [DepthKind.AFFINE_DEPTH, DepthKind.AFFINE_DISPARITY])
def test_relative_maps_have_no_metric_depth_or_cloud_without_a_scale(kind):
    rgb, intr = _inputs()
    values = np.linspace(0.1, 1.0, 48, dtype=np.float32).reshape(6, 8)
    out = _products(rgb, DepthPrediction(values, kind), intr, DepthNodeConfig())
    assert out.depth is None and out.cloud is None and math.isnan(out.scale)
    np.testing.assert_array_equal(out.relative, values)
    assert out.colored.shape == (6, 8, 3)
    stretched = _products(rgb, DepthPrediction(values, kind), intr, DepthNodeConfig(), display_stretch=True)
    assert stretched.depth is None and stretched.cloud is not None and stretched.cloud_is_display_stretch


@pytest.mark.parametrize("kind", [DepthKind.AFFINE_DEPTH, DepthKind.AFFINE_DISPARITY])
def test_a_metric_scale_makes_relative_maps_metres_and_nan_outside_the_range(kind):
    rgb, intr = _inputs()
    gt = np.linspace(0.1, 80.0, 48, dtype=np.float32).reshape(6, 8)
    values = 2.0 * gt + 1.0 if kind == DepthKind.AFFINE_DEPTH else 4.0 / gt + 0.5
    scale, shift = (0.5, -0.5) if kind == DepthKind.AFFINE_DEPTH else (0.25, -0.125)
    out = _products(rgb, DepthPrediction(values, kind), intr, DepthNodeConfig(), (scale, shift))
    inside = (gt >= 0.2) & (gt <= 65.535)
    np.testing.assert_allclose(out.depth[inside], gt[inside], rtol=1e-4)
    assert np.isnan(out.depth[~inside]).all() and (out.scale, out.shift) == (scale, shift)
    np.testing.assert_allclose(out.cloud["z"][inside], gt[inside], rtol=1e-4)


@pytest.mark.parametrize("kind", [DepthKind.AFFINE_DEPTH, DepthKind.AFFINE_DISPARITY])
def test_relative_maps_are_stretched_monotonically_onto_display_range(kind):
    values = np.linspace(0.0, 1.0, 101, dtype=np.float32).reshape(1, -1)
    metres, scale, shift = relative_to_display_metres(values, kind, 1.0, 40.0)
    assert np.nanmin(metres) >= 1.0 - 1e-5 and np.nanmax(metres) <= 40.0 + 1e-3
    order = np.diff(metres[0])
    assert (order >= 0).all() if kind == DepthKind.AFFINE_DEPTH else (order <= 0).all()
    # the reported affine map reproduces the cloud's metres
    mapped = values * scale + shift
    expect = mapped if kind == DepthKind.AFFINE_DEPTH else 1.0 / mapped
    np.testing.assert_allclose(metres[0, 5:95], expect[0, 5:95], rtol=1e-4)


def test_uncertainty_is_resized_with_the_depth():
    rgb = np.zeros((4, 6, 3), np.uint8)
    pred = DepthPrediction(depth=np.full((4, 6), 0.5, np.float32), kind=DepthKind.AFFINE_DEPTH,
                           uncertainty=np.full((4, 6), 0.1, np.float32))
    out = _products(rgb, pred, None, DepthNodeConfig(output_scale=0.5))
    assert out.uncertainty.shape == (2, 3) and np.allclose(out.uncertainty, 0.1)
    assert _products(rgb, DepthPrediction(depth=pred.depth, kind=pred.kind), None,
                     DepthNodeConfig()).uncertainty is None
