"""Training of the Marigold family from scratch, in MindSpore: a VAE stage, then a UNet stage.

1. **VAE** (``vae/``): an AutoencoderKL fitted to the simulator's RGB and to normalised depth maps
   (:func:`~.diffusion.normalised_depth`, three channels), on random square crops: L1 reconstruction of
   posterior samples plus a small KL term; validated by the depth and the RGB round trip (:mod:`.vae_round_trip`).
2. **UNet** (``unet/``), as Marigold trains (Ke et al., CVPR 2024): the VAE frozen; every training frame,
   in ``unet.variants`` augmented copies at the processing size, is encoded once (posterior mean times the
   scaling factor, which is set so the latents have unit variance); each step draws latents, a DDPM timestep
   (uniform, or with ``timestep_focus`` partly from the trailing schedule the engine runs) and
   (multi-resolution) noise per sample, feeds concat(RGB latent, noisy depth latent) and the
   empty-prompt embedding to the 8-channel UNet, and regresses the v-prediction target (MSE).
   Validation runs the streaming engine itself (cold, ``unet.val_steps`` steps) on the validation flights.
3. **Fine-tuning** (``finetune/``, when configured): the UNet end to end through the frozen decoder
   (after Garcia Martin et al., WACV 2025): the clean-latent estimate of a step of the engine's cold sampler,
   from the latent that sampler reaches, is decoded and scored in depth (MiDaS' scale-and-shift-invariant
   loss, or AbsRel after the labeller's least-squares alignment), the v-prediction loss beside it.
4. **Export** (``model/``): the diffusers folder (:mod:`.marigold_folder`) the estimator loads.

Every stage uses the shared loop (:mod:`.loop`): one compiled step, AllReduce under ``msrun``, clipping,
AdamW with warm-up and cosine decay, checkpoints, ``--resume`` (per stage), CSV log and plot.
MindSpore's CPU kernels of the package (``DEPTH_MS_NATIVE_KERNELS``) have no backward: the CLI turns them off.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import checkpoints as ckpt
from . import marigold_folder as folder
from .augment import make_batch, signed_unit, step_rng
from .diffusion import multires_noise, noisy_and_velocity, normalised_depth
from .loop import StepTrainer, Workers, adamw, compiled_step, learning_rates
from .losses import aligned_depth_loss, least_squares_abs_rel_loss
from .marigold_config import MarigoldTrainConfig
from .samples import Sample, SampleSet
from .vae_round_trip import VAE_METADATA, depth_round_trip, posterior_mean, rgb_psnr, vae_factor
from .validation import spread, validate


def finetune_target(depth_loss: str, depth: np.ndarray, mask: np.ndarray, normalised: np.ndarray) -> np.ndarray:
    """(B, H, W) float16 the fine-tuning loss scores against, from metres ``depth`` (B, H, W), its 0/1 ``mask``
    and ``normalised`` (B, 3, H, W): depth over its valid median (0 where invalid) for
    ``least_squares_abs_rel`` (float16 holds its range), else the normalised depth."""
    if depth_loss == "normalised_l1":
        return normalised[:, 0].astype(np.float16)
    valid = mask > 0  # (B, H, W)
    out = np.zeros(depth.shape, np.float16)
    for b in range(len(depth)):
        if valid[b].any():
            out[b][valid[b]] = depth[b][valid[b]] / np.median(depth[b][valid[b]])
    return out


class VaeTrainer(StepTrainer):
    """Stage 1: the AutoencoderKL on RGB and depth crops."""

    name = "vae"

    def __init__(self, config: MarigoldTrainConfig, train: SampleSet, val: SampleSet, workers: Workers,
                 progress: bool = True, say: Callable[[str], None] = print) -> None:
        import mindspore as ms
        from mindspore import ops

        stage = config.vae
        super().__init__(ms, config, stage.optim, config.schedule, Path(config.output) / "vae", workers, progress, say)
        self.train_samples = train.samples
        self.val_samples = spread(val.samples, config.data.val_frames)
        self.net = folder.build_vae(stage.arch, config.seed)
        self.net.set_train(True)
        self.arch_metadata = {VAE_METADATA: json.dumps(folder.vae_config(stage.arch), sort_keys=True)}
        self.metadata = self.arch_metadata
        self.factor = vae_factor(self.net)
        self.lrs = learning_rates(stage.optim)
        self.optimizer = adamw(ms, self.net.trainable_params(), stage.optim, self.lrs)
        vae, latent_c, kl_weight = self.net, int(self.net.config.latent_channels), stage.kl_weight

        def forward(x, eps):  # x (B, 3, H, W) in [-1, 1]; eps (B, C, H/f, W/f)
            moments = vae.encode(x)[0]  # (B, 2C, h, w)
            mean, logvar = moments[:, :latent_c], ops.clamp(moments[:, latent_c:], -30.0, 20.0)
            z = mean + ops.exp(0.5 * logvar) * eps  # (B, C, h, w) posterior sample
            recon = vae.decode(z)[0]  # (B, 3, H, W)
            kl = 0.5 * (mean * mean + ops.exp(logvar) - 1.0 - logvar)  # (B, C, h, w)
            return ops.abs(recon - x).mean() + kl_weight * kl.sum(axis=(1, 2, 3)).mean()

        self.step_fn = compiled_step(ms, forward, self.optimizer, workers, stage.optim.grad_clip)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(images (B, 3, c, c) in [-1, 1], the last ``depth_share`` of them depth maps; noise (B, C, c/f, c/f))."""
        stage, crop = self.config.vae, self.config.vae.crop
        rng = step_rng(self.config.seed, step, self.workers.rank)
        size = stage.optim.batch_size
        indices = rng.choice(len(self.train_samples), size, replace=len(self.train_samples) < size)
        images, depth, mask = make_batch(self.train_samples, indices, crop, crop, self.config.augment, rng,
                                         signed_unit)
        depths = round(size * stage.depth_share)
        if depths:
            images[size - depths:] = normalised_depth(depth[size - depths:], mask[size - depths:])
        latent = (size, int(self.net.config.latent_channels), crop // self.factor, crop // self.factor)
        return images, rng.standard_normal(latent).astype(np.float32)

    def train_step(self) -> float:
        ms = self.ms
        images, eps = self.batch(self.step)
        loss = self.step_fn(ms.Tensor(images), ms.Tensor(eps))
        self.step += 1
        return float(loss.asnumpy())

    def validate(self) -> dict:
        if not self.val_samples:
            return {}
        d = self.config.data
        self.net.set_train(False)
        try:
            resolution = self.config.resolution
            metrics = validate(lambda s: depth_round_trip(self.net, s.depth, resolution), self.val_samples,
                               d.min_depth, d.max_depth, "depth")
            metrics["rgb_psnr"] = float(np.mean([rgb_psnr(self.net, s.rgb, resolution) for s in self.val_samples]))
            return metrics
        finally:
            self.net.set_train(True)


class UnetTrainer(StepTrainer):
    """Stage 2: the 8-channel UNet on latents of the frozen VAE, v-prediction."""

    name = "unet"

    def __init__(self, config: MarigoldTrainConfig, vae, context: np.ndarray, train: SampleSet, val: SampleSet,
                 workers: Workers, progress: bool = True, say: Callable[[str], None] = print) -> None:
        import mindspore as ms
        from mindspore import ops

        from depth_ms.models.marigold import schedulers

        stage = config.unet
        super().__init__(ms, config, stage.optim, config.schedule, Path(config.output) / "unet", workers, progress,
                         say)
        self.vae, self.context = vae, context  # context (1, tokens, hidden)
        self.vae.set_train(False)
        self.val_samples = spread(val.samples, config.data.val_frames)
        self.sampler = schedulers.from_config(folder.SCHEDULER)
        self.rgb_latents, self.depth_latents, self.scaling = self.encode_training_frames(train.samples)
        self.net = folder.build_unet(stage.arch, config.seed)
        self.net.set_train(True)
        self.arch_metadata = {"depth_ms.marigold_unet": json.dumps(folder.unet_config(stage.arch), sort_keys=True),
                              VAE_METADATA: json.dumps(folder.vae_config(config.vae.arch), sort_keys=True)}
        self.metadata = {**self.arch_metadata, "depth_ms.latent_scaling": f"{self.scaling:.9g}"}
        self.lrs = learning_rates(stage.optim)
        self.optimizer = adamw(ms, self.net.trainable_params(), stage.optim, self.lrs)
        unet = self.net

        def forward(x, t, text, velocity):  # x (B, 8, h, w); t (B,); text (B, tokens, hidden); velocity (B, 4, h, w)
            return ops.square(unet(x, t, text)[0] - velocity).mean()

        self.step_fn = compiled_step(ms, forward, self.optimizer, workers, stage.optim.grad_clip)
        self._engine = None

    def encode_training_frames(self, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, float]:
        """(RGB latents (N, C, h, w), depth latents (N, C, h, w), scaling factor): every frame in
        ``variants`` augmented copies, scaled to unit variance. With a fine-tuning stage configured, keeps the
        depth its loss scores in ``depth_targets`` (N, H, W) float16 (else None): the normalised depth of each
        copy, or for ``least_squares_abs_rel`` its depth over its median, 0 without ground truth."""
        from tqdm import tqdm

        ms, cfg = self.ms, self.config
        height, width = cfg.frame_size()
        chunk, rgb_out, depth_out, targets = 16, [], [], []
        vae = self.vae

        def encode_mean(x):
            return posterior_mean(vae, x)

        encode = ms.jit(encode_mean)
        jobs = [(v, start) for v in range(cfg.unet.variants) for start in range(0, len(samples), chunk)]
        for variant, start in tqdm(jobs, desc="encode", unit="batch", disable=not (self.progress and
                                                                                     self.workers.rank == 0)):
            rng = np.random.default_rng([cfg.seed, 1, variant, start])
            indices = np.arange(start, min(start + chunk, len(samples)))
            images, depth, mask = make_batch(samples, indices, height, width, cfg.augment, rng, signed_unit)
            rgb_out.append(encode(ms.Tensor(images)).asnumpy())  # (b, C, h, w)
            normalised = normalised_depth(depth, mask)  # (b, 3, H, W)
            depth_out.append(encode(ms.Tensor(normalised)).asnumpy())  # (b, C, h, w)
            if cfg.finetune is not None:
                targets.append(finetune_target(cfg.finetune.depth_loss, depth, mask, normalised))  # (b, H, W)
        rgb, depth = np.concatenate(rgb_out), np.concatenate(depth_out)  # (N, C, h, w)
        self.depth_targets = np.concatenate(targets) if targets else None  # (N, H, W)
        scaling = float(1.0 / np.concatenate([rgb.ravel(), depth.ravel()]).std())
        return rgb * scaling, depth * scaling, scaling

    def batch(self, step: int) -> tuple[np.ndarray, ...]:
        """(UNet input (B, 2C, h, w), timesteps (B,), text (B, tokens, hidden), v target (B, C, h, w))."""
        return self.velocity_batch(step_rng(self.config.seed, step, self.workers.rank),
                                   self.config.unet.optim.batch_size)

    def velocity_batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
        stage, count = self.config.unet, len(self.rgb_latents)
        indices = rng.choice(count, size, replace=count < size)
        train_steps = self.sampler.num_train_timesteps
        t = rng.integers(0, train_steps, size)  # (B,)
        focused = rng.random(size) < stage.timestep_focus  # (B,) these take a timestep the engine runs
        t = np.where(focused, rng.choice(self.sampler.timesteps(stage.val_steps), size), t)
        clean = self.depth_latents[indices]  # (B, C, h, w)
        noise = multires_noise(clean.shape, rng, stage.multires_noise, stage.multires_levels, t, train_steps)
        noisy, velocity = noisy_and_velocity(clean, noise, self.sampler.alphas_cumprod, t)
        x = np.concatenate([self.rgb_latents[indices], noisy], axis=1)  # (B, 2C, h, w)
        text = np.repeat(self.context, size, axis=0)  # (B, tokens, hidden)
        return x, t.astype(np.int64), text, velocity

    def train_step(self) -> float:
        ms = self.ms
        x, t, text, velocity = self.batch(self.step)
        loss = self.step_fn(ms.Tensor(x), ms.Tensor(t), ms.Tensor(text), ms.Tensor(velocity))
        self.step += 1
        return float(loss.asnumpy())

    def engine(self, steps: int = 0, **options):
        """The package's streaming engine on the modules being trained (cold ``steps`` by default)."""
        from depth_ms.models.marigold.checkpoint import CheckpointInfo, MarigoldParts
        from depth_ms.models.marigold.engine import EngineOptions, MarigoldEngine

        info = CheckpointInfo(path=str(self.output), prediction_type="depth", default_steps=self.config.unet.val_steps,
                              default_resolution=self.config.resolution, sampler=self.sampler, variants={},
                              vae_scale_factor=vae_factor(self.vae), latent_channels=int(self.vae.config.latent_channels),
                              scaling_factor=self.scaling)
        parts = MarigoldParts(info=info, unet=self.net, vae=self.vae, text_embedding=self.ms.Tensor(self.context))
        engine = MarigoldEngine(parts, EngineOptions(steps=steps, processing_resolution=self.config.resolution,
                                                     **options))
        self.net.set_train(True)  # the engine switched the shared modules to inference
        return engine

    def validate(self) -> dict:
        if not self.val_samples:
            return {}
        if self._engine is None:
            self._engine = self.engine()
        d = self.config.data
        self.net.set_train(False)
        try:
            return validate(lambda s: self._engine.run(s.rgb).depth, self.val_samples, d.min_depth, d.max_depth,
                            "depth")
        finally:
            self.net.set_train(True)

    def export(self, path: Path, text_source: Path) -> None:
        """Write the diffusers folder of the trained model to ``path``."""
        self.vae.register_to_config(scaling_factor=self.scaling)
        folder.write_folder(str(path), self.vae, self.net, str(text_source), self.config.exported_resolution(),
                            self.config.unet.val_steps)


class FinetuneTrainer(UnetTrainer):
    """Stage 3: the trained UNet fine-tuned end to end through the frozen decoder (see the module docstring)."""

    name = "finetune"

    def __init__(self, config: MarigoldTrainConfig, unet: UnetTrainer, workers: Workers, progress: bool = True,
                 say: Callable[[str], None] = print) -> None:
        import mindspore as ms
        from mindspore import ops

        stage = config.finetune
        StepTrainer.__init__(self, ms, config, stage.optim, config.schedule, Path(config.output) / "finetune",
                             workers, progress, say)
        self.vae, self.context, self.sampler, self.val_samples = unet.vae, unet.context, unet.sampler, unet.val_samples
        self.rgb_latents, self.depth_latents, self.scaling = unet.rgb_latents, unet.depth_latents, unet.scaling
        self.depth_targets = unet.depth_targets
        self.net, self.arch_metadata, self.metadata = unet.net, unet.arch_metadata, unet.metadata
        self.lrs = learning_rates(stage.optim)
        self.optimizer = adamw(ms, self.net.trainable_params(), stage.optim, self.lrs)
        self.timesteps = self.sampler.timesteps(config.unet.val_steps)  # (steps,) the cold sampler's timesteps
        net, vae, scaling, channels = self.net, self.vae, self.scaling, int(self.vae.config.latent_channels)
        size, weight = stage.optim.batch_size, stage.velocity_weight
        alpha_grad, scales = stage.gradient_weight, 4

        depth_loss = aligned_depth_loss if stage.depth_loss == "normalised_l1" else least_squares_abs_rel_loss

        def forward(x, t, text, velocity, target, x0_x, x0_out):
            # x (B + E, 2C, h, w); velocity (B, C, h, w); target (E, H, W); x0_x, x0_out (E, 1, 1, 1)
            out = net(x, t, text)[0]  # (B + E, C, h, w)
            loss = weight * ops.square(out[:size] - velocity).mean()
            clean = x0_x * x[size:, channels:] + x0_out * out[size:]  # (E, C, h, w) the step's clean estimate
            depth = vae.decode(clean / scaling)[0].mean(axis=1)  # (E, H, W)
            return loss + depth_loss(depth, target, alpha_grad, scales).mean()

        def predict(x, t, text):
            return net(x, t, text)[0]

        self.step_fn = compiled_step(ms, forward, self.optimizer, workers, stage.optim.grad_clip)
        self.predict = ms.jit(predict)
        self._engine = None

    def sampler_latents(self, rgb: np.ndarray, noise: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(E, C, h, w): the latent the cold sampler holds before its step ``index`` (E,), run from ``noise``
        with the UNet as it is now."""
        ms, text = self.ms, self.ms.Tensor(np.repeat(self.context, len(rgb), axis=0))  # (E, tokens, hidden)
        latent, reached = noise, noise.copy()  # (E, C, h, w)
        for step in range(int(index.max())):
            t = ms.Tensor(np.full(len(rgb), self.timesteps[step], np.int64))  # (E,)
            out = self.predict(ms.Tensor(np.concatenate([rgb, latent], axis=1)), t, text).asnumpy()  # (E, C, h, w)
            latent = self.sampler.step(out, self.timesteps, step, latent)
            reached[index == step + 1] = latent[index == step + 1]
        return reached

    def batch(self, step: int) -> tuple[np.ndarray, ...]:
        """The stage-2 batch with ``decoded_batch`` sampler samples appended, their depth targets and
        clean-estimate coefficients."""
        stage = self.config.finetune
        rng = np.random.default_rng([self.config.seed, 3, step, self.workers.rank])
        x, t, text, velocity = self.velocity_batch(rng, stage.optim.batch_size)
        count, extra = len(self.rgb_latents), stage.decoded_batch
        indices = rng.choice(count, extra, replace=count < extra)
        index = rng.integers(0, len(self.timesteps), extra) if stage.trajectory else np.zeros(extra, np.int64)  # (E,)
        rgb = self.rgb_latents[indices]  # (E, C, h, w)
        noise = rng.standard_normal(rgb.shape).astype(np.float32)  # (E, C, h, w)
        latent = self.sampler_latents(rgb, noise, index)  # (E, C, h, w)
        steps = [self.sampler.coefficients(self.timesteps, int(i)) for i in index]
        x0_x = np.array([c.x0_x for c in steps], np.float32).reshape(-1, 1, 1, 1)  # (E, 1, 1, 1)
        x0_out = np.array([c.x0_out for c in steps], np.float32).reshape(-1, 1, 1, 1)  # (E, 1, 1, 1)
        x = np.concatenate([x, np.concatenate([rgb, latent], axis=1)])  # (B + E, 2C, h, w)
        t = np.concatenate([t, self.timesteps[index]]).astype(np.int64)  # (B + E,)
        text = np.repeat(self.context, len(t), axis=0)  # (B + E, tokens, hidden)
        return x, t, text, velocity, self.depth_targets[indices].astype(np.float32), x0_x, x0_out

    def train_step(self) -> float:
        loss = self.step_fn(*(self.ms.Tensor(a) for a in self.batch(self.step)))
        self.step += 1
        return float(loss.asnumpy())


STAGES = ("vae", "unet", "finetune")  # in training order


class MarigoldTraining:
    """Every stage and the export, as ``rosrun depth_ms train`` runs them for ``family: marigold``."""

    def __init__(self, config: MarigoldTrainConfig, train: SampleSet, val: SampleSet,
                 workers: Optional[Workers] = None, progress: bool = True, say: Callable[[str], None] = print) -> None:
        if len(train) == 0:
            raise ValueError("no usable training samples")
        self.config, self.train, self.val = config, train, val
        self.workers, self.progress, self.say = workers or Workers(), progress, say
        self.output = Path(config.output)
        self.step = 0

    def _stage_resume(self, trainer: StepTrainer, resume: bool) -> bool:
        return resume and ckpt.latest_checkpoint(trainer.output) is not None

    def run(self, resume: bool = False, replica_log: Optional[Path] = None, until: Optional[str] = None,
            until_step: Optional[int] = None) -> dict:
        """Train the VAE, the UNet and the fine-tuning stage if any (each resumed from its own last checkpoint),
        then export ``model/``; with ``until`` ("vae" or "unet"), stop after that stage without exporting, with
        ``until_step`` too, at that step of it (checkpointed)."""
        if until not in (None, *STAGES[:-1]):
            raise ValueError(f"until: expected one of {STAGES[:-1]}, got {until!r}")
        if until_step is not None and until is None:
            raise ValueError("until_step: needs the stage (until) it stops in")
        cfg, rank = self.config, self.workers.rank
        if resume and ckpt.latest_checkpoint(self.output / "vae") is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint in {self.output / 'vae' / 'checkpoints'}")
        text = self.output / ("text" if rank == 0 else f".text.rank{rank}")
        if not (text / "tokenizer").is_dir():
            folder.write_text_parts(str(text), cfg.text_encoder, cfg.seed)
        context = folder.empty_prompt_context(str(text)).asnumpy()  # (1, tokens, hidden)

        def log_for(stage: str) -> Optional[Path]:
            return replica_log.with_name(f"{replica_log.name}.{stage}") if replica_log else None

        vae = VaeTrainer(cfg, self.train, self.val, self.workers, self.progress, self.say)
        metrics = vae.run(resume=self._stage_resume(vae, resume), replica_log=log_for("vae"),
                          stop_at=until_step if until == "vae" else None)
        if metrics.get("frames"):
            self.say(f"vae: validation depth round trip AbsRel {metrics['abs_rel']:.4f}, "
                     f"delta1 {metrics['delta1']:.4f}; RGB round trip PSNR {metrics['rgb_psnr']:.2f} dB")
        if until == "vae":
            self.step = vae.step
            return metrics
        last = UnetTrainer(cfg, vae.net, context, self.train, self.val, self.workers, self.progress, self.say)
        metrics = last.run(resume=self._stage_resume(last, resume), replica_log=log_for("unet"),
                           stop_at=until_step if until == "unet" else None)
        if until == "unet":
            self.step = last.step
            return metrics
        if cfg.finetune is not None:
            last = FinetuneTrainer(cfg, last, self.workers, self.progress, self.say)
            metrics = last.run(resume=self._stage_resume(last, resume), replica_log=log_for("finetune"))
        self.step = last.step
        if rank == 0:
            last.export(self.output / "model", text)
            self.say(f"marigold: diffusers folder {self.output / 'model'}")
        return metrics


__all__ = ["STAGES", "FinetuneTrainer", "MarigoldTraining", "UnetTrainer", "VaeTrainer"]
