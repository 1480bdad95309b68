"""Every registered model has a config/models/<model>.yaml that its options class accepts (no weights needed)."""
from pathlib import Path

import pytest

from depth_ms.core.config import from_dict, load_yaml
from depth_ms.models import registry

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {
    "oracle": "depth_ms.models.oracle:OracleOptions",
    "marigold": "depth_ms.models.marigold.estimator:MarigoldOptions",
    "marigold_lcm": "depth_ms.models.marigold.estimator:MarigoldOptions",
    "midas": "depth_ms.models.midas.estimator:FastDepthOptions",
    "dpt_hybrid": "depth_ms.models.midas.estimator:FastDepthOptions",
    "dpt_large": "depth_ms.models.midas.estimator:FastDepthOptions",
    "depth_anything_v2_small": "depth_ms.models.midas.estimator:FastDepthOptions",
}


def test_one_config_file_per_registered_model():
    files = {p.stem for p in (ROOT / "config" / "models").glob("*.yaml")}
    assert files == set(registry.available()) == set(OPTIONS)


@pytest.mark.parametrize("model", sorted(OPTIONS))
def test_config_file_parses_strictly(model):
    import importlib

    module, _, cls = OPTIONS[model].partition(":")
    options_class = getattr(importlib.import_module(module), cls)
    options = from_dict(options_class, load_yaml(ROOT / "config" / "models" / f"{model}.yaml"), "estimator")
    assert options is not None
