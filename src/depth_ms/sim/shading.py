"""Colours of ray hits: procedural textures, Lambert sun plus ambient, Gaussian haze and a sky gradient.

Everything a monocular depth estimator can use is here: texture gradients (anti-aliased grid,
windows, noise), shading by surface orientation, baked ground shadows, haze growing with distance,
the horizon.
Textures are box-filtered by the pixel footprint, so distant patterns fade instead of flickering.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .config import WorldConfig
from .shadows import sun_direction
from .textures import sample_wrapped, stripe_coverage
from .world import GroundStyle, World

SKY, GROUND, BOX, CYLINDER, SPHERE = 0, 1, 2, 3, 4  # hit kinds

HORIZON = np.array([0.78, 0.84, 0.90], np.float32)
ZENITH = np.array([0.30, 0.50, 0.82], np.float32)
SUN_GLOW = np.array([1.0, 0.95, 0.80], np.float32)
GRASS = np.array([0.32, 0.46, 0.20], np.float32)
SOIL = np.array([0.50, 0.42, 0.28], np.float32)
GRAVEL = np.array([0.62, 0.58, 0.52], np.float32)
WINDOW = np.array([0.16, 0.20, 0.27], np.float32)


@dataclass(frozen=True)
class Lighting:
    """Sun direction, ambient share and haze scale."""

    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = 45.0
    ambient: float = 0.35
    haze_distance: float = 70.0

    @classmethod
    def from_config(cls, world: WorldConfig) -> "Lighting":
        return cls(world.sun_azimuth_deg, world.sun_elevation_deg, world.ambient, world.haze_distance)

    @property
    def sun_direction(self) -> np.ndarray:
        """Unit vector towards the sun (ENU)."""
        return sun_direction(self.sun_azimuth_deg, self.sun_elevation_deg)


def _fade(footprint: np.ndarray, feature: float) -> np.ndarray:
    """1 while a pixel covers less than ``feature`` metres, 0 beyond twice that: detail contrast."""
    return np.clip(2.0 - footprint / feature, 0.0, 1.0).astype(np.float32)


def _dot(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Row-wise dot product of (N, 3) vectors with one 3-vector (plain ufuncs, no BLAS threads)."""
    return vectors[:, 0] * direction[0] + vectors[:, 1] * direction[1] + vectors[:, 2] * direction[2]


def sky_colour(dirs: np.ndarray, lighting: Lighting) -> np.ndarray:
    """Gradient from horizon to zenith plus a sun glow; ``dirs`` (N, 3) -> (N, 3) float32."""
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)  # (N, 3)
    elevation = np.clip(unit[:, 2], 0.0, 1.0).astype(np.float32) ** 0.6  # (N,)
    colour = HORIZON + (ZENITH - HORIZON) * elevation[:, None]  # (N, 3)
    towards_sun = np.clip(_dot(unit, lighting.sun_direction.astype(np.float32)), 0.0, 1.0)  # (N,)
    glow = 0.5 * towards_sun ** 300 + 0.12 * towards_sun ** 6
    return colour + SUN_GLOW * glow[:, None]


def _ground_albedo(ground: GroundStyle, points: np.ndarray, footprint: np.ndarray,
                   track_distance: Optional[np.ndarray]) -> np.ndarray:
    """Grass/soil patches, fine grain, the gravel track and grid lines: (N, 3)."""
    x, y = points[:, 0], points[:, 1]
    macro = sample_wrapped(ground.macro_noise, x / ground.MACRO_TEXEL, y / ground.MACRO_TEXEL)  # (N,)
    soil_share = np.clip((macro - 0.35) / 0.3, 0.0, 1.0)[:, None]
    albedo = GRASS + (SOIL - GRASS) * soil_share  # (N, 3)
    detail = sample_wrapped(ground.detail_noise, x / ground.DETAIL_TEXEL, y / ground.DETAIL_TEXEL)
    grain = 1.0 + 0.6 * (detail - 0.5) * _fade(footprint, 4 * ground.DETAIL_TEXEL)  # (N,)
    if track_distance is not None and ground.road_width > 0:
        road = np.clip((0.5 * ground.road_width - track_distance) / 0.6 + 0.5, 0.0, 1.0)[:, None]  # (N, 1)
        albedo = albedo + (GRAVEL - albedo) * road
    if ground.grid_spacing > 0:
        lines_x = stripe_coverage(x, ground.grid_spacing, 0.25, footprint)
        lines_y = stripe_coverage(y, ground.grid_spacing, 0.25, footprint)
        grain = grain * (1.0 - 0.4 * (lines_x + lines_y - lines_x * lines_y)).astype(np.float32)
    return albedo * grain[:, None]


