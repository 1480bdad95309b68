"""The loop every trainer of the package shares: steps, logging, validation, checkpoints and ``--resume``.

A subclass builds ``net`` (the trained Cell), ``optimizer`` (AdamWeightDecay), ``lrs`` and a compiled step,
and implements :meth:`StepTrainer.train_step` and :meth:`StepTrainer.validate`. Rank 0 validates, logs
(CSV + plot), checkpoints and prunes; every rank can write a replica checksum per step.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from . import checkpoints as ckpt
from .config import OptimConfig, ScheduleConfig
from .progress_log import ProgressLog


def learning_rates(optim: OptimConfig) -> np.ndarray:
    """(steps,) float32: linear warm-up to ``lr``, then cosine decay to ``min_lr``."""
    o = optim
    steps = np.arange(o.steps, dtype=np.float64)
    warm = np.minimum((steps + 1) / max(o.warmup_steps, 1), 1.0)
    progress = np.clip((steps - o.warmup_steps) / max(o.steps - o.warmup_steps, 1), 0.0, 1.0)
    cosine = o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + np.cos(math.pi * progress))
    return np.where(steps < o.warmup_steps, o.lr * warm, cosine).astype(np.float32)


@dataclass
class Workers:
    """This process's place among data-parallel workers (rank 0 of 1 without msrun)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def from_environment(cls) -> "Workers":
        """Join the msrun group when started by msrun (``MS_WORKER_NUM`` set), else a single worker."""
        if int(os.environ.get("MS_WORKER_NUM", "1")) <= 1:
            return cls()
        from mindspore.communication import get_group_size, get_rank, init

        init()
        return cls(get_rank(), get_group_size())


def compiled_step(ms, loss_fn: Callable, optimizer, workers: Workers, clip: float) -> Callable:
    """``ms.jit`` step: loss and gradients of ``loss_fn(*inputs)``, averaged over workers (AllReduce),
    clipped by global norm, applied by ``optimizer``; returns the (worker-mean) loss."""
    from mindspore import nn, ops

    grad_fn = ms.value_and_grad(loss_fn, None, optimizer.parameters)
    reducer = nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=workers.size) \
        if workers.size > 1 else None
    all_reduce = ops.AllReduce() if workers.size > 1 else None
    size = float(workers.size)

    def step(*inputs):
        loss, grads = grad_fn(*inputs)
        if reducer is not None:
            grads = reducer(grads)
            loss = all_reduce(loss) / size
        if clip > 0:
            grads = ops.clip_by_global_norm(grads, clip)
        optimizer(grads)
        return loss

    return ms.jit(step)


def adamw(ms, params: list, optim: OptimConfig, lrs: np.ndarray):
    """AdamWeightDecay over ``params``: weight decay on weights (ndim > 1), none on biases and norms."""
    from mindspore import nn

    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": optim.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return nn.AdamWeightDecay(groups, learning_rate=ms.Tensor(lrs))


