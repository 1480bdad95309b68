"""Vectorised ray casting of a :class:`World` into RGB and metric depth (REP 118)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_ms.core.types import Intrinsics

from . import culling, raycast
from .shading import BOX, CYLINDER, GROUND, SPHERE, Lighting, shade
from .world import World

_BAND_PIXELS = 16384  # rays per band: keeps every temporary array small and cache-resident


@dataclass
class HitBuffer:
    """Nearest hit per pixel of a band of rows: ray parameter (= depth), hit kind, object index, rays."""

    t: np.ndarray  # (B, W) float64, inf = sky
    kind: np.ndarray  # (B, W) int8, shading.SKY/GROUND/BOX/CYLINDER/SPHERE
    index: np.ndarray  # (B, W) int32, object index within its kind
    origin: np.ndarray  # (3,) camera centre in map
    dirs: tuple  # x, y, z components (each (B, W)) of the map-frame rays (optical z component 1)

    def keep_nearest(self, window: tuple[slice, slice], t: np.ndarray, kind: int, index: int) -> None:
        """Record ``t`` (window shape) where it is nearer than what the window holds."""
        current = self.t[window]
        closer = t < current
        np.copyto(current, t, where=closer)
        np.copyto(self.kind[window], kind, where=closer)
        np.copyto(self.index[window], index, where=closer)


class Renderer:
    """Renders RGB uint8 (H, W, 3) and depth float32 (H, W) for a camera pose.

    The ray of pixel (u, v) is ``((u - cx) / fx, (v - cy) / fy, 1)`` in the optical frame (z forward,
    x right, y down), so the ray parameter of a hit is its depth Z. Depth is NaN for sky and outside
    [min_range, max_range]. Objects whose bounding sphere lies beyond ``view_distance`` are not
    drawn; the others are intersected only with the rays of their conservative screen rectangle.
    The image is processed in bands of rows so that temporaries stay small.
    """

    def __init__(self, world: World, intrinsics: Intrinsics, min_range: float = 0.2, max_range: float = 65.535,
                 view_distance: float = np.inf, lighting: Optional[Lighting] = None) -> None:
        self.world = world
        self.intrinsics = intrinsics
        self.min_range = float(min_range)
        self.max_range = float(max_range)
        self.view_distance = float(view_distance)
        self.lighting = lighting if lighting is not None else Lighting()
        self._slope_u = (np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx  # (W,) optical x / z
        self._slope_v = (np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy  # (H,) optical y / z
        self.band_rows = max(1, _BAND_PIXELS // intrinsics.width)
        self._spheres = {kind: primitives.bounding_spheres() for kind, primitives in
                         ((BOX, world.boxes), (CYLINDER, world.cylinders), (SPHERE, world.spheres))}
        cylinders = world.cylinders
        cylinder_lo = np.column_stack([cylinders.centre_xy - cylinders.radius[:, None], cylinders.z_lo])  # (N, 3)
        cylinder_hi = np.column_stack([cylinders.centre_xy + cylinders.radius[:, None], cylinders.z_hi])
        self._corners = {BOX: culling.box_corners(world.boxes.lo, world.boxes.hi),  # (N, 8, 3)
                         CYLINDER: culling.box_corners(cylinder_lo, cylinder_hi)}

    def render(self, T_map_optical: np.ndarray, cull: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (H, W, 3), depth float32 (H, W) metres, NaN = no return).

        ``cull=False`` intersects every object within the view distance with every ray (reference).
        """
        T_map_optical = np.asarray(T_map_optical, dtype=np.float64)
        rotation, origin = T_map_optical[:3, :3], T_map_optical[:3, 3].copy()
        windows = self._windows(origin, rotation, cull)
        height, width = self.intrinsics.height, self.intrinsics.width
        rgb = np.empty((height, width, 3), np.uint8)  # (H, W, 3)
        depth = np.empty((height, width), np.float32)  # (H, W)
        for top in range(0, height, self.band_rows):
            rows = slice(top, min(top + self.band_rows, height))
            hits = self._trace_band(origin, rotation, rows, windows)
            rgb[rows] = shade(self.world, self.lighting, origin, hits.dirs, hits.t, hits.kind, hits.index,
                              self.intrinsics.fx)
            depth[rows] = self._depth_of(hits.t)
        return rgb, depth

    def _depth_of(self, t: np.ndarray) -> np.ndarray:
        valid = (t >= self.min_range) & (t <= self.max_range)
        return np.where(valid, t, np.nan).astype(np.float32)

    def _trace_band(self, origin: np.ndarray, rotation: np.ndarray, rows: slice, windows: list) -> HitBuffer:
        """Nearest hits of the rays of image rows ``rows``."""
        # map ray = R @ (slope_u, slope_v, 1), one component at a time (no (B, W, 3) temporaries, no BLAS)
        dx, dy, dz = (row[0] * self._slope_u[None, :] + (row[1] * self._slope_v[rows, None] + row[2])
                      for row in rotation)  # each (B, W)
        shape = dx.shape
        t = raycast.ground_hits(origin, dz)
        on_ground = np.isfinite(t)
        hits = HitBuffer(t, np.where(on_ground, GROUND, 0).astype(np.int8), np.zeros(shape, np.int32),
                         origin, (dx, dy, dz))
        with np.errstate(divide="ignore"):
            inv = (1.0 / dx, 1.0 / dy, 1.0 / dz)
        boxes, cylinders, spheres = self.world.boxes, self.world.cylinders, self.world.spheres
        for kind, index, (v0, v1, u0, u1) in windows:
            band_v0, band_v1 = max(v0, rows.start) - rows.start, min(v1, rows.stop) - rows.start
            if band_v0 >= band_v1:
                continue
            sl = (slice(band_v0, band_v1), slice(u0, u1))
            if kind == BOX:
                t = raycast.box_hits(origin, inv[0][sl], inv[1][sl], inv[2][sl], boxes.lo[index], boxes.hi[index])
            elif kind == CYLINDER:
                t = raycast.cylinder_hits(origin, dx[sl], dy[sl], dz[sl], cylinders.centre_xy[index],
                                          cylinders.radius[index], cylinders.z_lo[index], cylinders.z_hi[index])
            else:
                t = raycast.sphere_hits(origin, dx[sl], dy[sl], dz[sl], spheres.centre[index], spheres.radius[index])
            hits.keep_nearest(sl, t, kind, index)
        return hits

    def _windows(self, origin: np.ndarray, rotation: np.ndarray, cull: bool) -> list:
        """(kind, object index, pixel window (v0, v1, u0, u1)) of every object that may be visible.

        Objects beyond the view distance are dropped. With ``cull`` the window is the object's
        conservative screen rectangle (objects behind the camera or off-screen are dropped),
        otherwise the whole image.
        """
        whole = (0, self.intrinsics.height, 0, self.intrinsics.width)
        result = []
        for kind, (centres, radii) in self._spheres.items():
            if len(radii) == 0:
                continue
            offsets = centres - origin  # (N, 3)
            candidates = np.flatnonzero(np.linalg.norm(offsets, axis=1) - radii <= self.view_distance)
            if not cull:
                result += [(kind, i, whole) for i in candidates]
                continue
            bounds = culling.sphere_bounds(offsets[candidates] @ rotation, radii[candidates], self.intrinsics)
            if kind in self._corners:  # the corner hull is tighter for boxes and upright cylinders
                corners = (self._corners[kind][candidates] - origin) @ rotation  # (M, 8, 3) optical frame
                bounds = culling.intersect_bounds(bounds, culling.hull_bounds(corners, self.intrinsics))
            windows = culling.pixel_windows(bounds, self.intrinsics)
            result += [(kind, i, window) for i, window in zip(candidates, windows) if window is not None]
        return result
