"""SimConfig: defaults, the shipped YAML, strict keys and value checks naming the key."""
from pathlib import Path

import pytest

from depth_ms.core.config import ConfigError, load_yaml
from depth_ms.sim import SimConfig, load_sim_config

SIM_YAML = Path(__file__).resolve().parents[2] / "config" / "sim.yaml"


def _flatten(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_defaults_are_valid_and_match_px4_camera():
    config = SimConfig()
    config.validate()
    assert (config.width, config.height, config.rate_hz) == (320, 240, 10.0)
    assert config.hfov_deg == pytest.approx(86.0, abs=0.01)
    assert (config.min_range, config.max_range) == (0.2, 65.535)
    assert config.frames.optical == "camera_link_optical"
    assert config.camera.pitch_deg == 15.0


def test_shipped_yaml_holds_every_key_at_its_default():
    assert load_sim_config(SIM_YAML) == SimConfig()
    from depth_ms.core.config import to_dict
    assert sorted(_flatten(load_yaml(SIM_YAML))) == sorted(_flatten(to_dict(SimConfig())))


def test_mapping_overrides_nested_values():
    config = load_sim_config({"width": 64, "world": {"buildings": 3}, "path": {"radius": 20}})
    assert config.width == 64 and config.world.buildings == 3 and config.path.radius == 20.0
    assert config.world.trees == SimConfig().world.trees


@pytest.mark.parametrize("data, named", [
    ({"widht": 64}, "widht"),
    ({"world": {"bildings": 3}}, "bildings"),
    ({"path": {"speed": 3.0}}, "speed"),
    ({"frames": {"odom": "odom"}}, "odom"),
])
def test_unknown_keys_are_rejected_by_name(data, named):
    with pytest.raises(ConfigError, match=named):
        load_sim_config(data)


@pytest.mark.parametrize("data, named", [
    ({"width": 1}, "width"),
    ({"height": 0}, "height"),
    ({"rate_hz": 0.0}, "rate_hz"),
    ({"hfov_deg": 180.0}, "hfov_deg"),
    ({"min_range": 5.0, "max_range": 4.0}, "max_range"),
    ({"min_range": 0.0}, "min_range"),
    ({"world": {"view_distance": 50.0}}, "world.view_distance"),
    ({"world": {"building_min_height": 10.0, "building_max_height": 5.0}}, "world.building_max_height"),
    ({"world": {"corridor_margin": 0.5}}, "world.corridor_margin"),
    ({"world": {"sun_elevation_deg": 0.0}}, "world.sun_elevation_deg"),
    ({"path": {"min_altitude": 8.0, "max_altitude": 4.0}}, "path.max_altitude"),
    ({"path": {"wobble": 0.95}}, "path.wobble"),
    ({"camera": {"pitch_deg": 120.0}}, "camera.pitch_deg"),
    ({"frames": {"optical": ""}}, "frames.optical"),
    ({"width": "wide"}, "width"),
])
def test_bad_values_are_rejected_by_name(data, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_sim_config(data)
