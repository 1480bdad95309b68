"""Training configuration of the Marigold family (``family: marigold``): a VAE stage, a UNet stage and an
optional end-to-end fine-tuning stage."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from depth_ms.core.config import ConfigError

from .augment import AugmentConfig
from .config import DataConfig, OptimConfig, RecordedResolution, ScheduleConfig


@dataclass
class VaeStage:
    """Fit an AutoencoderKL to the simulator's RGB and to normalised depth maps (replicated to 3 channels)."""

    arch: Mapping[str, Any] = field(default_factory=dict)  # AutoencoderKL config fields (block_out_channels, ...)
    crop: int = 64  # square training crops (pixels, multiple of the VAE factor): the network is convolutional
    depth_share: float = 0.5  # share of each batch that is depth maps (the rest is RGB)
    kl_weight: float = 1e-6  # weight of the KL term (keeps the latent bounded; the decoder sees posterior samples)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> None:
        if self.crop < 16 or self.crop % 16:
            raise ConfigError(f"vae.crop: expected a multiple of 16, got {self.crop}")
        if not 0 <= self.depth_share <= 1 or self.kl_weight < 0:
            raise ConfigError(f"vae: expected 0 <= depth_share <= 1 and kl_weight >= 0, got {self.depth_share}, "
                              f"{self.kl_weight}")


@dataclass
class UnetStage:
    """The 8-channel UNet, from scratch, on latents of the frozen VAE, as Marigold trains its UNet."""

    arch: Mapping[str, Any] = field(default_factory=dict)  # UNet2DConditionModel config fields
    variants: int = 2  # augmented copies of every training frame, each encoded once by the frozen VAE
    multires_noise: float = 0.9  # Marigold's multi-resolution noise strength (annealed with t); 0 = plain noise
    multires_levels: int = 3  # octaves of the multi-resolution noise
    timestep_focus: float = 0.0  # share of samples whose timestep is drawn from the val_steps-step trailing
    # schedule the engine runs (999, 749, 499, 249 for 4), the rest uniformly from all 1000; 0 = Marigold's uniform
    optim: OptimConfig = field(default_factory=OptimConfig)
    val_steps: int = 4  # cold DDIM steps of validation (through the streaming engine)

    def validate(self) -> None:
        if self.variants < 1 or self.val_steps < 1 or self.multires_levels < 1:
            raise ConfigError("unet: variants, val_steps and multires_levels must be >= 1")
        if not 0 <= self.timestep_focus <= 1:
            raise ConfigError(f"unet.timestep_focus: expected [0, 1], got {self.timestep_focus}")
        if not 0 <= self.multires_noise < 1:
            raise ConfigError(f"unet.multires_noise: expected [0, 1), got {self.multires_noise}")


DEPTH_LOSSES = ("least_squares_abs_rel", "normalised_l1")  # finetune.depth_loss


@dataclass
class FinetuneStage:
    """The UNet fine-tuned end to end through the frozen VAE decoder (after Garcia Martin et al., WACV 2025):
    the clean-latent estimate of a sampler step is decoded and scored against the depth (``depth_loss``);
    the v-prediction loss of the UNet stage runs beside it on ``optim.batch_size`` samples."""

    decoded_batch: int = 4  # samples per step through the decoder
    trajectory: bool = True  # decoded samples at every step of the unet.val_steps-step sampler, from the latent
    # the sampler reaches from noise with the UNet itself (no gradient through the earlier steps); false: the
    # first step only (t = 999, pure noise in)
    depth_loss: str = "least_squares_abs_rel"  # AbsRel against the depth after a least-squares scale and
    # shift, as the labeller scores; normalised_l1: MiDaS' scale-and-shift-invariant L1 against the normalised depth
    gradient_weight: float = 0.5  # multi-scale gradient matching of the decoded loss (MiDaS' alpha)
    velocity_weight: float = 1.0  # weight of the v-prediction loss beside it
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> None:
        if self.decoded_batch < 1 or self.gradient_weight < 0 or self.velocity_weight < 0:
            raise ConfigError("finetune: expected decoded_batch >= 1, gradient_weight >= 0, velocity_weight >= 0")
        if self.depth_loss not in DEPTH_LOSSES:
            raise ConfigError(f"finetune.depth_loss: expected one of {DEPTH_LOSSES}, got '{self.depth_loss}'")


@dataclass
class MarigoldTrainConfig(RecordedResolution):
    """A Marigold-family model from scratch: VAE, then UNet on its latents; exported as a diffusers folder."""

    family: str = "marigold"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    resolution: int = 128  # training and validation resolution (longer edge): UNet frames are resized to it
    aspect: tuple[int, int] = (4, 3)  # UNet frames are cropped to this width:height before resizing
    processing_resolution: int = 0  # the exported model's default (model_index.json); 0 = resolution
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    vae: VaeStage = field(default_factory=VaeStage)
    unet: UnetStage = field(default_factory=UnetStage)
    finetune: Optional[FinetuneStage] = None  # a third stage after the UNet stage (absent = none)
    text_encoder: Mapping[str, Any] = field(default_factory=dict)  # CLIPTextConfig fields of the minimal encoder
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    output: str = "runs/marigold"  # run folder: vae/, unet/ (checkpoints, logs, plots) and model/ (diffusers)

    def validate(self) -> None:
        if self.family != "marigold":
            raise ConfigError(f"family: expected marigold, got '{self.family}'")
        self.check_resolutions()

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of a UNet training frame: ``aspect`` with the longer edge at ``resolution``."""
        w, h = self.aspect
        longest = max(w, h)
        return self.resolution * h // longest, self.resolution * w // longest


__all__ = ["FinetuneStage", "MarigoldTrainConfig", "UnetStage", "VaeStage"]