def _box_surface(world: World, index: np.ndarray, points: np.ndarray, dirs: np.ndarray, ray_length: np.ndarray,
                 distance: np.ndarray, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """Walls: facade colour with an anti-aliased window grid; roofs: darker. Returns normals, albedo."""
    boxes = world.boxes
    centre, half = boxes.centre[index], boxes.half_size[index]  # (N, 3)
    offset = points - centre  # (N, 3)
    to_face = half - np.abs(offset)  # (N, 3) distance to the nearer face along each axis
    on_x = (to_face[:, 0] <= to_face[:, 1]) & (to_face[:, 0] <= to_face[:, 2])  # (N,)
    on_y = ~on_x & (to_face[:, 1] <= to_face[:, 2])
    on_wall = on_x | on_y
    normals = np.zeros_like(points)
    normals[:, 0] = np.where(on_x, np.sign(offset[:, 0]), 0.0)
    normals[:, 1] = np.where(on_y, np.sign(offset[:, 1]), 0.0)
    normals[:, 2] = np.where(on_wall, 0.0, np.sign(offset[:, 2]))
    along = np.where(on_x, offset[:, 1] + half[:, 1], offset[:, 0] + half[:, 0])  # metres along the wall
    wall_length = 2.0 * np.where(on_x, half[:, 1], half[:, 0])
    z = points[:, 2]
    cos_incidence = np.abs((dirs * normals).sum(axis=1)) / ray_length
    footprint = distance / focal / np.maximum(cos_incidence, 0.05)
    window = stripe_coverage(along - 0.7, 3.0, 1.6, footprint) * stripe_coverage(z - 1.0, 3.2, 1.6, footprint)
    window *= on_wall & (z < centre[:, 2] + half[:, 2] - 0.8) & (along > 0.6) & (along < wall_length - 0.6)
    colour = boxes.colour[index].astype(np.float32)  # (N, 3)
    base = np.where(on_wall[:, None], colour, 0.45 * colour + 0.12)
    return normals, base + (WINDOW - base) * window.astype(np.float32)[:, None]


def _cylinder_surface(world: World, index: np.ndarray, points: np.ndarray,
                      footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radial or cap normals; colour with vertical bark grain. Returns normals, albedo."""
    cylinders = world.cylinders
    radial = points[:, :2] - cylinders.centre_xy[index]  # (N, 2)
    radial_length = np.linalg.norm(radial, axis=1)
    to_side = np.abs(radial_length - cylinders.radius[index])
    to_top = np.abs(points[:, 2] - cylinders.z_hi[index])
    to_bottom = np.abs(points[:, 2] - cylinders.z_lo[index])
    normals = np.zeros_like(points)
    normals[:, :2] = radial / np.maximum(radial_length, 1e-12)[:, None]
    on_cap = np.minimum(to_top, to_bottom) < to_side
    normals[on_cap] = 0.0
    normals[on_cap, 2] = np.where(to_top[on_cap] < to_bottom[on_cap], 1.0, -1.0)
    tile = world.ground.detail_noise
    around = np.arctan2(radial[:, 1], radial[:, 0]) * (tile.shape[1] / (2 * np.pi))  # one tile per turn: no seam
    bark = sample_wrapped(tile, around, points[:, 2] / 0.4)
    grain = 1.0 + 0.5 * (bark - 0.5) * _fade(footprint, 0.1)
    return normals, cylinders.colour[index].astype(np.float32) * grain[:, None]


def _sphere_surface(world: World, index: np.ndarray, points: np.ndarray,
                    footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radial normals; leafy noise on the crown colour. Returns normals, albedo."""
    spheres = world.spheres
    normals = (points - spheres.centre[index]) / spheres.radius[index][:, None]  # (N, 3)
    leaves = sample_wrapped(world.ground.detail_noise, (points[:, 0] + 0.6 * points[:, 2]) / 0.1,
                            (points[:, 1] - 0.6 * points[:, 2]) / 0.1)
    grain = 1.0 + 0.9 * (leaves - 0.5) * _fade(footprint, 0.4)
    return normals, spheres.colour[index].astype(np.float32) * grain[:, None]


def shade(world: World, lighting: Lighting, origin: np.ndarray, dirs: tuple, t: np.ndarray,
          kind: np.ndarray, index: np.ndarray, focal: float) -> np.ndarray:
    """Display RGB uint8 (H, W, 3) of traced rays.

    ``dirs``: x, y, z components (each (H, W)) of the map-frame rays; ``t`` (H, W) hit parameters;
    ``kind`` (H, W) hit kinds; ``index`` (H, W) object indices; ``focal`` in pixels (pixel footprint).
    Pixels are grouped by hit kind once (a stable sort), so each material works on a contiguous slice.
    """
    height, width = t.shape
    flat_kind = kind.ravel()
    order = np.argsort(flat_kind, kind="stable")  # (H*W,) pixels grouped by kind
    bounds = np.concatenate([[0], np.cumsum(np.bincount(flat_kind, minlength=SPHERE + 1))])
    sorted_dirs = np.stack([np.take(component.ravel(), order) for component in dirs], axis=1,
                           dtype=np.float32)  # (H*W, 3)
    colour = np.empty((height * width, 3), np.float32)  # (H*W, 3) in sorted order
    colour[:bounds[1]] = sky_colour(sorted_dirs[:bounds[1]], lighting)

    hit_order = order[bounds[1]:]
    hit_dirs = sorted_dirs[bounds[1]:]  # (N, 3)
    hit_t = np.take(t.ravel(), hit_order).astype(np.float32)  # (N,)
    hit_index = np.take(index.ravel(), hit_order)
    points = origin.astype(np.float32) + hit_t[:, None] * hit_dirs  # (N, 3)
    ray_length = np.sqrt((hit_dirs * hit_dirs).sum(axis=1))  # (N,)
    distance = hit_t * ray_length  # (N,) metres from the camera
    normals = np.empty_like(points)
    albedo = np.empty_like(points)
    sun_visible = np.ones(len(hit_t), np.float32)

    for hit_type in (GROUND, BOX, CYLINDER, SPHERE):
        part = slice(bounds[hit_type] - bounds[1], bounds[hit_type + 1] - bounds[1])
        if part.start == part.stop:
            continue
        if hit_type == GROUND:
            cos_incidence = np.abs(hit_dirs[part, 2]) / ray_length[part]
            footprint = distance[part] / focal / np.maximum(cos_incidence, 0.02)
            normals[part] = (0.0, 0.0, 1.0)
            maps = world.ground.maps
            baked = maps.sample(points[part, 0], points[part, 1]) if maps is not None else None  # (n, 2)
            albedo[part] = _ground_albedo(world.ground, points[part], footprint,
                                          baked[:, 1] if baked is not None else None)
            if baked is not None:
                sun_visible[part] = baked[:, 0]
        elif hit_type == BOX:
            normals[part], albedo[part] = _box_surface(world, hit_index[part], points[part], hit_dirs[part],
                                                       ray_length[part], distance[part], focal)
        else:
            surface = _cylinder_surface if hit_type == CYLINDER else _sphere_surface
            normals[part], albedo[part] = surface(world, hit_index[part], points[part], distance[part] / focal)

    sun = np.clip(_dot(normals, lighting.sun_direction.astype(np.float32)), 0.0, 1.0) * sun_visible  # (N,)
    sky_light = lighting.ambient * (0.75 + 0.25 * normals[:, 2])  # more light from above
    lit = albedo * (sky_light + (1.0 - lighting.ambient) * sun)[:, None]  # (N, 3)
    transmission = np.exp(-(distance / np.float32(lighting.haze_distance)) ** 2)[:, None]  # (N, 1)
    colour[bounds[1]:] = HORIZON + (lit - HORIZON) * transmission
    image = np.empty_like(colour)
    image[order] = colour
    return _to_uint8(image, height, width)


def _to_uint8(colour: np.ndarray, height: int, width: int) -> np.ndarray:
    return (np.clip(colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(height, width, 3)
