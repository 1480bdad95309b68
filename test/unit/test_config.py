from dataclasses import dataclass, field

import pytest

from depth_ms.core.config import ConfigError, from_dict, load_yaml, to_dict
from depth_ms.core.node_config import DepthNodeConfig


@dataclass
class Inner:
    size: tuple[int, int] = (1, 2)


@dataclass
class Outer:
    name: str = "x"
    rate: float = 1.0
    inner: Inner = field(default_factory=Inner)


def test_unknown_keys_are_named_with_their_path():
    with pytest.raises(ConfigError, match=r"'colour'"):
        from_dict(Outer, {"colour": 1})
    with pytest.raises(ConfigError, match=r"in 'inner'.*'sise'"):
        from_dict(Outer, {"inner": {"sise": [1, 2]}})


def test_types_are_checked_and_coerced():
    cfg = from_dict(Outer, {"rate": 3, "inner": {"size": [4, 5]}})
    assert cfg.rate == 3.0 and isinstance(cfg.rate, float) and cfg.inner.size == (4, 5)
    with pytest.raises(ConfigError, match="rate: expected a number"):
        from_dict(Outer, {"rate": "fast"})
    with pytest.raises(ConfigError, match=r"inner.size: expected 2 items"):
        from_dict(Outer, {"inner": {"size": [1]}})
    assert to_dict(cfg) == {"name": "x", "rate": 3.0, "inner": {"size": [4, 5]}}


def test_node_config_file_loads_and_validates(tmp_path):
    import pathlib
    shipped = pathlib.Path(__file__).parents[2] / "config" / "depth_node.yaml"
    cfg = from_dict(DepthNodeConfig, load_yaml(shipped))
    assert cfg.cloud_stride == 1 and cfg.metric_color_range == (0.5, 40.0)
    with pytest.raises(ConfigError, match="output_scale"):
        from_dict(DepthNodeConfig, {"output_scale": 0.0})
    with pytest.raises(ConfigError, match="device.*'tpu'"):
        from_dict(DepthNodeConfig, {"device": "tpu"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
