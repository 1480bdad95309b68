"""Name -> estimator factory, imported lazily so choosing one model never imports another's framework."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from .base import DepthEstimator, EstimatorError

# name -> "module:factory"; a factory takes (options mapping, device, mode) and returns a DepthEstimator.
_FACTORIES: dict[str, str] = {
    "oracle": "depth_ms.models.oracle:create",
    "marigold": "depth_ms.models.marigold.estimator:create",
    "marigold_lcm": "depth_ms.models.marigold.estimator:create_lcm",
    "midas": "depth_ms.models.midas.estimator:create_midas_small",
    "dpt_hybrid": "depth_ms.models.midas.estimator:create_dpt_hybrid",
    "dpt_large": "depth_ms.models.midas.estimator:create_dpt_large",
    "depth_anything_v2_small": "depth_ms.models.midas.estimator:create_depth_anything_v2_small",
}


def register(name: str, target: str | Callable[..., DepthEstimator]) -> None:
    """Add an estimator: ``target`` is "module:function" (imported on first use) or a callable."""
    _FACTORIES[name] = target  # type: ignore[assignment]


def available() -> list[str]:
    """Registered estimator names."""
    return sorted(_FACTORIES)


def create(name: str, options: Mapping[str, Any] | None = None, device: str = "cpu",
           mode: str = "pynative") -> DepthEstimator:
    """Build the estimator ``name`` with ``options`` on ``device`` in ``mode``.

    Unknown names are listed in the error.
    """
    if name not in _FACTORIES:
        raise EstimatorError(f"unknown model '{name}'; available: {', '.join(available())}")
    target = _FACTORIES[name]
    if isinstance(target, str):
        module_name, _, function_name = target.partition(":")
        factory = getattr(importlib.import_module(module_name), function_name)
    else:
        factory = target
    return factory(dict(options or {}), device=device, mode=mode)
