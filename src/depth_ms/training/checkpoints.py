"""Checkpoints of a run: ``checkpoints/step_NNNNNN/`` holding

- ``model.safetensors``: every network parameter (running BatchNorm statistics included) with the
  architecture in its metadata, loadable by the estimator as it is;
- ``optimizer.safetensors``: AdamW moments and the step, for ``--resume``;
- ``config.yaml``: the training config that built the network.

A checkpoint is written into a temporary folder and renamed when complete, so a crash or a full disk never
leaves a half-written checkpoint under a final name.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import yaml

from depth_ms.core.config import to_dict

from .config import TrainConfig

STEP_FOLDER = re.compile(r"^step_(\d{6,})$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the run; the message names it."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, permissions); earlier ones are untouched."""


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=dict(metadata))


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    tensors = {}
    try:
        with safe_open(str(path), "numpy") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as e:  # noqa: BLE001 - any parse error is a bad file
        raise CheckpointError(f"cannot read {path}: {e}") from e
    return tensors, metadata


def save_checkpoint(folder: Path, step: int, model: Mapping[str, np.ndarray], model_metadata: Mapping[str, str],
                    optimizer: Mapping[str, np.ndarray], config: TrainConfig) -> Path:
    """Write ``folder/checkpoints/step_<step>`` atomically; returns its path."""
    root = Path(folder) / "checkpoints"
    final = root / f"step_{step:06d}"
    temporary = root / f".step_{step:06d}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        write_safetensors(temporary / "model.safetensors", model, model_metadata)
        write_safetensors(temporary / "optimizer.safetensors", optimizer, {"step": str(step)})
        (temporary / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
    except OSError as e:
        shutil.rmtree(temporary, ignore_errors=True)
        raise CheckpointWriteError(f"cannot write checkpoint {final} ({e.strerror or e}); "
                              f"earlier checkpoints are untouched") from e
    return final


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(folder) / "checkpoints"
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        match = STEP_FOLDER.match(path.name)
        if match and (path / "model.safetensors").is_file() and (path / "optimizer.safetensors").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Optional[tuple[int, Path]]:
    found = checkpoints(folder)
    return found[-1] if found else None


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for _, path in checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def check_same_architecture(path: Path, metadata: Mapping[str, str], expected: Mapping[str, str]) -> None:
    """CheckpointError unless the checkpoint's architecture metadata equals the run's."""
    for key, value in expected.items():
        if metadata.get(key) != value:
            raise CheckpointError(f"{path} holds another architecture than this config builds: "
                                  f"{metadata.get(key, 'none recorded')} vs {value} ({key}); "
                                  f"resume with the config it was trained with")


__all__ = ["CheckpointError", "CheckpointWriteError", "checkpoints", "check_same_architecture", "latest_checkpoint",
           "prune", "read_safetensors", "save_checkpoint", "write_safetensors"]
