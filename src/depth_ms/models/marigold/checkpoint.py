"""Marigold checkpoints from a local diffusers folder (``prs-eth/marigold-depth-v1-1`` layout), never a hub.

:func:`check_folder` validates the layout up front and names the first missing or malformed file;
:func:`load` builds the MindSpore parts through mindone (after the device layer is configured), reads
the scheduler and prediction type from the folder, and computes the empty-prompt text embedding once.
"""
from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from depth_ms.models import weights
from depth_ms.models.base import EstimatorError

from . import schedulers
from .constant_context import fold_cross_attention

WEIGHT_FILES = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
TOKENIZER_FILES = ("vocab.json", "merges.txt")
SUPPORTED_PREDICTIONS = ("depth", "disparity")


class CheckpointError(EstimatorError):
    """A checkpoint folder that cannot be used; the message names the path and what is wrong."""


@dataclass
class CheckpointInfo:
    """What the folder says, read before any weights are loaded."""

    path: str
    prediction_type: str  # "depth" (affine-invariant depth) or "disparity"
    default_steps: int
    default_resolution: int
    sampler: schedulers.Sampler
    variants: dict  # part -> "" or "fp16" (which weight file exists)
    vae_scale_factor: int
    latent_channels: int
    scaling_factor: float


@dataclass
class MarigoldParts:
    """Loaded MindSpore modules plus what the engine needs from the folder."""

    info: CheckpointInfo
    unet: Any
    vae: Any  # None when the tiny VAE does both sides
    text_embedding: Any  # mindspore Tensor (1, tokens, hidden): the empty prompt, computed at load
    tiny_vae: Any = None  # AutoencoderTiny or None
    tiny_scale_factor: int = 0


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"missing file {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"malformed {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"malformed {path}: expected a JSON object")
    return data


def _weight_variant(folder: str, part: str) -> str:
    """"" when ``<part>/<name>.safetensors`` exists, "fp16" for the published fp16 file, else an error."""
    name = WEIGHT_FILES[part]
    for variant in ("", "fp16"):
        file = os.path.join(folder, part, f"{name}.{variant}.safetensors" if variant else f"{name}.safetensors")
        if os.path.isfile(file):
            return variant
    for legacy in (f"{name}.bin", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(folder, part, legacy)):
            raise CheckpointError(f"{os.path.join(folder, part, legacy)} is a PyTorch pickle; this loader reads "
                                  f"safetensors only (missing {os.path.join(folder, part, name + '.safetensors')})")
    raise CheckpointError(f"missing file {os.path.join(folder, part, name + '.safetensors')}")


def check_folder(path: str) -> CheckpointInfo:
    """Validate a Marigold depth folder without loading weights; errors name the missing/malformed file."""
    path = weights.require(os.path.expanduser(path), "Marigold checkpoint folder")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is a file; a Marigold checkpoint is a folder (model_index.json, unet/, "
                              f"vae/, scheduler/, text_encoder/, tokenizer/)")
    index = _read_json(os.path.join(path, "model_index.json"))
    prediction = index.get("prediction_type", "depth")
    if prediction not in SUPPORTED_PREDICTIONS:
        raise CheckpointError(f"{path}: model_index.json prediction_type is '{prediction}' (a "
                              f"{index.get('_class_name', '?')} checkpoint); depth_ms runs depth checkpoints only")
    sched_cfg = _read_json(os.path.join(path, "scheduler", "scheduler_config.json"))
    try:
        sampler = schedulers.from_config(sched_cfg)
    except schedulers.SchedulerConfigError as exc:
        raise CheckpointError(f"{os.path.join(path, 'scheduler', 'scheduler_config.json')}: {exc}") from exc
    unet_cfg = _read_json(os.path.join(path, "unet", "config.json"))
    vae_cfg = _read_json(os.path.join(path, "vae", "config.json"))
    _read_json(os.path.join(path, "text_encoder", "config.json"))
    latent = int(vae_cfg.get("latent_channels", 4))
    if int(unet_cfg.get("in_channels", 0)) != 2 * latent:
        raise CheckpointError(f"{os.path.join(path, 'unet', 'config.json')}: in_channels is "
                              f"{unet_cfg.get('in_channels')}, Marigold's UNet takes {2 * latent} (RGB latent + "
                              f"depth latent); is this a plain Stable Diffusion checkpoint?")
    for file in TOKENIZER_FILES:
        if not os.path.isfile(os.path.join(path, "tokenizer", file)):
            raise CheckpointError(f"missing file {os.path.join(path, 'tokenizer', file)}")
    variants = {part: _weight_variant(path, part) for part in WEIGHT_FILES}
    return CheckpointInfo(path=path, prediction_type=prediction,
                          default_steps=int(index.get("default_denoising_steps") or 4),
                          default_resolution=int(index.get("default_processing_resolution", 768)),  # 0: input size
                          sampler=sampler, variants=variants,
                          vae_scale_factor=2 ** (len(vae_cfg.get("block_out_channels", [0] * 4)) - 1),
                          latent_channels=latent, scaling_factor=float(vae_cfg.get("scaling_factor", 0.18215)))


