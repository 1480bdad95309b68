"""The simulated outdoor world: ground plane z = 0 (ENU), boxes, vertical cylinders, spheres, sky.

Primitives are stored as struct-of-arrays for vectorised ray casting. A world is either built
deterministically from a seed (:meth:`World.generate`) or from explicit primitives (tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial import cKDTree

from .config import WorldConfig
from .flight_path import FlightPath
from .shadows import ground_lit_fraction, sun_direction
from .textures import GridRaster, noise_tile

_GREY = (0.6, 0.6, 0.6)


def _rows(values, width: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, width)


def _colours(colour, count: int) -> np.ndarray:
    if colour is None:
        return np.tile(np.asarray(_GREY), (count, 1))  # (N, 3)
    return np.broadcast_to(_rows(colour, 3), (count, 3)).copy()


@dataclass
class Boxes:
    """Axis-aligned boxes [lo, hi]: lo, hi (N, 3); colour (N, 3) linear RGB in [0, 1]."""

    lo: np.ndarray
    hi: np.ndarray
    colour: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.lo, self.hi = _rows(self.lo, 3), _rows(self.hi, 3)  # (N, 3)
        if self.lo.shape != self.hi.shape or np.any(self.hi <= self.lo):
            raise ValueError("boxes need matching lo/hi rows with hi > lo")
        self.colour = _colours(self.colour, len(self))
        self.centre = 0.5 * (self.lo + self.hi)  # (N, 3)
        self.half_size = 0.5 * (self.hi - self.lo)  # (N, 3)

    def __len__(self) -> int:
        return self.lo.shape[0]

    def bounding_spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (N, 3) and radii (N,)."""
        return 0.5 * (self.lo + self.hi), 0.5 * np.linalg.norm(self.hi - self.lo, axis=1)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) points -> (M,) True where inside any box."""
        inside = (points[:, None, :] > self.lo[None]) & (points[:, None, :] < self.hi[None])  # (M, N, 3)
        return inside.all(axis=2).any(axis=1)


@dataclass
class Cylinders:
    """Vertical capped cylinders: centre_xy (N, 2), radius (N,), z_lo/z_hi (N,), colour (N, 3)."""

    centre_xy: np.ndarray
    radius: np.ndarray
    z_lo: np.ndarray
    z_hi: np.ndarray
    colour: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.centre_xy = _rows(self.centre_xy, 2)  # (N, 2)
        count = self.centre_xy.shape[0]
        self.radius = np.broadcast_to(np.asarray(self.radius, dtype=np.float64).ravel(), (count,)).copy()
        self.z_lo = np.broadcast_to(np.asarray(self.z_lo, dtype=np.float64).ravel(), (count,)).copy()
        self.z_hi = np.broadcast_to(np.asarray(self.z_hi, dtype=np.float64).ravel(), (count,)).copy()
        if np.any(self.radius <= 0) or np.any(self.z_hi <= self.z_lo):
            raise ValueError("cylinders need radius > 0 and z_hi > z_lo")
        self.colour = _colours(self.colour, count)

    def __len__(self) -> int:
        return self.centre_xy.shape[0]

    def bounding_spheres(self) -> tuple[np.ndarray, np.ndarray]:
        centres = np.column_stack([self.centre_xy, 0.5 * (self.z_lo + self.z_hi)])  # (N, 3)
        return centres, np.hypot(self.radius, 0.5 * (self.z_hi - self.z_lo))

    def contains(self, points: np.ndarray) -> np.ndarray:
        offset = points[:, None, :2] - self.centre_xy[None]  # (M, N, 2)
        radial = (offset ** 2).sum(axis=2) < self.radius[None] ** 2  # (M, N)
        vertical = (points[:, None, 2] > self.z_lo[None]) & (points[:, None, 2] < self.z_hi[None])
        return (radial & vertical).any(axis=1)


@dataclass
class Spheres:
    """Spheres: centre (N, 3), radius (N,), colour (N, 3)."""

    centre: np.ndarray
    radius: np.ndarray
    colour: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.centre = _rows(self.centre, 3)  # (N, 3)
        count = self.centre.shape[0]
        self.radius = np.broadcast_to(np.asarray(self.radius, dtype=np.float64).ravel(), (count,)).copy()
        if np.any(self.radius <= 0):
            raise ValueError("spheres need radius > 0")
        self.colour = _colours(self.colour, count)

    def __len__(self) -> int:
        return self.centre.shape[0]

    def bounding_spheres(self) -> tuple[np.ndarray, np.ndarray]:
        return self.centre, self.radius

    def contains(self, points: np.ndarray) -> np.ndarray:
        distance2 = ((points[:, None, :] - self.centre[None]) ** 2).sum(axis=2)  # (M, N)
        return (distance2 < self.radius[None] ** 2).any(axis=1)


@dataclass
class GroundStyle:
    """Ground texture inputs: noise tiles, grid lines, and optional baked maps (sun shadows, track)."""

    macro_noise: np.ndarray  # (S, S) float32 in [0, 1], grass/soil mix, texel MACRO_TEXEL m
    detail_noise: np.ndarray  # (S, S) float32 in [0, 1], fine grain, texel DETAIL_TEXEL m
    grid_spacing: float = 10.0
    road_width: float = 0.0
    maps: Optional[GridRaster] = None  # channels: sunlit fraction (1 = lit), metres to the flight track

    MACRO_TEXEL = 3.0
    DETAIL_TEXEL = 0.12

    @classmethod
    def from_seed(cls, seed: int, grid_spacing: float = 10.0) -> "GroundStyle":
        rng = np.random.default_rng([seed, 1])
        return cls(noise_tile(rng, 128, sigmas=(1.0, 2.5, 6.0)), noise_tile(rng, 256, sigmas=(0.7, 2.0, 5.0)),
                   grid_spacing)


def _empty_boxes() -> Boxes:
    return Boxes(np.zeros((0, 3)), np.zeros((0, 3)))


def _empty_cylinders() -> Cylinders:
    return Cylinders(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))


def _empty_spheres() -> Spheres:
    return Spheres(np.zeros((0, 3)), np.zeros(0))


class World:
    """Everything a ray can hit besides the ground plane z = 0; the sky is a miss."""

    def __init__(self, boxes: Optional[Boxes] = None, cylinders: Optional[Cylinders] = None,
                 spheres: Optional[Spheres] = None, ground: Optional[GroundStyle] = None) -> None:
        self.boxes = boxes if boxes is not None else _empty_boxes()
        self.cylinders = cylinders if cylinders is not None else _empty_cylinders()
        self.spheres = spheres if spheres is not None else _empty_spheres()
        self.ground = ground if ground is not None else GroundStyle.from_seed(0)

    @classmethod
    def generate(cls, seed: int, config: WorldConfig, path: Optional[FlightPath] = None) -> "World":
        """Deterministic world from ``seed``, keeping ``config.corridor_margin`` clear around ``path``."""
        return _WorldBuilder(seed, config, path).build()

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) points -> (M,) True where inside any object or below the ground."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return (points[:, 2] < 0) | self.boxes.contains(points) | self.cylinders.contains(points) \
            | self.spheres.contains(points)

    def __repr__(self) -> str:
        return f"World({len(self.boxes)} boxes, {len(self.cylinders)} cylinders, {len(self.spheres)} spheres)"


# Linear RGB palettes in [0, 1].
_FACADES = np.array([[0.78, 0.72, 0.60], [0.62, 0.62, 0.64], [0.62, 0.33, 0.25], [0.85, 0.84, 0.80],
                     [0.45, 0.52, 0.60], [0.70, 0.58, 0.42], [0.50, 0.46, 0.42]])
_CROWNS = np.array([[0.20, 0.42, 0.14], [0.26, 0.50, 0.18], [0.16, 0.34, 0.12], [0.34, 0.48, 0.16]])
_TRUNK = np.array([0.36, 0.26, 0.16])
_POLE = np.array([0.58, 0.58, 0.62])
_PATH_SAMPLES = 2048
_ATTEMPTS = 200


class _WorldBuilder:
    """Rejection sampling of object footprints: clear of the flight corridor and of each other."""

    def __init__(self, seed: int, config: WorldConfig, path: Optional[FlightPath]) -> None:
        self.config = config
        self.rng = np.random.default_rng([seed, 0])
        self.seed = seed
        self.track = path.sample_loop(_PATH_SAMPLES)[:, :2] if path is not None else np.zeros((0, 2))  # (P, 2)
        if len(self.track):
            spacing = np.linalg.norm(np.diff(self.track, axis=0, append=self.track[:1]), axis=1).max()
            self.clearance = config.corridor_margin + spacing  # sampled track can miss up to spacing / 2
        else:
            self.clearance = 0.0
        self.discs: list[tuple[float, float, float]] = []  # occupied footprints (x, y, radius)

    def _track_distance_to_rect(self, centre: np.ndarray, half: np.ndarray) -> float:
        if not len(self.track):
            return np.inf
        outside = np.maximum(np.abs(self.track - centre) - half, 0.0)  # (P, 2)
        return float(np.sqrt((outside ** 2).sum(axis=1)).min())

    def _free(self, centre: np.ndarray, radius: float, half: Optional[np.ndarray] = None) -> bool:
        box = half if half is not None else np.array([radius, radius])
        if self._track_distance_to_rect(centre, box) < self.clearance:
            return False
        return all(np.hypot(centre[0] - x, centre[1] - y) >= radius + r + 1.0 for x, y, r in self.discs)

    def _place(self, radius_of, half_of=None):
        """Sample a free footprint centre; ``radius_of()`` draws the footprint size. None if none fits."""
        extent = self.config.half_extent
        for _ in range(_ATTEMPTS):
            size = radius_of()
            centre = self.rng.uniform(-extent, extent, 2)
            half = half_of(size) if half_of is not None else None
            radius = float(np.hypot(*half)) if half is not None else float(size)
            if self._free(centre, radius, half):
                self.discs.append((centre[0], centre[1], radius))
                return centre, size
        return None

    def _buildings(self) -> Boxes:
        c, lo, hi, colours = self.config, [], [], []
        for _ in range(c.buildings):
            placed = self._place(lambda: self.rng.uniform(c.building_min_size, c.building_max_size, 2),
                                 half_of=lambda size: 0.5 * size)
            if placed is None:
                continue
            centre, size = placed
            height = self.rng.uniform(c.building_min_height, c.building_max_height)
            lo.append([centre[0] - size[0] / 2, centre[1] - size[1] / 2, 0.0])
            hi.append([centre[0] + size[0] / 2, centre[1] + size[1] / 2, height])
            tint = self.rng.uniform(0.9, 1.1)
            colours.append(np.clip(_FACADES[self.rng.integers(len(_FACADES))] * tint, 0, 1))
        if not lo:
            return _empty_boxes()
        return Boxes(np.array(lo), np.array(hi), np.array(colours))

    def _trees_and_poles(self) -> tuple[Cylinders, Spheres]:
        c = self.config
        centres, radii, tops, colours = [], [], [], []
        crowns, crown_radii, crown_colours = [], [], []
        for _ in range(c.trees):
            height = self.rng.uniform(c.tree_min_height, c.tree_max_height)
            crown_radius = 0.28 * height
            placed = self._place(lambda: crown_radius)
            if placed is None:
                continue
            centre, _ = placed
            crown_z = height - crown_radius
            centres.append(centre)
            radii.append(self.rng.uniform(0.15, 0.3) * height / 8.0 + 0.08)
            tops.append(crown_z)
            colours.append(_TRUNK * self.rng.uniform(0.85, 1.15))
            crowns.append([centre[0], centre[1], crown_z])
            crown_radii.append(crown_radius)
            crown_colours.append(_CROWNS[self.rng.integers(len(_CROWNS))] * self.rng.uniform(0.85, 1.15))
        for _ in range(c.poles):
            placed = self._place(lambda: c.pole_radius)
            if placed is None:
                continue
            centre, _ = placed
            centres.append(centre)
            radii.append(c.pole_radius)
            tops.append(c.pole_height * self.rng.uniform(0.8, 1.2))
            colours.append(_POLE * self.rng.uniform(0.9, 1.1))
        cylinders = (Cylinders(np.array(centres), np.array(radii), 0.0, np.array(tops), np.clip(colours, 0, 1))
                     if centres else _empty_cylinders())
        spheres = (Spheres(np.array(crowns), np.array(crown_radii), np.clip(crown_colours, 0, 1))
                   if crowns else _empty_spheres())
        return cylinders, spheres

    def _ground(self, world: World) -> GroundStyle:
        """Noise tiles plus a baked map of sun shadows and distance to the flight track (0.5 m cells)."""
        c = self.config
        ground = GroundStyle.from_seed(self.seed, c.grid_spacing)
        sun = sun_direction(c.sun_azimuth_deg, c.sun_elevation_deg)
        tallest = max(c.building_max_height, c.tree_max_height, 1.2 * c.pole_height)
        reach = min(tallest / math.tan(math.radians(c.sun_elevation_deg)), 100.0)  # longest shadow
        half = c.half_extent + reach
        axis = GridRaster.node_axis(half, 0.5)  # (n,)
        lit = ground_lit_fraction(world, sun, axis)  # (n, n)
        far = np.float32(1e6)
        track = np.full(lit.shape, far, np.float32)
        if len(self.track) and c.road_width > 0:
            gx, gy = np.meshgrid(axis, axis)  # (n, n)
            track = cKDTree(self.track).query(np.column_stack([gx.ravel(), gy.ravel()]))[0].reshape(lit.shape)
            ground.road_width = c.road_width
        ground.maps = GridRaster(np.stack([lit, track], axis=-1), half, outside=(1.0, far))
        return ground

    def build(self) -> World:
        boxes = self._buildings()
        cylinders, spheres = self._trees_and_poles()
        world = World(boxes, cylinders, spheres)
        world.ground = self._ground(world)
        return world
