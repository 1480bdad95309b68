"""Where model weights live on disk: one directory, never a model hub, plus the models the package ships.

Resolution order for a model: an explicit path; else its official release in ``$DEPTH_MS_WEIGHTS``
(default ``~/.cache/depth_ms/weights``), named as the release is (docs/models.md lists them); else the model
the package trained on its own simulator and ships in ``depth_ms/models/shipped/`` (``config/training``
and ``scripts/retrain.sh`` reproduce it). Nothing here downloads anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .base import EstimatorError

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shipped")
# model -> file or folder name in SHIPPED_DIR (trained by the package on simulator flights)
SHIPPED_NAMES = {
    "midas": "fast_depth_sim.safetensors",
    "marigold": "marigold_sim",
}

# model -> file or folder name inside the weights directory (the official release names)
DEFAULT_NAMES = {
    "marigold": "marigold-depth-v1-1",
    "marigold_lcm": "marigold-depth-lcm-v1-0",
    "taesd": "taesd",
    "midas": "midas_v21_small_256.safetensors",
    "dpt_hybrid": "dpt-hybrid-midas",
    "dpt_large": "dpt-large",
    "depth_anything_v2_small": "Depth-Anything-V2-Small-hf",
}


def weights_dir() -> str:
    """The weights directory (``$DEPTH_MS_WEIGHTS`` or ``~/.cache/depth_ms/weights``)."""
    return os.path.expanduser(os.environ.get("DEPTH_MS_WEIGHTS") or "~/.cache/depth_ms/weights")


def resolve(path: str, model: str) -> str:
    """``path`` with ``~`` expanded, or the default location of ``model`` when ``path`` is empty."""
    if path:
        return os.path.expanduser(path)
    if model not in DEFAULT_NAMES:
        raise EstimatorError(f"no default weights for '{model}': give a path")
    return os.path.join(weights_dir(), DEFAULT_NAMES[model])


def require(path: str, what: str) -> str:
    """``path`` if it exists, else an EstimatorError naming it and saying how to get it."""
    if not os.path.exists(path):
        raise EstimatorError(f"{what} not found: {path} (no download at run time: put the official files "
                             f"there, or set DEPTH_MS_WEIGHTS / the estimator's weights option; see docs/models.md, "
                             f"'Model weights')")
    return path


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights path and where it came from: 'explicit', 'official' or 'shipped'."""

    path: str
    source: str

    def describe(self) -> str:
        return f"{self.source}: {self.path}"


def shipped(model: str) -> str:
    """Path of the model the package ships for ``model`` ("" when it ships none)."""
    name = SHIPPED_NAMES.get(model)
    return os.path.join(SHIPPED_DIR, name) if name else ""


def locate(path: str, model: str, what: str) -> ResolvedWeights:
    """The weights to load: ``path`` if given, else the official release, else the shipped model.

    EstimatorError names every place looked at when none exists.
    """
    if path:
        return ResolvedWeights(require(os.path.expanduser(path), what), "explicit")
    official = resolve("", model)
    if os.path.exists(official):
        return ResolvedWeights(official, "official")
    own = shipped(model)
    if own and os.path.exists(own):
        return ResolvedWeights(own, "shipped")
    raise EstimatorError(f"{what} not found: {official}" + (f" nor the shipped model {own}" if own else "")
                         + " (no download at run time: put the official files there, or set DEPTH_MS_WEIGHTS / "
                           "the estimator's weights option; see docs/models.md, 'Model weights')")


def main(argv: list[str] | None = None) -> int:
    """``python -m depth_ms.models.weights MODEL [PATH]``: print which weights MODEL would run; 1 when none."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        print(locate(args[1] if len(args) > 1 else "", args[0], f"{args[0]} weights").describe())
    except EstimatorError as exc:
        print(exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