def check_tiny_vae_folder(path: str) -> str:
    """Validate an AutoencoderTiny (TAESD) folder; returns its path."""
    path = weights.require(os.path.expanduser(path), "tiny VAE (TAESD) folder")
    cfg = _read_json(os.path.join(path, "config.json"))
    if cfg.get("_class_name", "AutoencoderTiny") != "AutoencoderTiny":
        raise CheckpointError(f"{os.path.join(path, 'config.json')}: _class_name is '{cfg.get('_class_name')}', "
                              f"expected AutoencoderTiny (TAESD)")
    if not os.path.isfile(os.path.join(path, "diffusion_pytorch_model.safetensors")):
        raise CheckpointError(f"missing file {os.path.join(path, 'diffusion_pytorch_model.safetensors')}")
    return path


def load_diffusers_model(cls, folder: str, variant: str = ""):
    """float32 diffusers model from ``folder``, its weights read one tensor at a time.

    The same result as mindone's ``from_pretrained`` (its key fixes and torch -> MindSpore name
    mappings are applied), at about half its peak memory: parameters are created uninitialised and
    each is set from its own freshly read array (see :mod:`depth_ms.models.safetensors_reader`).
    """
    from mindone.diffusers.models.modeling_utils import _get_pt2ms_mappings
    from mindspore.nn.utils import no_init_parameters

    name = "diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"
    path = os.path.join(folder, name)
    with no_init_parameters():
        model = cls.from_config(cls.load_config(folder))
    renamed = {key: key for key in _tensor_names(path)}
    model._fix_state_dict_keys_on_load(renamed)  # renames keys in place (old attention names): new -> file name
    _load_streamed(model, path, {old: new for new, old in renamed.items()}, _get_pt2ms_mappings(model), ())
    return model


def load_transformers_model(cls, folder: str, variant: str = ""):
    """float32 mindone.transformers model (the CLIP text encoder) from ``folder``, one tensor at a time.

    With mindone's ``from_pretrained`` (initialised parameters, then a loaded state dict) and the
    embedding call compiled in graph mode, the 1.4 GB SD2 text encoder raised the streaming node's
    peak from 4.61 to 6.18 GB at 320x240; loaded this way it adds 1.27 GB while it lives.
    """
    from mindone.transformers.modeling_utils import _get_pt2ms_mappings
    from mindspore.nn.utils import no_init_parameters

    path = os.path.join(folder, "model" + (f".{variant}" if variant else "") + ".safetensors")
    config = cls.config_class.from_pretrained(folder, local_files_only=True)
    with no_init_parameters():
        model = cls(config)
    names = _tensor_names(path)
    ignored = tuple(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ())
    _load_streamed(model, path, {key: key for key in names}, _get_pt2ms_mappings(model), ignored)
    return model


def _load_streamed(model, path: str, file_to_model: dict, mappings: dict, ignored: tuple) -> None:
    """Set every parameter of ``model`` from the safetensors file ``path``, one tensor at a time.

    ``file_to_model``: file key -> model (torch) key; ``mappings``: torch key -> (MindSpore name,
    converter) as mindone's; ``ignored``: regular expressions of file keys to skip. Names what is
    missing, unexpected or mis-shaped.
    """
    import re

    import mindspore as ms

    from depth_ms.models.safetensors_reader import SafetensorsError, iter_tensors

    params = dict(model.parameters_and_names())
    unexpected, mismatched = [], []
    try:
        for file_key, array in iter_tensors(path):
            target, convert = mappings.get(file_to_model[file_key], (file_to_model[file_key], None))
            if target is None:  # e.g. num_batches_tracked
                continue
            if target not in params:
                if not any(re.search(pattern, file_key) for pattern in ignored):
                    unexpected.append(file_key)
                continue
            param = params.pop(target)
            value = ms.Tensor.from_numpy(np.ascontiguousarray(array, dtype=np.float32)
                                         if array.dtype.kind == "f" else array)
            if convert is not None:
                value = convert(ms.Parameter(value, name=target))
            if tuple(value.shape) != tuple(param.shape):
                mismatched.append(f"{file_key} {tuple(value.shape)} vs {tuple(param.shape)}")
                continue
            param.set_data(value if value.dtype == param.dtype else value.astype(param.dtype))
    except SafetensorsError as exc:
        raise CheckpointError(str(exc)) from exc
    problems = [(what, keys) for what, keys in (("missing", sorted(params)), ("unexpected", unexpected),
                                                 ("mismatched", mismatched)) if keys]
    if problems:
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: " + "; ".join(
            f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" for what, keys in problems))
    model.set_train(False)


