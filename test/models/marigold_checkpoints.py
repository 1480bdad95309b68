"""Marigold checkpoint folders with random weights, written by diffusers/transformers (tests and benchmarks only).

The folders have the layout of ``prs-eth/marigold-depth-v1-1`` and ``prs-eth/marigold-depth-lcm-v1-0``
(model_index.json, unet, vae, scheduler, text_encoder, tokenizer; safetensors), so the project's loader
reads them exactly as it reads the official ones. ``size="tiny"`` keeps every code path of the real
architecture at a few thousand parameters; ``size="sd2"`` is the real SD2 UNet (8 input channels) and SD VAE
(the text encoder stays small: it runs once at load).
"""
from __future__ import annotations

import json
import os

from depth_ms.training.marigold_folder import SCHEDULER
from tiny_configs import randomise

# Scheduler configs as published with the two official checkpoints.
DDIM_V1_1 = {key: value for key, value in SCHEDULER.items() if key != "_class_name"}  # the one the package ships
LCM_V1_0 = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                num_train_timesteps=1000, original_inference_steps=50, prediction_type="v_prediction",
                rescale_betas_zero_snr=False, set_alpha_to_one=True, steps_offset=1, thresholding=False,
                timestep_scaling=10.0, timestep_spacing="leading")

TINY_UNET = dict(sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8)
SD2_UNET = dict(sample_size=96, in_channels=8, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=1024,
                attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
# Three blocks: latents at 1/4 (SD's VAE has four blocks and 1/8); TAESD below matches it.
TINY_VAE = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=32)
SD_VAE = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              latent_channels=4, layers_per_block=2, sample_size=768)
TINY_TAESD = dict(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                  num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1), latent_channels=4,
                  upsampling_scaling_factor=2)
SD_TAESD = {}  # AutoencoderTiny defaults are the published TAESD
TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, hidden_act="gelu", projection_dim=32)
SD2_CLIP_SMALL = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=1, num_attention_heads=16,
                      max_position_embeddings=77, hidden_act="gelu", projection_dim=1024)
# The text encoder Marigold v1-1 ships (SD2's OpenCLIP ViT-H/14 text tower as CLIPTextModel: 340 M parameters)
SD2_CLIP = dict(SD2_CLIP_SMALL, num_hidden_layers=23, vocab_size=49408)


def write_sd2_text_encoder(path: str, seed: int = 0) -> None:
    """Write a random CLIPTextModel of the real SD2 size to ``path`` (1.4 GB), with special tokens 0 / 1 as
    the tiny tokenizer of :func:`write_marigold_folder`."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(**dict(SD2_CLIP, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    CLIPTextModel(cfg).eval().save_pretrained(path, safe_serialization=True)


def _write_tokenizer(path: str) -> None:
    """A CLIP tokenizer whose vocabulary holds only the special tokens (Marigold encodes the empty prompt)."""
    from depth_ms.training.marigold_folder import write_tokenizer

    write_tokenizer(path)


def write_marigold_folder(path: str, size: str = "tiny", scheduler: str = "ddim", seed: int = 0,
                          with_fp16_names: bool = False) -> dict:
    """Write a Marigold depth checkpoint folder; returns the torch modules (unet, vae, text_encoder, ...)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tiny = size == "tiny"
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD2_UNET)).eval()
    vae = AutoencoderKL(**(TINY_VAE if tiny else SD_VAE)).eval()
    clip_cfg = dict(TINY_CLIP if tiny else SD2_CLIP_SMALL, vocab_size=3, bos_token_id=0, eos_token_id=1,
                    pad_token_id=1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg)).eval()
    if tiny:  # real-size models keep their own init (re-drawing 900M parameters is slow and changes nothing)
        for offset, model in enumerate((unet, vae, text_encoder)):
            randomise(model, seed + offset)
    sched_cls, sched_cfg = (DDIMScheduler, DDIM_V1_1) if scheduler == "ddim" else (LCMScheduler, LCM_V1_0)
    sched = sched_cls(**sched_cfg)

    unet.save_pretrained(os.path.join(path, "unet"), safe_serialization=True)
    vae.save_pretrained(os.path.join(path, "vae"), safe_serialization=True)
    text_encoder.save_pretrained(os.path.join(path, "text_encoder"), safe_serialization=True)
    sched.save_pretrained(os.path.join(path, "scheduler"))
    _write_tokenizer(os.path.join(path, "tokenizer"))
    index = {
        "_class_name": "MarigoldDepthPipeline", "_diffusers_version": "0.35.1",
        "prediction_type": "depth", "scale_invariant": True, "shift_invariant": True,
        # the official folders say 768; the tiny ones 0 (the input size), as the tests' reference runs
        "default_denoising_steps": 4 if scheduler == "ddim" else 1,
        "default_processing_resolution": 0 if tiny else 768,
        "scheduler": ["diffusers", sched_cls.__name__], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    if with_fp16_names:  # the published v1-1 also ships *.fp16.safetensors; keep only those names
        for sub, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                          ("text_encoder", "model")):
            os.replace(os.path.join(path, sub, f"{name}.safetensors"),
                       os.path.join(path, sub, f"{name}.fp16.safetensors"))
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, scheduler=sched,
                tokenizer=CLIPTokenizer.from_pretrained(os.path.join(path, "tokenizer")))


def write_taesd_folder(path: str, size: str = "tiny", seed: int = 0):
    """Write an AutoencoderTiny (TAESD) folder; returns the torch module."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    taesd = AutoencoderTiny(**(TINY_TAESD if size == "tiny" else SD_TAESD)).eval()
    if size == "tiny":
        randomise(taesd, seed + 7)
    taesd.save_pretrained(path, safe_serialization=True)
    return taesd


def reference_pipeline(modules: dict):
    """diffusers' MarigoldDepthPipeline on the modules of :func:`write_marigold_folder`."""
    from diffusers import MarigoldDepthPipeline

    return MarigoldDepthPipeline(unet=modules["unet"], vae=modules["vae"], scheduler=modules["scheduler"],
                                 text_encoder=modules["text_encoder"], tokenizer=modules["tokenizer"],
                                 prediction_type="depth", default_denoising_steps=4,
                                 default_processing_resolution=768)
