"""Depth metrics against values computed by hand."""
import math

import numpy as np
import pytest

from depth_ms.evaluation.metrics import (METRIC_NAMES, binned_term_sums, compute_metrics, metrics_from_sums,
                                         term_sums, valid_mask)


def test_metrics_match_hand_computed_values():
    gt = np.array([1.0, 1.0, 5.0, 2.0])
    pred = np.array([1.0, 2.0, 3.5, 2.0])
    m = compute_metrics(pred, gt)
    # errors p - g: 0, 1, -1.5, 0; relative: 0, 1, -0.3, 0
    assert m["abs_rel"] == pytest.approx((0 + 1 + 0.3 + 0) / 4)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 1 + 2.25 / 5 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 2.25 + 0) / 4))
    logs = [0.0, math.log(2), math.log(0.7), 0.0]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(d * d for d in logs) / 4))
    assert m["log10"] == pytest.approx(sum(abs(d) for d in logs) / math.log(10) / 4)
    # max(p/g, g/p) = 1, 2, 1.4286, 1  -> < 1.25: 2 of 4; < 1.5625: 3 of 4; < 1.953: 3 of 4
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.5, 0.75, 0.75)
    assert m["i_rmse"] == pytest.approx(math.sqrt((0 + 0.5 ** 2 + (1 / 3.5 - 1 / 5) ** 2 + 0) / 4), rel=1e-5)
    mean_d = sum(logs) / 4
    assert m["silog"] == pytest.approx(100 * math.sqrt(sum(d * d for d in logs) / 4 - mean_d ** 2), rel=1e-5)


def test_silog_is_scale_invariant_and_rmse_log_is_not():
    gt = np.linspace(1.0, 50.0, 1000, dtype=np.float32)
    m = compute_metrics(gt * 2.0, gt)
    assert m["silog"] == pytest.approx(0.0, abs=1e-3)
    assert m["rmse_log"] == pytest.approx(math.log(2.0), rel=1e-6)
    assert m["abs_rel"] == pytest.approx(1.0) and m["delta1"] == m["delta3"] == 0.0  # 1.25^3 < 2


def test_perfect_prediction_scores_perfectly():
    gt = np.random.default_rng(0).uniform(0.5, 60.0, (48, 64)).astype(np.float32)
    m = compute_metrics(gt, gt)
    assert all(m[name] == 0.0 for name in METRIC_NAMES if not name.startswith("delta"))
    assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0


def test_valid_mask_needs_finite_in_range_and_outside_crop():
    gt = np.array([[np.nan, 0.1, 0.3, 5.0],
                   [70.0, 2.0, np.inf, 65.535],
                   [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    mask = valid_mask(gt, 0.2, 65.535)
    assert mask.tolist() == [[False, False, True, True], [False, True, False, False], [True] * 4]
    cropped = valid_mask(gt, 0.2, 65.535, crop=(1, 0, 0, 1))  # top 1 row, right 1 column
    assert cropped.tolist() == [[False] * 4, [False, True, False, False], [True, True, True, False]]


def test_no_pixels_gives_nan_not_an_error():
    assert all(math.isnan(v) for v in metrics_from_sums(term_sums(np.zeros(0), np.zeros(0))).values())


def test_distance_bins_partition_the_pixels():
    gt = np.array([1.0, 9.99, 10.0, 29.0, 30.0, 60.0], dtype=np.float32)
    pred = gt * np.float32(1.1)
    sums = binned_term_sums(pred, gt, (10.0, 30.0))
    assert sums[:, 0].tolist() == [2, 2, 2]  # near < 10 <= mid < 30 <= far
    np.testing.assert_allclose(sums.sum(axis=0), term_sums(pred, gt), rtol=1e-9)
    for row in sums:
        assert metrics_from_sums(row)["abs_rel"] == pytest.approx(0.1, rel=1e-6)