def _tensor_names(path: str) -> list:
    from depth_ms.models.safetensors_reader import SafetensorsError, read_header

    try:
        return list(read_header(path)[0])
    except (OSError, SafetensorsError) as exc:
        raise CheckpointError(str(exc)) from exc


def empty_prompt_embedding(path: str, text_encoder) -> Any:
    """CLIP embedding of the empty prompt (1, 2, hidden): BOS and EOS, no padding, as diffusers does.

    Always run in PyNative: in graph mode the compiled graph kept the text encoder (1.4 GB at SD2
    size) alive after the loader dropped it.
    """
    import mindspore as ms
    from transformers import CLIPTokenizer  # pure-Python tokenizer: no torch

    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(path, "tokenizer"), local_files_only=True)
    ids = tokenizer("", padding="do_not_pad", max_length=tokenizer.model_max_length, truncation=True).input_ids
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        out = text_encoder(ms.Tensor(np.asarray([ids], dtype=np.int32)))[0]  # (1, tokens, hidden)
    finally:
        ms.set_context(mode=mode)
    return ms.Tensor(out.asnumpy())


def load(path: str, tiny_vae: str = "", full_vae: bool = True, fold_context: bool = True) -> MarigoldParts:
    """Load a checkpoint folder (and optionally a TAESD folder) as MindSpore modules.

    ``full_vae=False`` (only with ``tiny_vae``) skips the checkpoint's VAE when the tiny one does
    both encoding and decoding (330 MB less). ``fold_context`` folds the empty-prompt embedding into
    the UNet's cross-attentions (:mod:`.constant_context`), which then ignore the context they are
    given. The caller configures the device first (``mindspore_device.configure``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: from_pretrained gets local paths only
    info = check_folder(path)
    tiny_path = check_tiny_vae_folder(tiny_vae) if tiny_vae else ""
    from mindone.diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from mindone.transformers import CLIPTextModel

    try:
        text_encoder = load_transformers_model(CLIPTextModel, os.path.join(info.path, "text_encoder"),
                                               info.variants["text_encoder"])
        text_embedding = empty_prompt_embedding(info.path, text_encoder)
        del text_encoder  # used once, freed before the UNet arrives (its Cells hold reference cycles: collect)
        gc.collect()
        unet = load_diffusers_model(UNet2DConditionModel, os.path.join(info.path, "unet"), info.variants["unet"])
        if fold_context:
            fold_cross_attention(unet, text_embedding.asnumpy()[0])
        vae = load_diffusers_model(AutoencoderKL, os.path.join(info.path, "vae"), info.variants["vae"]) \
            if full_vae or not tiny_path else None
        tiny = load_diffusers_model(AutoencoderTiny, tiny_path) if tiny_path else None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load Marigold weights from {info.path}: {exc}") from exc
    if tiny is not None and int(tiny.config.latent_channels) != info.latent_channels:
        raise CheckpointError(f"{tiny_path}: {tiny.config.latent_channels} latent channels, the checkpoint's VAE "
                              f"has {info.latent_channels}")
    tiny_factor = 2 ** (len(tiny.config.encoder_block_out_channels) - 1) if tiny is not None else 0
    if tiny is not None and tiny_factor != info.vae_scale_factor:
        raise CheckpointError(f"{tiny_path}: downsamples by {tiny_factor}, the checkpoint's VAE by "
                              f"{info.vae_scale_factor}")
    return MarigoldParts(info=info, unet=unet, vae=vae, text_embedding=text_embedding, tiny_vae=tiny,
                         tiny_scale_factor=tiny_factor)
