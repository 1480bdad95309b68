"""Training configuration (``config/training/*.yaml``), strict like every config of the package."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from depth_ms.core.config import ConfigError, load_config, load_yaml

from .augment import AugmentConfig

FAMILIES = ("fast_depth", "marigold")


@dataclass
class DataConfig:
    """Where samples come from: bags (RGB + ground truth) or labeller dataset exports (folders)."""

    train: list[str] = field(default_factory=list)  # bag files, dataset folders or globs
    val: list[str] = field(default_factory=list)  # validation flights (held out from training)
    store_long_side: int = 320  # samples are kept in memory at most this large
    min_depth: float = 0.2  # ground truth outside (min, max) is invalid
    max_depth: float = 65.535
    min_valid: float = 0.05  # share of valid ground-truth pixels below which a sample is skipped
    val_frames: int = 0  # validate on at most this many of their frames, evenly spread (0 = all)

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train: expected at least one bag or dataset folder")
        if self.store_long_side < 32:
            raise ConfigError(f"data.store_long_side: expected >= 32, got {self.store_long_side}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(f"data.min_depth/max_depth: expected 0 < min < max, got {self.min_depth}, "
                              f"{self.max_depth}")


@dataclass
class CropStage:
    """From ``from_step`` on, train on ``width`` x ``height`` crops (multiples of 32)."""

    from_step: int = 0
    width: int = 128
    height: int = 96


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay; gradients clipped by global norm."""

    steps: int = 1000
    batch_size: int = 8  # per worker
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # global norm (0 = off)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"optim.steps and optim.batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0 < self.min_lr <= self.lr:
            raise ConfigError(f"optim: expected 0 < min_lr <= lr, got {self.min_lr}, {self.lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("optim: warmup_steps, grad_clip and weight_decay must be >= 0")


@dataclass
class LossConfig:
    """MiDaS' scale-and-shift-invariant loss: trimmed share, gradient-matching weight and scales."""

    trim: float = 0.2
    alpha: float = 0.5
    scales: int = 4

    def validate(self) -> None:
        if not 0 <= self.trim < 1 or self.alpha < 0 or self.scales < 1:
            raise ConfigError(f"loss: expected 0 <= trim < 1, alpha >= 0, scales >= 1, got {self}")


@dataclass
class ScheduleConfig:
    """How often to log, validate and checkpoint (steps)."""

    log_every: int = 10
    val_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # older step checkpoints are deleted (the final model is always kept)


class RecordedResolution:
    """For training configs whose model records the resolution it runs at: their ``resolution`` (training)
    and ``processing_resolution`` (recorded; 0 = ``resolution``) fields."""

    resolution: int
    processing_resolution: int

    def check_resolutions(self) -> None:
        """ConfigError naming the key unless ``resolution`` >= 32 and ``processing_resolution`` is 0 or >= 32."""
        if self.resolution < 32:
            raise ConfigError(f"resolution: expected >= 32, got {self.resolution}")
        if self.processing_resolution != 0 and self.processing_resolution < 32:
            raise ConfigError(f"processing_resolution: expected 0 or >= 32, got {self.processing_resolution}")

    def exported_resolution(self) -> int:
        """The resolution the exported model records: ``processing_resolution``, else ``resolution``."""
        return self.processing_resolution or self.resolution


@dataclass
class TrainConfig(RecordedResolution):
    """One training run: what to train, on which data, how."""

    family: str = "fast_depth"
    arch: Mapping[str, Any] = field(default_factory=dict)  # architecture fields (FastDepthArch)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    crops: list[CropStage] = field(default_factory=lambda: [CropStage()])
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    resolution: int = 128  # training scale, and where validation runs the network
    processing_resolution: int = 0  # the estimator's resize target, recorded in the weights; 0 = resolution
    output: str = "runs/train"  # run folder (checkpoints, log.csv, plot.png); relative to the working dir

    def validate(self) -> None:
        if self.family != "fast_depth":
            raise ConfigError(f"family: expected one of {', '.join(FAMILIES)}, got '{self.family}'")
        if not self.crops or self.crops[0].from_step != 0:
            raise ConfigError("crops: expected a list starting with from_step 0")
        steps = [c.from_step for c in self.crops]
        if steps != sorted(steps) or len(set(steps)) != len(steps):
            raise ConfigError(f"crops: from_step must increase, got {steps}")
        for crop in self.crops:
            if crop.width % 32 or crop.height % 32 or crop.width < 32 or crop.height < 32:
                raise ConfigError(f"crops: sides must be multiples of 32, got {crop.width}x{crop.height}")
        self.check_resolutions()

    def crop_at(self, step: int) -> CropStage:
        """The crop stage in force at ``step``."""
        return [c for c in self.crops if c.from_step <= step][-1]


def load_train_config(source: Union[str, Path, Mapping[str, Any]]):
    """The config of the YAML's (or mapping's) ``family``: TrainConfig for fast_depth, MarigoldTrainConfig for
    marigold; ConfigError names a bad key."""
    data = load_yaml(source) if not isinstance(source, Mapping) else source
    family = data.get("family", "fast_depth") if isinstance(data, Mapping) else "fast_depth"
    if family == "marigold":
        from .marigold_config import MarigoldTrainConfig

        return load_config(MarigoldTrainConfig, data)
    return load_config(TrainConfig, data)


__all__ = ["TrainConfig", "DataConfig", "OptimConfig", "LossConfig", "ScheduleConfig", "CropStage",
           "load_train_config"]
