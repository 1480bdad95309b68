"""World: deterministic from the seed, a clear flight corridor, explicit primitives."""
import numpy as np
import pytest

from depth_ms.sim.config import PathConfig, WorldConfig
from depth_ms.sim.flight_path import FlightPath
from depth_ms.sim.world import Boxes, Cylinders, Spheres, World


@pytest.fixture(scope="module")
def path():
    return FlightPath(PathConfig())


def _arrays(world):
    return [world.boxes.lo, world.boxes.hi, world.boxes.colour, world.cylinders.centre_xy, world.cylinders.radius,
            world.cylinders.z_hi, world.spheres.centre, world.spheres.radius, world.ground.macro_noise,
            world.ground.maps.values]


def test_same_seed_same_world_different_seed_different_world(path):
    first, again = World.generate(3, WorldConfig(), path), World.generate(3, WorldConfig(), path)
    for a, b in zip(_arrays(first), _arrays(again)):
        np.testing.assert_array_equal(a, b)
    other = World.generate(4, WorldConfig(), path)
    assert not np.array_equal(first.boxes.lo, other.boxes.lo)
    assert not np.array_equal(first.ground.macro_noise, other.ground.macro_noise)


def test_generated_world_has_every_kind_of_object(path):
    config = WorldConfig()
    world = World.generate(7, config, path)
    assert len(world.boxes) >= 0.8 * config.buildings
    assert len(world.spheres) >= 0.8 * config.trees  # tree crowns
    assert len(world.cylinders) >= 0.8 * (config.trees + config.poles)  # trunks and poles
    heights = world.boxes.hi[:, 2]
    assert heights.min() >= config.building_min_height and heights.max() <= config.building_max_height
    assert heights.std() > 3.0  # varied skyline
    assert np.all(np.abs(world.boxes.centre[:, :2]) <= config.half_extent)
    assert len(np.unique(world.boxes.colour.round(3), axis=0)) > 5
    lit = world.ground.maps.values[..., 0]
    assert 0.02 < (lit < 0.5).mean() < 0.5  # objects cast ground shadows


def test_flight_corridor_is_clear(path):
    config = WorldConfig()
    world = World.generate(7, config, path)
    track = path.sample_loop(20000)[:, :2]  # (P, 2), ~1 cm apart
    for lo, hi in zip(world.boxes.lo, world.boxes.hi):
        outside = np.maximum(np.maximum(lo[:2] - track, track - hi[:2]), 0.0)
        assert np.sqrt((outside ** 2).sum(axis=1)).min() >= config.corridor_margin
    for centre, radius in zip(world.cylinders.centre_xy, world.cylinders.radius):
        assert np.linalg.norm(track - centre, axis=1).min() - radius >= config.corridor_margin
    for centre, radius in zip(world.spheres.centre, world.spheres.radius):
        assert np.linalg.norm(track - centre[:2], axis=1).min() - radius >= config.corridor_margin
    assert not world.contains(path.sample_loop(2000)).any()


def test_explicit_primitives_and_contains():
    world = World(boxes=Boxes([[0, 0, 0]], [[2, 2, 2]], colour=[0.5, 0.2, 0.1]),
                  cylinders=Cylinders([[5, 5]], 0.5, 0.0, 3.0),
                  spheres=Spheres([[10, 0, 4]], 1.0))
    inside = np.array([[1, 1, 1], [5.2, 5, 2.9], [10, 0.5, 4.5]])
    outside = np.array([[3, 1, 1], [5.6, 5, 1], [5, 5, 3.1], [10, 0, 5.1], [20, 20, -0.0]])
    np.testing.assert_array_equal(world.contains(inside), [True, True, True])
    np.testing.assert_array_equal(world.contains(outside), [False] * 5)
    assert world.contains([[1, 1, -0.1]]).all()  # below the ground
    np.testing.assert_allclose(world.boxes.colour, [[0.5, 0.2, 0.1]])
    assert len(World().boxes) == len(World().cylinders) == len(World().spheres) == 0
    with pytest.raises(ValueError):
        Boxes([[0, 0, 0]], [[1, -1, 1]])
