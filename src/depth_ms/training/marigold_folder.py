"""The parts of a Marigold-family model built from scratch, and the diffusers folder they are shipped as.

The folder has the layout of ``prs-eth/marigold-depth-v1-1`` (model_index.json, unet/, vae/, scheduler/,
text_encoder/, tokenizer/; safetensors), so :mod:`depth_ms.models.marigold.checkpoint` and diffusers'
``MarigoldDepthPipeline`` load it as they load the official release. Marigold encodes only the empty
prompt: the text encoder is a minimal CLIP text model whose vocabulary holds the special tokens, and its
one embedding is a constant context for the UNet's cross-attention.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

# The scheduler of Marigold v1-1: DDIM, trailing timesteps, zero terminal SNR, v-prediction.
SCHEDULER = dict(_class_name="DDIMScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, num_train_timesteps=1000, prediction_type="v_prediction",
                 rescale_betas_zero_snr=True, set_alpha_to_one=False, steps_offset=1, thresholding=False,
                 timestep_spacing="trailing")
VOCAB = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
TEXT_DEFAULTS = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                     max_position_embeddings=77, hidden_act="gelu", projection_dim=32)
VAE_FIXED = dict(in_channels=3, out_channels=3)
UNET_FIXED = dict(in_channels=8, out_channels=4)


def vae_config(arch: Mapping[str, Any]) -> dict:
    """AutoencoderKL config: ``arch`` plus encoder/decoder block types for its number of levels."""
    levels = len(arch.get("block_out_channels", (128, 256, 512, 512)))
    return dict(arch, **VAE_FIXED, down_block_types=["DownEncoderBlock2D"] * levels,
                up_block_types=["UpDecoderBlock2D"] * levels)


def unet_config(arch: Mapping[str, Any]) -> dict:
    """UNet2DConditionModel config: 8 input channels (RGB latent + depth latent), 4 out, convolutional levels
    (``DownBlock2D``/``UpBlock2D``) and the cross-attention middle block."""
    levels = len(arch.get("block_out_channels", (320, 640, 1280, 1280)))
    return dict(arch, **UNET_FIXED, down_block_types=["DownBlock2D"] * levels, up_block_types=["UpBlock2D"] * levels)


def text_config(arch: Mapping[str, Any]) -> dict:
    return dict(TEXT_DEFAULTS, **arch, vocab_size=len(VOCAB), bos_token_id=0, eos_token_id=1, pad_token_id=1)


def build_vae(arch: Mapping[str, Any], seed: int):
    import mindspore as ms
    from mindone.diffusers import AutoencoderKL

    ms.set_seed(seed)
    return AutoencoderKL(**vae_config(arch))


def build_unet(arch: Mapping[str, Any], seed: int):
    import mindspore as ms
    from mindone.diffusers import UNet2DConditionModel

    ms.set_seed(seed)
    return UNet2DConditionModel(**unet_config(arch))


def write_tokenizer(path: str) -> None:
    """A CLIP tokenizer whose vocabulary holds the special tokens only (enough for the empty prompt)."""
    from transformers import CLIPTokenizer  # pure-Python tokenizer: no torch

    os.makedirs(path, exist_ok=True)
    vocab_file, merges_file = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
    with open(vocab_file, "w") as f:
        json.dump(VOCAB, f)
    with open(merges_file, "w") as f:
        f.write("#version: 0.2\n")
    CLIPTokenizer(vocab_file, merges_file, pad_token="<|endoftext|>").save_pretrained(path)


def write_text_parts(folder: str, arch: Mapping[str, Any], seed: int) -> None:
    """``folder``/text_encoder (a seeded random minimal CLIPTextModel) and ``folder``/tokenizer."""
    import mindspore as ms
    from mindone.transformers import CLIPTextModel
    from transformers import CLIPTextConfig

    ms.set_seed(seed)
    CLIPTextModel(CLIPTextConfig(**text_config(arch))).save_pretrained(os.path.join(folder, "text_encoder"))
    mark_as_pytorch_format(os.path.join(folder, "text_encoder", "model.safetensors"))
    write_tokenizer(os.path.join(folder, "tokenizer"))


def empty_prompt_context(folder: str):
    """The (1, 2, hidden) empty-prompt embedding of the text parts in ``folder``, as the loader computes it."""
    from depth_ms.models.marigold.checkpoint import empty_prompt_embedding, load_transformers_model
    from mindone.transformers import CLIPTextModel

    encoder = load_transformers_model(CLIPTextModel, os.path.join(folder, "text_encoder"))
    return empty_prompt_embedding(folder, encoder)


def mark_as_pytorch_format(path: str) -> None:
    """Rewrite a safetensors file with ``format: pt`` metadata (mindone writes ``np``, which diffusers and
    transformers refuse); the tensors are unchanged."""
    from safetensors.numpy import load_file, save_file

    save_file(load_file(path), path, metadata={"format": "pt"})


def write_folder(folder: str, vae, unet, text_source: str, resolution: int, steps: int) -> None:
    """Write the diffusers folder: ``vae`` and ``unet`` (mindone models), the text parts copied from
    ``text_source`` (a folder written by :func:`write_text_parts`), the scheduler and model_index.json."""
    import shutil

    os.makedirs(folder, exist_ok=True)
    for part, model in (("vae", vae), ("unet", unet)):
        model.save_pretrained(os.path.join(folder, part))
        mark_as_pytorch_format(os.path.join(folder, part, "diffusion_pytorch_model.safetensors"))
    for part in ("text_encoder", "tokenizer"):
        shutil.rmtree(os.path.join(folder, part), ignore_errors=True)
        shutil.copytree(os.path.join(text_source, part), os.path.join(folder, part))
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER, f, indent=2)
    index = {"_class_name": "MarigoldDepthPipeline", "prediction_type": "depth", "scale_invariant": True,
             "shift_invariant": True, "default_denoising_steps": steps, "default_processing_resolution": resolution,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)


__all__ = ["SCHEDULER", "build_unet", "build_vae", "empty_prompt_context", "unet_config", "vae_config",
           "write_folder", "write_text_parts", "write_tokenizer"]
