"""The training loop of the MiDaS-family fast depth network, in MindSpore.

One compiled step (``ms.jit`` over ``value_and_grad``): forward, scale-and-shift-invariant loss, gradients
averaged over data-parallel workers (``nn.DistributedGradReducer``, an AllReduce, when started by
``msrun``), clipped by global norm, AdamW with linear warm-up and cosine decay. Batches are drawn from a
generator seeded by (seed, step, rank), so a resumed run continues with the batches an uninterrupted run
would have seen. Rank 0 validates on the held-out flights, logs, plots and checkpoints.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from depth_ms.core.config import from_dict
from depth_ms.models.midas import preprocess as pp
from depth_ms.models.midas.estimator import FastDepthOptions, build_preprocessing

from . import checkpoints as ckpt
from .augment import make_batch, step_rng
from .config import TrainConfig
from .progress_log import ProgressLog
from .samples import SampleSet
from .validation import spread, validate


def learning_rates(config: TrainConfig) -> np.ndarray:
    """(steps,) float32: linear warm-up to ``lr``, then cosine decay to ``min_lr``."""
    o = config.optim
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


class FastDepthTrainer:
    """Trains :class:`~depth_ms.models.midas.fast_net.FastDepthNet` as ``config`` says."""

    def __init__(self, config: TrainConfig, train: SampleSet, val: SampleSet, workers: Optional[Workers] = None,
                 progress: bool = True, say: Callable[[str], None] = print) -> None:
        if len(train) == 0:
            raise ValueError("no usable training samples")
        import mindspore as ms
        from mindspore import nn, ops

        from depth_ms.models.midas.fast_net import FastDepthArch, FastDepthNet, arch_metadata, resolution_metadata

        from .losses import ScaleShiftInvariantLoss

        workers = workers or Workers()
        self.ms, self.config, self.workers, self.progress, self.say = ms, config, workers, progress, say
        self.train_samples = train.samples
        self.val_samples = spread(val.samples, config.data.val_frames)
        self.output = Path(config.output)
        self.arch = from_dict(FastDepthArch, dict(config.arch), "arch")
        self.arch_metadata = arch_metadata(self.arch)
        self.metadata = {**self.arch_metadata, **resolution_metadata(config.resolution)}
        self.preprocessing = build_preprocessing("midas", FastDepthOptions(resolution=config.resolution))
        self.net = FastDepthNet(self.arch, seed=config.seed)
        self.net.set_train(True)
        params = self.net.trainable_params()
        decay = [p for p in params if p.ndim > 1]  # convolution weights; not BatchNorm or biases
        groups = [{"params": decay, "weight_decay": config.optim.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        self.lrs = learning_rates(config)
        self.optimizer = nn.AdamWeightDecay(groups, learning_rate=ms.Tensor(self.lrs))
        loss_fn = ScaleShiftInvariantLoss(config.loss.trim, config.loss.alpha, config.loss.scales)
        net, optimizer, clip = self.net, self.optimizer, config.optim.grad_clip

        def forward(x, depth, mask):
            return loss_fn(net(x), depth, mask)

        grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)
        reducer = nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=workers.size) \
            if workers.size > 1 else None
        all_reduce = ops.AllReduce() if workers.size > 1 else None
        size = float(workers.size)

        def step(x, depth, mask):
            loss, grads = grad_fn(x, depth, mask)
            if reducer is not None:
                grads = reducer(grads)
                loss = all_reduce(loss) / size
            if clip > 0:
                grads = ops.clip_by_global_norm(grads, clip)
            optimizer(grads)
            return loss

        self.step_fn = ms.jit(step)
        self.step = 0

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
        ckpt.prune(self.output, self.config.schedule.keep_checkpoints)
        return path

    # ------------------------------------------------------------------ running
    def batch(self, step: int):
        crop = self.config.crop_at(step)
        rng = step_rng(self.config.seed, step, self.workers.rank)
        indices = rng.choice(len(self.train_samples), self.config.optim.batch_size,
                             replace=len(self.train_samples) < self.config.optim.batch_size)
        return make_batch(self.train_samples, indices, crop.height, crop.width, self.config.augment, rng)

    def train_step(self) -> float:
        """One optimisation step; returns the loss (mean over workers)."""
        ms = self.ms
        images, depth, mask = self.batch(self.step)
        loss = self.step_fn(ms.Tensor(images), ms.Tensor(depth), ms.Tensor(mask))
        self.step += 1
        return float(loss.asnumpy())

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Disparity (H, W) of one uint8 frame through the estimator's own pre- and post-processing
        (at ``resolution``), with running BatchNorm statistics."""
        x = pp.preprocess(rgb, self.preprocessing)  # (1, 3, h, w)
        self.net.set_train(False)
        try:
            out = self.net(self.ms.Tensor(x)).asnumpy()[0]  # (h, w)
        finally:
            self.net.set_train(True)
        return pp.upsample_prediction(out, rgb.shape[0], rgb.shape[1], self.preprocessing.upsample)  # (H, W)

    def validate(self) -> dict:
        d = self.config.data
        return validate(self.predict, self.val_samples, d.min_depth, d.max_depth) if self.val_samples else {}

    def parameter_checksum(self) -> float:
        """Sum of every trainable parameter (float64): equal on every worker when the replicas agree."""
        return float(sum(p.asnumpy().astype(np.float64).sum() for p in self.net.trainable_params()))

    def run(self, resume: bool = False, replica_log: Optional[Path] = None) -> dict:
        """Train to ``optim.steps``; returns the last validation metrics (rank 0)."""
        config, lead = self.config, self.workers.rank == 0
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

        bar = tqdm(total=config.optim.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and lead))
        metrics: dict = {}
        window_start, window_images = time.perf_counter(), 0
        try:
            while self.step < config.optim.steps:
                loss = self.train_step()
                window_images += config.optim.batch_size * self.workers.size
                bar.update(1)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {self.step}")
                if replicas is not None:
                    replicas.write(f"{self.step},{self.parameter_checksum():.17g}\n")
                    replicas.flush()
                if not lead:
                    continue
                row = {}
                if self.step % config.schedule.log_every == 0 or self.step == config.optim.steps:
                    elapsed = time.perf_counter() - window_start
                    row.update(lr=f"{self.lrs[self.step - 1]:.3e}", loss=f"{loss:.5f}",
                               images_per_s=f"{window_images / max(elapsed, 1e-9):.2f}")
                    bar.set_postfix(loss=f"{loss:.4f}")
                    window_start, window_images = time.perf_counter(), 0
                if self.step % config.schedule.val_every == 0 or self.step == config.optim.steps:
                    metrics = self.validate()
                    if metrics.get("frames"):
                        row.update(val_abs_rel=f"{metrics['abs_rel']:.5f}", val_delta1=f"{metrics['delta1']:.5f}")
                        bar.write(f"step {self.step}: held-out AbsRel {metrics['abs_rel']:.4f}, "
                                  f"delta1 {metrics['delta1']:.4f} ({metrics['frames']} frames)")
                    window_start, window_images = time.perf_counter(), 0
                if row:
                    log.add(step=self.step, **row)
                if self.step % config.schedule.checkpoint_every == 0 or self.step == config.optim.steps:
                    self.save()
                    log.plot(self.output / "plot.png")
                    window_start, window_images = time.perf_counter(), 0
        finally:
            bar.close()
            if replicas is not None:
                replicas.close()
        return metrics


__all__ = ["FastDepthTrainer", "Workers", "learning_rates"]
