"""Least-squares alignment recovers known scale and shift in depth and in disparity space."""
import numpy as np
import pytest

from depth_ms.core.types import DepthKind
from depth_ms.evaluation.alignment import (LinearFit, apply_alignment, fit_scale_shift, resolve_space)

RNG = np.random.default_rng(1)
GT = RNG.uniform(0.5, 60.0, 5000).astype(np.float32)


def test_depth_space_recovers_scale_and_shift():
    scale, shift = 2.5, -1.25
    pred = (GT - shift) / scale  # so that gt = scale * pred + shift
    fitted = fit_scale_shift(pred, GT, "depth")
    np.testing.assert_allclose(fitted, (scale, shift), rtol=1e-5, atol=1e-5)
    aligned = apply_alignment(pred, "depth", *fitted, 0.2, 100.0)
    np.testing.assert_allclose(aligned, GT, rtol=1e-5)


def test_disparity_space_recovers_scale_and_shift():
    scale, shift = 0.02, 0.01
    pred = (1.0 / GT - shift) / scale  # relative disparity: 1 / gt = scale * pred + shift
    fitted = fit_scale_shift(pred, GT, "disparity")
    np.testing.assert_allclose(fitted, (scale, shift), rtol=1e-4, atol=1e-7)
    aligned = apply_alignment(pred, "disparity", *fitted, 0.2, 100.0)
    np.testing.assert_allclose(aligned, GT, rtol=1e-4)


def test_fit_matches_numpy_lstsq_on_noisy_data():
    pred = GT * 0.3 + RNG.normal(0, 1.0, GT.size).astype(np.float32)
    design = np.stack([pred.astype(np.float64), np.ones(pred.size)], axis=1)
    expected = np.linalg.lstsq(design, GT.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(fit_scale_shift(pred, GT, "depth"), expected, rtol=1e-6)


def test_streaming_fit_over_batches_equals_one_fit():
    pred = GT * 0.7 + RNG.normal(0, 2.0, GT.size).astype(np.float32)
    fit = LinearFit()
    for chunk in np.array_split(np.arange(GT.size), 7):
        fit.add(pred[chunk], GT[chunk])
    np.testing.assert_allclose(fit.solve(), fit_scale_shift(pred, GT, "depth"), rtol=1e-7)


def test_degenerate_fits():
    assert fit_scale_shift(np.full(10, 3.0, np.float32), GT[:10], "depth") == (0.0, pytest.approx(GT[:10].mean()))
    assert np.isnan(LinearFit().solve()[0])
    # disparity ignores non-positive predictions (Marigold)
    pred = np.concatenate([1.0 / GT[:100], -np.ones(5, np.float32)])
    gt = np.concatenate([GT[:100], np.ones(5, np.float32)])
    np.testing.assert_allclose(fit_scale_shift(pred, gt, "disparity"), (1.0, 0.0), atol=1e-5)


def test_apply_alignment_clips_and_keeps_nan():
    pred = np.array([np.nan, 0.0, 1.0, 100.0], np.float32)
    expected = np.array([np.nan, 0.2, 1.0, 65.0], np.float32)
    np.testing.assert_array_equal(apply_alignment(pred, "depth", 1.0, 0.0, 0.2, 65.0), expected)
    # disparity: clipped at 1e-3 before inversion, then to the range
    np.testing.assert_array_equal(apply_alignment(pred, "disparity", 1.0, 0.0, 0.2, 65.0), expected[[0, 3, 2, 1]])


def test_auto_alignment_follows_the_depth_kind():
    assert resolve_space("auto", DepthKind.METRIC) == "none"
    assert resolve_space("auto", DepthKind.AFFINE_DEPTH) == "depth"
    assert resolve_space("auto", DepthKind.AFFINE_DISPARITY) == "disparity"
    assert resolve_space("depth", DepthKind.METRIC) == "depth"
