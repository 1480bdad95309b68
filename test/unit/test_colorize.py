import numpy as np

from depth_ms.core.colorize import colorize_depth, robust_range
from depth_ms.core.types import DepthKind


def test_near_is_red_far_is_blue_invalid_is_black():
    depth = np.array([[1.0, 10.0, np.nan, np.inf]], np.float32)
    bgr = colorize_depth(depth, DepthKind.METRIC, (1.0, 10.0))
    assert bgr.shape == (1, 4, 3) and bgr.dtype == np.uint8
    near, far = bgr[0, 0].astype(int), bgr[0, 1].astype(int)
    assert near[2] > near[0]  # red dominates near
    assert far[0] > far[2]  # blue dominates far
    assert (bgr[0, 2] == 0).all() and (bgr[0, 3] == 0).all()


def test_disparity_is_coloured_the_other_way_round():
    values = np.array([[0.1, 1.0]], np.float32)
    as_depth = colorize_depth(values, DepthKind.AFFINE_DEPTH, (0.1, 1.0))
    as_disparity = colorize_depth(values, DepthKind.AFFINE_DISPARITY, (0.1, 1.0))
    np.testing.assert_array_equal(as_depth[0, 0], as_disparity[0, 1])


def test_robust_range_ignores_outliers_and_handles_empty():
    values = np.concatenate([np.linspace(1, 2, 1000), [1e6]]).astype(np.float32)
    low, high = robust_range(values)
    assert 1.0 <= low < high <= 2.0
    assert robust_range(np.full(4, np.nan)) == (0.0, 1.0)
