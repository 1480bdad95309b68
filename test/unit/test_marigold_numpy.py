"""Numpy parts of streaming Marigold: warping the previous latent, ensembling, image preparation."""
import numpy as np
import pytest

from depth_ms.core.image_ops import BadInputError
from depth_ms.core.types import Intrinsics
from depth_ms.models.marigold import imaging, warping
from depth_ms.models.marigold.ensemble import ensemble_depth


def _latent(h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.sin(xx * 0.7 + c) + np.cos(yy * 0.5 - c) + 0.1 * rng.standard_normal((h, w))
                     for c in range(4)])[None].astype(np.float32)  # (1, 4, h, w)


def test_flow_warp_shifts_the_latent_by_the_flow_scaled_to_the_grid():
    latent = _latent()
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0] = 8.0  # every current pixel was 8 image pixels to the right = 2 latent pixels
    warped = warping.warp_by_flow(latent, flow)
    np.testing.assert_allclose(warped[..., :, :-2], latent[..., :, 2:], atol=1e-5)


def test_dis_flow_recovers_a_known_image_shift():
    rng = np.random.default_rng(1)
    base = (rng.random((60, 90)) * 255).astype(np.uint8)
    import cv2
    base = cv2.GaussianBlur(base, (0, 0), 2)
    prev, curr = base[:, 4:84], base[:, 0:80]  # content moved right by 4 px
    flow = warping.flow_to_previous(prev, curr)
    assert np.median(flow[10:-10, 10:-10, 0]) == pytest.approx(-4.0, abs=0.5)
    assert abs(np.median(flow[10:-10, 10:-10, 1])) < 0.5


def test_pose_warp_translation_matches_pinhole_shift():
    """Camera moves +x by 0.5 m in front of a wall at 10 m: content shifts by fx * 0.5 / 10 latent px."""
    latent = _latent()
    k = Intrinsics(fx=20.0, fy=20.0, cx=7.5, cy=5.5, width=16, height=12)
    depth = np.full((12, 16), 10.0)
    prev, curr = np.eye(4), np.eye(4)
    curr[0, 3] = 0.5  # optical x = right
    warped = warping.warp_by_pose(latent, depth, k, prev, curr)
    np.testing.assert_allclose(warped[..., :, :-1], latent[..., :, 1:], atol=1e-5)  # 20 * 0.5 / 10 = 1 px


def test_pose_warp_identity_and_rotation_only_need_no_depth():
    latent = _latent()
    k = Intrinsics(fx=20.0, fy=20.0, cx=7.5, cy=5.5, width=16, height=12)
    same = warping.warp_by_pose(latent, np.full((12, 16), 5.0), k, np.eye(4), np.eye(4))
    np.testing.assert_allclose(same, latent, atol=1e-6)
    yaw = np.eye(4)
    a = np.arctan(1.0 / 20.0)  # one pixel at the centre
    yaw[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    near = warping.warp_by_pose(latent, np.full((12, 16), 2.0), k, np.eye(4), yaw)
    far = warping.warp_by_pose(latent, np.full((12, 16), 50.0), k, np.eye(4), yaw)
    np.testing.assert_allclose(near, far, atol=1e-5)


def test_ensemble_recovers_affine_members_and_flags_disagreement():
    rng = np.random.default_rng(0)
    truth = rng.random((20, 30))
    sigma = np.full((20, 30), 0.01)
    sigma[:6, :6] = 0.2  # the members disagree in one corner
    members = np.stack([s * (truth + sigma * rng.standard_normal(truth.shape)) + t
                        for s, t in ((1.0, 0.0), (2.0, 0.5), (0.5, -0.2), (1.5, 1.0), (0.8, 0.1))])
    depth, mad = ensemble_depth(members)
    assert depth.min() == pytest.approx(0.0, abs=1e-6) and depth.max() == pytest.approx(1.0, abs=1e-6)
    assert np.corrcoef(depth[6:, 6:].ravel(), truth[6:, 6:].ravel())[0, 1] > 0.99
    assert mad[:6, :6].mean() > 5 * mad[6:, 6:].mean()


def test_processing_size_and_padding_follow_diffusers():
    assert imaging.processing_size(480, 640, 768) == (576, 768)
    assert imaging.processing_size(30, 44, 0) == (30, 44)
    with pytest.raises(BadInputError, match="aspect"):
        imaging.processing_size(1, 4000, 768)
    x, pad = imaging.to_model_input(np.zeros((30, 44, 3), np.uint8), 0, 8)
    assert x.shape == (1, 3, 32, 48) and pad == (2, 4) and x.min() == -1.0
    x, pad = imaging.to_model_input(np.full((1, 1, 3), 255, np.uint8), 0, 8, min_side=64)
    assert x.shape == (1, 3, 64, 64) and pad == (63, 63) and x.max() == 1.0
    assert imaging.unpad(np.zeros((1, 1, 64, 64)), pad).shape == (1, 1, 1, 1)


def test_resize_matrix_rows_sum_to_one_and_preserve_constants():
    for n_in, n_out, aa in ((44, 24, True), (24, 44, True), (7, 3, False), (1, 5, True)):
        w = imaging.resize_matrix(n_in, n_out, aa)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    const = np.full((1, 9, 13), 0.3, np.float32)
    np.testing.assert_allclose(imaging.resize(const, 4, 5, True), 0.3, atol=1e-6)
