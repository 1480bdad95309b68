"""DDIM and LCM sampling as pure maths on numpy arrays (no framework, no state between calls).

Marigold checkpoints carry a diffusers ``scheduler_config.json``; :func:`from_config` reads it and
returns a :class:`Sampler` whose ``timesteps(n)`` and ``step(...)`` reproduce diffusers'
``DDIMScheduler`` (eta = 0) and ``LCMScheduler`` for the options the published checkpoints use. Only
coefficients are computed here; the engine applies them to framework tensors, so the same code serves
MindSpore and the tests. Written here rather than taken from diffusers because diffusers needs
PyTorch, which the product never imports.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SPACINGS = ("leading", "trailing", "linspace")
KINDS = {"DDIMScheduler": "ddim", "LCMScheduler": "lcm"}


class SchedulerConfigError(ValueError):
    """A scheduler config this module cannot reproduce; the message names the key."""


@dataclass(frozen=True)
class StepCoefficients:
    """One update ``x_prev = a * x + b * model_output (+ c * noise)`` and its clean estimate.

    ``x0 = x0_x * x + x0_out * model_output``; ``c`` is non-zero only for LCM steps before the last.
    """

    timestep: int
    x0_x: float
    x0_out: float
    a: float
    b: float
    c: float = 0.0


@dataclass
class Sampler:
    """Timestep schedule and step coefficients of one scheduler config."""

    kind: str  # "ddim" | "lcm"
    prediction_type: str
    alphas_cumprod: np.ndarray  # (num_train_timesteps,) float64
    final_alpha_cumprod: float
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    original_inference_steps: int = 50
    timestep_scaling: float = 10.0
    config: dict = field(default_factory=dict)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def timesteps(self, steps: int) -> np.ndarray:
        """The ``steps`` descending training timesteps visited (diffusers' ``set_timesteps``)."""
        n_train = self.num_train_timesteps
        if not 1 <= steps <= n_train:
            raise ValueError(f"steps must be in 1..{n_train}, got {steps}")
        if self.kind == "lcm":
            if steps > self.original_inference_steps:
                raise ValueError(f"LCM takes at most original_inference_steps={self.original_inference_steps} "
                                 f"steps, got {steps}")
            k = n_train // self.original_inference_steps
            origin = (np.arange(1, self.original_inference_steps + 1) * k - 1)[::-1]  # (original_steps,)
            return origin[np.floor(np.linspace(0, len(origin), steps, endpoint=False)).astype(np.int64)]
        if self.timestep_spacing == "linspace":
            return np.linspace(0, n_train - 1, steps).round()[::-1].astype(np.int64)
        if self.timestep_spacing == "leading":
            ratio = n_train // steps
            return (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64) + self.steps_offset
        return np.round(np.arange(n_train, 0, -n_train / steps)).astype(np.int64) - 1  # trailing

    def previous_timestep(self, timesteps: np.ndarray, index: int) -> int:
        """The timestep a step from ``timesteps[index]`` lands on (-1: the clean end)."""
        if self.kind == "lcm":
            return int(timesteps[index + 1]) if index + 1 < len(timesteps) else int(timesteps[index])
        return int(timesteps[index]) - self.num_train_timesteps // len(timesteps)

    def _alpha(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    def coefficients(self, timesteps: np.ndarray, index: int) -> StepCoefficients:
        """Coefficients of the step from ``timesteps[index]`` (eta = 0 for DDIM)."""
        t = int(timesteps[index])
        t_prev = self.previous_timestep(timesteps, index)
        alpha, alpha_prev = self._alpha(t), self._alpha(t_prev)
        sa, sb = np.sqrt(alpha), np.sqrt(1.0 - alpha)
        if self.prediction_type == "v_prediction":
            x0_x, x0_out, eps_x, eps_out = sa, -sb, sb, sa
        elif self.prediction_type == "epsilon":
            if alpha <= 0:
                raise SchedulerConfigError(f"epsilon prediction at timestep {t} with zero SNR "
                                           f"(rescale_betas_zero_snr) divides by zero")
            x0_x, x0_out = 1.0 / sa, -sb / sa
            eps_x, eps_out = 0.0, 1.0
        else:  # sample
            x0_x, x0_out = 0.0, 1.0
            eps_x, eps_out = 1.0 / sb, -sa / sb
        if self.kind == "ddim":
            # x_prev = sqrt(alpha_prev) * x0 + sqrt(1 - alpha_prev) * eps
            pa, pb = np.sqrt(alpha_prev), np.sqrt(1.0 - alpha_prev)
            return StepCoefficients(t, x0_x, x0_out, pa * x0_x + pb * eps_x, pa * x0_out + pb * eps_out)
        # LCM: denoised = c_out * x0 + c_skip * x, then re-noised to t_prev except on the last step
        scaled = t * self.timestep_scaling
        c_skip = 0.25 / (scaled ** 2 + 0.25)
        c_out = scaled / np.sqrt(scaled ** 2 + 0.25)
        a, b = c_out * x0_x + c_skip, c_out * x0_out
        if index + 1 < len(timesteps):
            pa, pb = np.sqrt(alpha_prev), np.sqrt(1.0 - alpha_prev)
            return StepCoefficients(t, x0_x, x0_out, pa * a, pa * b, pb)
        return StepCoefficients(t, x0_x, x0_out, a, b)

    def step(self, model_output: np.ndarray, timesteps: np.ndarray, index: int, sample: np.ndarray,
             noise: np.ndarray | None = None) -> np.ndarray:
        """One step on numpy arrays (the engine does the same on tensors; tests compare with diffusers)."""
        co = self.coefficients(timesteps, index)
        out = co.a * sample + co.b * model_output
        if co.c:
            if noise is None:
                raise ValueError("an LCM step before the last needs noise")
            out = out + co.c * noise
        return out.astype(sample.dtype, copy=False)

    def add_noise(self, clean: np.ndarray, noise: np.ndarray, timestep: int) -> np.ndarray:
        """``x_t = sqrt(alpha_t) * clean + sqrt(1 - alpha_t) * noise`` (re-noising a previous latent)."""
        alpha = self._alpha(int(timestep))
        return (np.sqrt(alpha) * clean + np.sqrt(1.0 - alpha) * noise).astype(clean.dtype, copy=False)


def _betas(cfg: dict) -> np.ndarray:
    n = int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("trained_betas") is not None:
        return np.asarray(cfg["trained_betas"], dtype=np.float64)
    schedule = cfg.get("beta_schedule", "linear")
    start, end = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
    if schedule == "linear":
        return np.linspace(start, end, n, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        bar = lambda t: np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)])
    raise SchedulerConfigError(f"beta_schedule '{schedule}' is not supported")


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Shift and scale sqrt(alpha_bar) so the last timestep has zero SNR (Lin et al. 2024, Alg. 1)."""
    sqrt_bar = np.sqrt(np.cumprod(1.0 - betas))
    first, last = sqrt_bar[0], sqrt_bar[-1]
    sqrt_bar = (sqrt_bar - last) * first / (first - last)
    bar = sqrt_bar ** 2
    alphas = np.concatenate([bar[:1], bar[1:] / bar[:-1]])
    return 1.0 - alphas


def from_config(cfg: dict) -> Sampler:
    """A Sampler from a diffusers scheduler config dict (``_class_name`` picks DDIM or LCM)."""
    name = cfg.get("_class_name", "DDIMScheduler")
    if name not in KINDS:
        raise SchedulerConfigError(f"scheduler '{name}' is not supported (Marigold uses "
                                   f"{' or '.join(KINDS)})")
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise SchedulerConfigError(f"prediction_type '{prediction}' is not one of {PREDICTION_TYPES}")
    spacing = cfg.get("timestep_spacing", "leading")
    if spacing not in SPACINGS:
        raise SchedulerConfigError(f"timestep_spacing '{spacing}' is not one of {SPACINGS}")
    for flag in ("thresholding", "clip_sample"):
        if cfg.get(flag):
            raise SchedulerConfigError(f"{flag}=true is not supported (no Marigold checkpoint uses it)")
    betas = _betas(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        betas = _rescale_zero_terminal_snr(betas)
    # diffusers keeps the schedule in float32; matching it keeps timesteps near t=0 identical.
    alphas_cumprod = np.cumprod((1.0 - betas.astype(np.float32)).astype(np.float32), dtype=np.float32)
    final = 1.0 if cfg.get("set_alpha_to_one", True) else float(alphas_cumprod[0])
    return Sampler(kind=KINDS[name], prediction_type=prediction, alphas_cumprod=alphas_cumprod.astype(np.float64),
                   final_alpha_cumprod=final, timestep_spacing=spacing,
                   steps_offset=int(cfg.get("steps_offset", 0)),
                   original_inference_steps=int(cfg.get("original_inference_steps", 50)),
                   timestep_scaling=float(cfg.get("timestep_scaling", 10.0)), config=dict(cfg))


def load(folder: str) -> Sampler:
    """The Sampler of a checkpoint's ``scheduler/scheduler_config.json``."""
    path = os.path.join(folder, "scheduler_config.json")
    with open(path) as f:
        try:
            cfg = json.load(f)
        except json.JSONDecodeError as exc:
            raise SchedulerConfigError(f"{path} is not valid JSON: {exc}") from exc
    return from_config(cfg)
