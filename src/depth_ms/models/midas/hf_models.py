"""DPT (MiDaS v3) and Depth Anything from local Hugging Face folders, run by mindone.transformers.

A folder holds ``config.json`` and ``model.safetensors`` (or sharded ``model-*.safetensors`` with their
index), optionally ``preprocessor_config.json``. ``pytorch_model.bin`` alone cannot be read without
torch: convert it once (``safetensors.torch.save_file``) on a machine with torch. Nothing downloads.

MindSpore is configured through :func:`depth_ms.models.mindspore_device.configure` before it is
imported. ``mode='graph'`` compiles the forward with ``ms.jit`` (one compilation per input size).
The forwards here are compositions of mindone's own layers: DPT passes the token grid to the neck
(the library reshapes tokens to a square, so non-square inputs fail there and in transformers), and
Depth Anything runs its Dinov2 backbone through :func:`dinov2_features`, because mindone's Dinov2
does not compile (``self`` called in ``construct``, torch-style ``Tensor.transpose``).
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from depth_ms.models import mindspore_device
from depth_ms.models.base import EstimatorError

# our model name -> (mindone class, expected config.json model_type, hybrid flag or None for n/a)
FAMILIES = {
    "dpt_hybrid": ("DPTForDepthEstimation", "dpt", True),
    "dpt_large": ("DPTForDepthEstimation", "dpt", False),
    "depth_anything_v2_small": ("DepthAnythingForDepthEstimation", "depth_anything", None),
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise EstimatorError(f"cannot read {path}: {e}") from e


def check_folder(folder: str, model: str) -> dict:
    """config.json of a valid ``model`` folder; an EstimatorError naming the problem otherwise."""
    if model not in FAMILIES:
        raise EstimatorError(f"'{model}' is not a Hugging Face depth model ({', '.join(FAMILIES)})")
    if not os.path.exists(folder):
        raise EstimatorError(f"{model} weights not found: {folder} (no download at run time: put the official "
                             f"Hugging Face folder there, or set DEPTH_MS_WEIGHTS / the 'weights' option; see "
                             f"docs/fast_depth.md)")
    if not os.path.isdir(folder):
        raise EstimatorError(f"{model} expects a Hugging Face folder (config.json + model.safetensors), got the "
                             f"file {folder}")
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise EstimatorError(f"{model}: {config_path} is missing (the folder must be a Hugging Face "
                             f"save_pretrained folder)")
    has_weights = any(os.path.isfile(os.path.join(folder, n)) for n in WEIGHT_FILES) or \
        glob.glob(os.path.join(folder, "model-*.safetensors"))
    if not has_weights:
        if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
            raise EstimatorError(f"{model}: {folder} has only pytorch_model.bin, which cannot be read without torch; "
                                 f"convert it once to {os.path.join(folder, 'model.safetensors')} (see "
                                 f"docs/fast_depth.md)")
        raise EstimatorError(f"{model}: {os.path.join(folder, 'model.safetensors')} is missing")
    config = read_json(config_path)
    _, model_type, hybrid = FAMILIES[model]
    found = config.get("model_type")
    if found != model_type:
        raise EstimatorError(f"{model} needs a '{model_type}' checkpoint, but {config_path} has model_type "
                             f"'{found}'")
    if hybrid is not None and bool(config.get("is_hybrid", False)) != hybrid:
        other = "dpt_hybrid" if config.get("is_hybrid") else "dpt_large"
        raise EstimatorError(f"{model}: {folder} is a {'hybrid' if config.get('is_hybrid') else 'plain ViT'} DPT "
                             f"(is_hybrid={config.get('is_hybrid', False)}); use the '{other}' estimator")
    return config


def processor_config(folder: str) -> dict | None:
    """preprocessor_config.json of the folder, or None when it has none."""
    path = os.path.join(folder, "preprocessor_config.json")
    return read_json(path) if os.path.isfile(path) else None


@dataclass
class LoadedModel:
    """A mindone depth model and the call that maps (1, 3, h, w) float32 to (h', w') float32."""

    model: object
    config: dict
    run: Callable[[np.ndarray], np.ndarray]
    graph: bool  # True when the forward is compiled (ms.jit)
    stride: int  # input sides must be a multiple of this


def dinov2_features(backbone, pixel_values, mint):
    """Dinov2Backbone's feature maps composed from its own layers, written so that ``ms.jit`` compiles it.

    mindone's Dinov2 does not compile: its Backbone wrapper calls ``self`` inside ``construct`` and the
    patch embedding / attention use torch-style ``Tensor.transpose(d0, d1)``. Same parameters, same
    operations (eager attention, pre-norm blocks with layer scale, final layernorm on the out stages,
    tokens kept with the CLS token: reshape_hidden_states=False as in Depth Anything), except that the
    1 / sqrt(head_dim) scaling multiplies q (N x D values) instead of the scores (N x N per head), and
    the MLP's exact GELU is :func:`mindspore_device.gelu_exact`.
    """
    cfg = backbone.config
    emb = backbone.embeddings
    batch, _, height, width = pixel_values.shape
    patches = emb.patch_embeddings.projection(pixel_values)  # (B, C, h/14, w/14)
    channels = patches.shape[1]
    tokens = patches.reshape(batch, channels, -1).swapaxes(1, 2)  # (B, N, C)
    cls = emb.cls_token.broadcast_to((batch, 1, channels))  # (B, 1, C)
    x = mint.cat((cls, tokens), dim=1)  # (B, 1 + N, C)
    x = x + emb.interpolate_pos_encoding(x, height, width)
    heads = cfg.num_attention_heads
    head_dim = channels // heads
    scaling = head_dim ** -0.5
    wanted = [backbone.stage_names.index(s) for s in backbone.out_features]  # 0 = embeddings
    exact_gelu_mlp = cfg.hidden_act == "gelu" and not getattr(cfg, "use_swiglu_ffn", False)
    features = []
    for index, layer in enumerate(backbone.encoder.layer):
        att = layer.attention.attention
        a = layer.norm1(x)
        n = a.shape[1]
        q = (att.query(a) * scaling).reshape(batch, n, heads, head_dim).swapaxes(1, 2)  # (B, H, N, D), scaled
        k = att.key(a).reshape(batch, n, heads, head_dim).swapaxes(1, 2)
        v = att.value(a).reshape(batch, n, heads, head_dim).swapaxes(1, 2)
        weights = mint.nn.functional.softmax(mint.matmul(q, k.swapaxes(2, 3)), dim=-1)  # (B, H, N, N)
        context = mint.matmul(weights, v).swapaxes(1, 2).reshape(batch, n, channels)  # (B, N, C)
        x = layer.layer_scale1(layer.attention.output.dense(context)) + x
        if exact_gelu_mlp:  # the MLP with the native GELU (mindone's calls the ops fallback)
            hidden = layer.mlp.fc2(mindspore_device.gelu_exact(layer.mlp.fc1(layer.norm2(x))))
        else:
            hidden = layer.mlp(layer.norm2(x))
        x = layer.layer_scale2(hidden) + x
        if index + 1 in wanted:
            features.append(backbone.layernorm(x) if cfg.apply_layernorm else x)
    return features


def depth_anything_forward(net, pixel_values, patch: int, mint):
    """DepthAnythingForDepthEstimation's forward on :func:`dinov2_features` (compiles under ms.jit)."""
    patch_height, patch_width = pixel_values.shape[2] // patch, pixel_values.shape[3] // patch
    features = dinov2_features(net.backbone, pixel_values, mint)
    return net.head(net.neck(features, patch_height, patch_width), patch_height, patch_width)  # (B, h, w)


