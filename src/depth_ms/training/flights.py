"""Flight plans: many varied simulator flights for training, and held-out ones that training never sees.

A plan (``config/training/flights.yaml``) names splits. Each flight of a split draws its world seed and its
settings (object counts and heights, sun, haze, ambient light, altitudes, path radius, camera pitch, image
size) from a random stream seeded by the split's ``seed``, inside the split's ranges, so the same plan
always gives the same flights. Held-out splits use other seeds and, where the plan says so, ranges that do
not overlap training's (for instance another sun sector), so their worlds and lighting are unseen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from depth_ms.core.config import ConfigError, from_dict, load_config, merge_dicts, to_dict
from depth_ms.sim.config import SimConfig, load_sim_config

Range = tuple[float, float]


def _check_range(value: Range, key: str, low: float = -np.inf, high: float = np.inf) -> None:
    if not (low <= value[0] <= value[1] <= high):
        raise ConfigError(f"{key}: expected [low, high] within [{low}, {high}], got {list(value)}")


@dataclass
class Variation:
    """Ranges the settings of a flight are drawn from (uniform; integers rounded)."""

    buildings: Range = (12.0, 48.0)
    building_max_height: Range = (14.0, 40.0)
    trees: Range = (20.0, 90.0)
    poles: Range = (6.0, 36.0)
    haze_distance: Range = (45.0, 140.0)  # m
    sun_azimuth_deg: Range = (0.0, 270.0)
    sun_elevation_deg: Range = (20.0, 75.0)
    ambient: Range = (0.2, 0.5)
    grid_spacing: tuple[float, ...] = (0.0, 5.0, 10.0)  # one of these
    road_width: Range = (0.0, 8.0)  # m
    path_radius: Range = (18.0, 42.0)  # m
    min_altitude: Range = (1.5, 6.0)  # m
    altitude_span: Range = (3.0, 16.0)  # max_altitude - min_altitude, m
    yaw_amplitude_deg: Range = (10.0, 45.0)
    pitch_deg: Range = (0.0, 35.0)  # camera pitched down
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(320, 240), (640, 480), (848, 480)])

    def validate(self) -> None:
        for key in ("buildings", "building_max_height", "trees", "poles", "haze_distance", "road_width",
                    "path_radius", "altitude_span", "ambient"):
            _check_range(getattr(self, key), f"variation.{key}", 0.0)
        _check_range(self.ambient, "variation.ambient", 0.0, 1.0)
        _check_range(self.sun_elevation_deg, "variation.sun_elevation_deg", 1.0, 90.0)
        _check_range(self.min_altitude, "variation.min_altitude", 1.0)
        _check_range(self.pitch_deg, "variation.pitch_deg", -90.0, 90.0)
        _check_range(self.yaw_amplitude_deg, "variation.yaw_amplitude_deg", 0.0, 90.0)
        if not self.sizes or any(w < 32 or h < 32 for w, h in self.sizes):
            raise ConfigError(f"variation.sizes: expected [[width, height], ...] of at least 32 px, got {self.sizes}")
        if not self.grid_spacing:
            raise ConfigError("variation.grid_spacing: expected at least one value")


@dataclass
class Split:
    """``flights`` flights of ``frames`` frames each, ``rate_hz`` apart along the loop."""

    flights: int = 1
    frames: int = 60
    rate_hz: float = 0.75  # frames per second of flight; low = frames spread over the loop
    seed: int = 0  # seed of this split's settings stream (world seeds are drawn from it)
    variation: Mapping[str, Any] = field(default_factory=dict)  # overrides of the plan's variation

    def validate(self) -> None:
        if self.flights < 1 or self.frames < 1:
            raise ConfigError(f"flights and frames must be >= 1, got {self.flights} and {self.frames}")
        if self.rate_hz <= 0:
            raise ConfigError(f"rate_hz must be > 0, got {self.rate_hz}")


@dataclass
class FlightPlan:
    """Named splits over a base simulator config, with the default variation."""

    base: Mapping[str, Any] = field(default_factory=dict)  # sim config keys every flight starts from
    variation: Variation = field(default_factory=Variation)
    splits: Mapping[str, Any] = field(default_factory=dict)  # name -> Split fields


@dataclass(frozen=True)
class Flight:
    """One planned flight: its split, number, sim config and frame count."""

    split: str
    number: int
    config: SimConfig
    frames: int

    @property
    def name(self) -> str:
        return f"{self.split}_{self.number:03d}"


def load_flight_plan(source: Union[str, Path, Mapping[str, Any]]) -> FlightPlan:
    """A FlightPlan from YAML or a mapping; ConfigError names a bad key."""
    plan = load_config(FlightPlan, source)
    splits = {}
    for name, raw in dict(plan.splits).items():
        if not isinstance(raw, Mapping):
            raise ConfigError(f"splits.{name}: expected a mapping")
        splits[name] = load_config(Split, raw)  # validated by the loader
    if not splits:
        raise ConfigError("splits: expected at least one split")
    seeds: dict[int, str] = {}
    for name, split in splits.items():
        if split.seed in seeds:
            raise ConfigError(f"splits.{name}.seed: same seed as split '{seeds[split.seed]}' "
                              f"(held-out flights must not repeat training's)")
        seeds[split.seed] = name
    plan.splits = splits
    load_sim_config(dict(plan.base))  # a bad base key fails here, before any flight is drawn
    for name, split in splits.items():
        _variation(plan, split, name)
    return plan


def _variation(plan: FlightPlan, split: Split, name: str) -> Variation:
    merged = {**to_dict(plan.variation), **dict(split.variation)}
    return from_dict(Variation, merged, f"splits.{name}.variation")


def _uniform(rng: np.random.Generator, value: Range) -> float:
    return float(rng.uniform(value[0], value[1]))


def _draw_settings(rng: np.random.Generator, v: Variation, frames: int, rate_hz: float) -> dict:
    """Sim config keys of one flight (on top of the plan's base)."""
    width, height = v.sizes[int(rng.integers(len(v.sizes)))]
    min_altitude = _uniform(rng, v.min_altitude)
    building_max = _uniform(rng, v.building_max_height)
    return {
        "seed": int(rng.integers(0, 2**31 - 1)),
        "width": int(width), "height": int(height), "rate_hz": float(rate_hz),
        "world": {
            "buildings": int(round(_uniform(rng, v.buildings))),
            "building_max_height": building_max,
            "building_min_height": min(5.0, building_max),
            "trees": int(round(_uniform(rng, v.trees))),
            "poles": int(round(_uniform(rng, v.poles))),
            "haze_distance": _uniform(rng, v.haze_distance),
            "sun_azimuth_deg": _uniform(rng, v.sun_azimuth_deg),
            "sun_elevation_deg": _uniform(rng, v.sun_elevation_deg),
            "ambient": _uniform(rng, v.ambient),
            "grid_spacing": float(v.grid_spacing[int(rng.integers(len(v.grid_spacing)))]),
            "road_width": _uniform(rng, v.road_width),
        },
        "path": {
            "radius": _uniform(rng, v.path_radius),
            "min_altitude": min_altitude,
            "max_altitude": min_altitude + _uniform(rng, v.altitude_span),
            "yaw_amplitude_deg": _uniform(rng, v.yaw_amplitude_deg),
            # frames spread over at most one loop, starting at a random phase
            "period_s": max(80.0, frames / rate_hz),
        },
        "camera": {"pitch_deg": _uniform(rng, v.pitch_deg)},
    }


def plan_flights(plan: FlightPlan, split: str) -> list[Flight]:
    """Every flight of ``split``, deterministic from the plan."""
    if split not in plan.splits:
        raise ConfigError(f"no split '{split}' in the flight plan (splits: {', '.join(plan.splits)})")
    spec = plan.splits[split]
    variation = _variation(plan, spec, split)
    rng = np.random.default_rng(spec.seed)
    flights = []
    for number in range(spec.flights):
        settings = _draw_settings(rng, variation, spec.frames, spec.rate_hz)
        config = load_sim_config(merge_dicts(dict(plan.base), settings))
        flights.append(Flight(split, number, config, spec.frames))
    return flights


__all__ = ["Flight", "FlightPlan", "Split", "Variation", "load_flight_plan", "plan_flights"]