class StepTrainer:
    """Shared state and loop; see the module docstring for what a subclass provides."""

    name = "train"
    net = optimizer = None
    lrs: np.ndarray
    metadata: Mapping[str, str] = {}
    arch_metadata: Mapping[str, str] = {}

    def __init__(self, ms, config, optim: OptimConfig, schedule: ScheduleConfig, output: Path, workers: Workers,
                 progress: bool, say: Callable[[str], None]) -> None:
        self.ms, self.config, self.optim, self.schedule = ms, config, optim, schedule
        self.output, self.workers, self.progress, self.say = Path(output), workers, progress, say
        self.step = 0

    def train_step(self) -> float:
        raise NotImplementedError

    def validate(self) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def model_tensors(self) -> dict[str, np.ndarray]:
        return {name: p.asnumpy() for name, p in self.net.parameters_and_names()}

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        tensors = {f"moment1.{p.name}": p.asnumpy() for p in self.optimizer.moments1}
        tensors.update({f"moment2.{p.name}": p.asnumpy() for p in self.optimizer.moments2})
        tensors["global_step"] = np.array([self.step], np.int64)
        return tensors

    def load(self, folder: Path) -> int:
        """Restore weights, AdamW state and step from a checkpoint folder; returns the step."""
        ms = self.ms
        model, metadata = ckpt.read_safetensors(folder / "model.safetensors")
        ckpt.check_same_architecture(folder, metadata, self.arch_metadata)
        state, _ = ckpt.read_safetensors(folder / "optimizer.safetensors")
        params = dict(self.net.parameters_and_names())
        missing = sorted(set(params) - set(model)) + sorted(f"moment1.{p.name}" for p in self.optimizer.moments1
                                                           if f"moment1.{p.name}" not in state)
        if missing:
            raise ckpt.CheckpointError(f"{folder} lacks {len(missing)} tensors of this network, e.g. {missing[:3]}")
        for name, param in params.items():
            param.set_data(ms.Tensor(model[name]))
        for moments, prefix in ((self.optimizer.moments1, "moment1"), (self.optimizer.moments2, "moment2")):
            for p in moments:
                p.set_data(ms.Tensor(state[f"{prefix}.{p.name}"]))
        self.step = int(state["global_step"][0])
        self.optimizer.global_step.set_data(ms.Tensor([self.step], ms.int32))
        return self.step

    def save(self) -> Path:
        path = ckpt.save_checkpoint(self.output, self.step, self.model_tensors(), self.metadata,
                                    self.optimizer_tensors(), self.config)
        ckpt.prune(self.output, self.schedule.keep_checkpoints)
        return path

    def parameter_checksum(self) -> float:
        """Sum of every trainable parameter (float64): equal on every worker when the replicas agree."""
        return float(sum(p.asnumpy().astype(np.float64).sum() for p in self.net.trainable_params()))

    def run(self, resume: bool = False, replica_log: Optional[Path] = None, stop_at: Optional[int] = None) -> dict:
        """Train to ``optim.steps`` (or stop at step ``stop_at`` with a checkpoint, for a later ``resume``);
        returns the last validation metrics (rank 0)."""
        lead = self.workers.rank == 0
        if resume:
            found = ckpt.latest_checkpoint(self.output)
            if found is None:
                raise ckpt.CheckpointError(f"--resume: no checkpoint in {self.output / 'checkpoints'}")
            self.load(found[1])
            self.say(f"resumed from {found[1]} at step {self.step}")
        if lead:
            self.output.mkdir(parents=True, exist_ok=True)
        log = ProgressLog(self.output / "log.csv", self.step if resume else None) if lead else None
        replicas = replica_log.open("a" if resume else "w") if replica_log else None
        from tqdm import tqdm

        bar = tqdm(total=self.optim.steps, initial=self.step, desc=self.name, unit="step",
                   disable=not (self.progress and lead))
        metrics: dict = {}
        window_start, window_images = time.perf_counter(), 0
        try:
            end = self.optim.steps if stop_at is None else min(stop_at, self.optim.steps)
            while self.step < end:
                loss = self.train_step()
                window_images += self.optim.batch_size * self.workers.size
                bar.update(1)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {self.step}")
                if replicas is not None:
                    replicas.write(f"{self.step},{self.parameter_checksum():.17g}\n")
                    replicas.flush()
                if not lead:
                    continue
                row = {}
                if self.step % self.schedule.log_every == 0 or self.step == self.optim.steps:
                    elapsed = time.perf_counter() - window_start
                    row.update(lr=f"{self.lrs[self.step - 1]:.3e}", loss=f"{loss:.5f}",
                               images_per_s=f"{window_images / max(elapsed, 1e-9):.2f}")
                    bar.set_postfix(loss=f"{loss:.4f}")
                    window_start, window_images = time.perf_counter(), 0
                if self.step % self.schedule.val_every == 0 or self.step == self.optim.steps:
                    metrics = self.validate()
                    if metrics.get("frames"):
                        row.update(val_abs_rel=f"{metrics['abs_rel']:.5f}", val_delta1=f"{metrics['delta1']:.5f}")
                        rgb = f", RGB round trip {metrics['rgb_psnr']:.2f} dB" if "rgb_psnr" in metrics else ""
                        bar.write(f"step {self.step}: validation AbsRel {metrics['abs_rel']:.4f}, "
                                  f"delta1 {metrics['delta1']:.4f}{rgb} ({metrics['frames']} frames)")
                    window_start, window_images = time.perf_counter(), 0
                if row:
                    log.add(step=self.step, **row)
                if self.step % self.schedule.checkpoint_every == 0 or self.step in (end, self.optim.steps):
                    self.save()
                    log.plot(self.output / "plot.png")
                    window_start, window_images = time.perf_counter(), 0
        finally:
            bar.close()
            if replicas is not None:
                replicas.close()
        return metrics


__all__ = ["StepTrainer", "Workers", "adamw", "compiled_step", "learning_rates"]
