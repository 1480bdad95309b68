import numpy as np
import pytest

from depth_ms.core.node_config import DepthNodeConfig
from depth_ms.core.products import make_products, relative_to_display_metres
from depth_ms.core.types import DepthKind, DepthPrediction, Intrinsics


def _inputs(width=8, height=6):
    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    intr = Intrinsics(10.0, 10.0, (width - 1) / 2, (height - 1) / 2, width, height)
    return rgb, intr


def test_metric_products_clip_range_and_rescale_intrinsics():
    rgb, intr = _inputs()
    depth = np.full((6, 8), 5.0, np.float32)
    depth[0, 0], depth[0, 1] = 0.1, 100.0  # outside [0.2, 65.535] -> NaN
    config = DepthNodeConfig(output_scale=0.5)
    out = make_products(rgb, DepthPrediction(depth, DepthKind.METRIC), intr, config)
    assert out.depth.shape == (3, 4) and out.depth.dtype == np.float32
    assert np.isnan(out.depth[0, 0]) and np.nanmax(out.depth) == pytest.approx(5.0)
    assert out.intrinsics.size == (4, 3) and out.intrinsics.fx == pytest.approx(5.0)
    assert out.colored.shape == (3, 4, 3) and out.cloud.shape == (3, 4)
    np.testing.assert_allclose(out.cloud["z"][1:, 1:], 5.0)


def test_no_intrinsics_means_no_cloud_and_size_mismatch_is_an_error():
    rgb, _ = _inputs()
    pred = DepthPrediction(np.ones((6, 8), np.float32), DepthKind.METRIC)
    out = make_products(rgb, pred, None, DepthNodeConfig())
    assert out.cloud is None and out.intrinsics is None and out.depth.shape == (6, 8)
    with pytest.raises(ValueError, match="returned 4x3 for a 8x6"):
        make_products(rgb, DepthPrediction(np.ones((3, 4), np.float32), DepthKind.METRIC), None,
                      DepthNodeConfig())


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
    out = make_products(rgb, pred, None, DepthNodeConfig(output_scale=0.5))
    assert out.uncertainty.shape == (2, 3) and np.allclose(out.uncertainty, 0.1)
    assert make_products(rgb, DepthPrediction(depth=pred.depth, kind=pred.kind), None,
                         DepthNodeConfig()).uncertainty is None
