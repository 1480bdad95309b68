"""The training loop of the MiDaS-family fast depth network, in MindSpore.

One compiled step (``ms.jit`` over ``value_and_grad``): forward, scale-and-shift-invariant loss, gradients
averaged over data-parallel workers (``nn.DistributedGradReducer``, an AllReduce, when started by
``msrun``), clipped by global norm, AdamW with linear warm-up and cosine decay. Batches are drawn from a
generator seeded by (seed, step, rank), so a resumed run continues with the batches an uninterrupted run
would have seen. Rank 0 validates on the validation flights, logs, plots and checkpoints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from depth_ms.core.config import from_dict
from depth_ms.models.midas import preprocess as pp
from depth_ms.models.midas.estimator import FastDepthOptions, build_preprocessing

from .augment import make_batch, step_rng
from .config import TrainConfig
from .loop import StepTrainer, Workers, adamw, compiled_step, learning_rates
from .samples import SampleSet
from .validation import spread, validate


class FastDepthTrainer(StepTrainer):
    """Trains :class:`~depth_ms.models.midas.fast_net.FastDepthNet` as ``config`` says."""

    def __init__(self, config: TrainConfig, train: SampleSet, val: SampleSet, workers: Optional[Workers] = None,
                 progress: bool = True, say: Callable[[str], None] = print) -> None:
        if len(train) == 0:
            raise ValueError("no usable training samples")
        import mindspore as ms

        from depth_ms.models.midas.fast_net import FastDepthArch, FastDepthNet, arch_metadata, resolution_metadata

        from .losses import ScaleShiftInvariantLoss

        super().__init__(ms, config, config.optim, config.schedule, Path(config.output), workers or Workers(),
                         progress, say)
        self.train_samples = train.samples
        self.val_samples = spread(val.samples, config.data.val_frames)
        self.arch = from_dict(FastDepthArch, dict(config.arch), "arch")
        self.arch_metadata = arch_metadata(self.arch)
        self.metadata = {**self.arch_metadata, **resolution_metadata(config.exported_resolution())}
        self.preprocessing = build_preprocessing("midas", FastDepthOptions(resolution=config.resolution))
        self.net = FastDepthNet(self.arch, seed=config.seed)
        self.net.set_train(True)
        self.lrs = learning_rates(config.optim)
        self.optimizer = adamw(ms, self.net.trainable_params(), config.optim, self.lrs)
        loss_fn = ScaleShiftInvariantLoss(config.loss.trim, config.loss.alpha, config.loss.scales)
        net = self.net

        def forward(x, depth, mask):
            return loss_fn(net(x), depth, mask)

        self.step_fn = compiled_step(ms, forward, self.optimizer, self.workers, config.optim.grad_clip)

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
        if not self.val_samples:
            return {}
        return validate(lambda s: self.predict(s.rgb), self.val_samples, d.min_depth, d.max_depth)

__all__ = ["FastDepthTrainer", "Workers", "learning_rates"]
