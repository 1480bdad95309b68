import numpy as np
import pytest

from depth_ms.core.pointcloud import XYZRGB_DTYPE, depth_to_xyzrgb, pack_rgb, pixel_rays
from depth_ms.core.types import Intrinsics


def test_back_projection_follows_pinhole_model():
    intr = Intrinsics(fx=100.0, fy=120.0, cx=3.5, cy=2.0, width=8, height=5)
    depth = np.full((5, 8), 2.0, np.float32)
    cloud = depth_to_xyzrgb(depth, intr)
    assert cloud.dtype == XYZRGB_DTYPE and cloud.shape == (5, 8)
    # pixel (u=7, v=0): X = (7 - 3.5) / 100 * 2, Y = (0 - 2) / 120 * 2, Z = 2
    assert cloud["x"][0, 7] == pytest.approx(0.07)
    assert cloud["y"][0, 7] == pytest.approx(-2.0 / 60)
    assert cloud["z"][0, 7] == pytest.approx(2.0)
    # reprojection of every point lands on its own pixel
    u = cloud["x"] / cloud["z"] * intr.fx + intr.cx
    v = cloud["y"] / cloud["z"] * intr.fy + intr.cy
    vv, uu = np.mgrid[0:5, 0:8]
    np.testing.assert_allclose(u, uu, atol=1e-4)
    np.testing.assert_allclose(v, vv, atol=1e-4)


def test_invalid_depth_gives_nan_points_and_stride_keeps_geometry():
    intr = Intrinsics(50.0, 50.0, 4.0, 4.0, 9, 9)
    depth = np.full((9, 9), 3.0, np.float32)
    depth[0, 0], depth[0, 2], depth[2, 0] = np.nan, -1.0, np.inf
    rgb = np.zeros((9, 9, 3), np.uint8)
    rgb[..., 0] = 255
    cloud = depth_to_xyzrgb(depth, intr, rgb, stride=2)
    assert cloud.shape == (5, 5)
    assert np.isnan(cloud["z"][0, 0]) and np.isnan(cloud["x"][0, 1]) and np.isnan(cloud["z"][1, 0])
    # strided pixel (u=8, v=8) keeps its own ray
    assert cloud["x"][4, 4] == pytest.approx((8 - 4) / 50 * 3)
    packed = cloud["rgb"].view(np.uint32)
    assert (packed == 0xFF0000).all()


def test_pack_rgb_layout_and_size_checks():
    assert pack_rgb(np.array([1, 2, 3], np.uint8)).view(np.uint32) == 0x010203
    intr = Intrinsics(1, 1, 0, 0, 4, 3)
    with pytest.raises(ValueError, match="4x3"):
        depth_to_xyzrgb(np.ones((4, 4), np.float32), intr)
    ray_x, ray_y = pixel_rays(intr)
    assert ray_x.shape == ray_y.shape == (3, 4)


def test_scaled_intrinsics_keep_rays_of_pixel_centres():
    intr = Intrinsics.from_hfov(848, 480, 1.5009831567)
    assert intr.fx == pytest.approx(454.69, abs=0.05)
    half = intr.scaled_to(424, 240)
    # the centre of output pixel 0 covers input pixels 0..1, i.e. input coordinate 0.5
    assert (0 - half.cx) / half.fx == pytest.approx((0.5 - intr.cx) / intr.fx)
    assert half.same_aspect(212, 120) and not half.same_aspect(200, 200)


@pytest.mark.parametrize("model, coefficients", [("plumb_bob", (-0.28, 0.07, 0.001, -0.0005, 0.0)),
                                                 ("equidistant", (0.05, -0.01, 0.002, 0.0))])
def test_distorted_pixels_back_project_onto_the_points_that_made_them(model, coefficients):
    """Points projected through the lens model land on pixels; back-projection with the model recovers them."""
    import cv2

    intrinsics = Intrinsics(300.0, 300.0, 159.5, 119.5, 320, 240, model, coefficients)
    rays_x, rays_y = pixel_rays(intrinsics)
    rows, cols = np.array([10, 60, 119, 200, 230]), np.array([15, 300, 160, 40, 250])
    depth = np.full((240, 320), np.nan, np.float32)
    depth[rows, cols] = 7.0
    cloud = depth_to_xyzrgb(depth, intrinsics)
    points = np.stack([cloud["x"][rows, cols], cloud["y"][rows, cols], cloud["z"][rows, cols]], axis=-1)
    zero = np.zeros(3)
    if model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(points[:, None, :].astype(np.float64), zero, zero, intrinsics.k,
                                              np.array(coefficients))
    else:
        pixels, _ = cv2.projectPoints(points.astype(np.float64), zero, zero, intrinsics.k, np.array(coefficients))
    np.testing.assert_allclose(pixels.reshape(-1, 2), np.stack([cols, rows], axis=-1), atol=0.05)
    pinhole_x, _ = pixel_rays(Intrinsics(300.0, 300.0, 159.5, 119.5, 320, 240))
    assert abs(rays_x[10, 15] - pinhole_x[10, 15]) > 0.01  # the lens model matters at the corner