def dpt_forward(net, pixel_values, hybrid: bool, out_indices: list, patch: int):
    """DPTForDepthEstimation's forward with the token grid passed to the neck, so inputs need not be square.

    The library forward gives the neck no grid size for ViT and hybrid DPT and reshapes the tokens to a
    square, which fails for any non-square input (hence Intel's processor squashing to 384 x 384).
    """
    height, width = pixel_values.shape[2], pixel_values.shape[3]
    outputs = net.dpt(pixel_values, output_hidden_states=True, return_dict=False)
    layers = outputs[1]  # embeddings, then one (1, 1 + tokens, C) per transformer layer
    if hybrid:  # two BiT feature maps, then the later transformer layers
        features = list(outputs[-1]) + [layers[i + 1] for i in out_indices[2:]]
    else:
        features = [layers[i + 1] for i in out_indices]
    features = net.neck(features, height // patch, width // patch)
    return net.head(features)  # (1, h, w)


def load(folder: str, model: str, device: str = "cpu", mode: str = "pynative") -> LoadedModel:
    """Load ``folder`` as ``model`` with mindone on ``device``; ``mode='graph'`` compiles the forward."""
    config = check_folder(folder, model)
    mindspore_device.keep_torch_out()
    mindspore_device.configure(device)  # PyNative context; graph mode comes from ms.jit below
    import mindspore as ms
    import mindone.transformers as mt
    from mindspore import mint

    cls = getattr(mt, FAMILIES[model][0])
    try:
        net = cls.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 (mindone raises many types; name the folder)
        raise EstimatorError(f"{model}: mindone could not load {folder}: {type(e).__name__}: {e}") from e
    net.set_train(False)
    from depth_ms.models import native_cells

    native_cells.swap_in(net)  # the ViT's LayerNorm and GELU on the native kernels (CPU)
    hybrid = model == "dpt_hybrid"
    if model == "depth_anything_v2_small":
        stride = int(config.get("patch_size", 14))
    else:
        stride = 32  # the fusion stages halve four times from the 1/16 token grid... and back
    embeddings = net.dpt.embeddings if hybrid else None
    if model == "depth_anything_v2_small":
        patch = int(config.get("patch_size", 14))

        def forward(pixel_values):
            return depth_anything_forward(net, pixel_values, patch, mint)  # (1, h, w)
    else:
        out_indices = list(config.get("backbone_out_indices", [2, 5, 8, 11]))
        patch = int(config.get("patch_size", 16))

        def forward(pixel_values):
            return dpt_forward(net, pixel_values, hybrid, out_indices, patch)  # (1, h, w)

    compiled = mode == "graph"
    step = ms.jit(forward) if compiled else forward

    def run(x: np.ndarray) -> np.ndarray:
        if embeddings is not None:
            # DPT-Hybrid checks the input against config.image_size; its position embeddings are
            # resized to the token grid anyway (_resize_pos_embed), so the check is moved to this size.
            embeddings.image_size = (int(x.shape[2]), int(x.shape[3]))
        out = step(ms.Tensor(x))
        return out.asnumpy()[0]  # (h, w)

    return LoadedModel(net, config, run, compiled, stride)
