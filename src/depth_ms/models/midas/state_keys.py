"""Which depth model a state dict belongs to, and whether it fits a network (numpy only, no torch/MindSpore).

Used by the converter (``convert.py``) and by the loaders (``small_net.py``, ``fast_net.py``), so a
checkpoint of another MiDaS / DPT / Depth Anything variant is named before any key detail.
"""
from __future__ import annotations

from typing import Mapping

from depth_ms.models.base import EstimatorError

SMALL = "midas_v21_small_256"
IGNORED_SUFFIXES = (".num_batches_tracked",)


def _has(keys, fragment: str) -> bool:
    return any(fragment in k for k in keys)


def _dpt_variant(shapes: Mapping[str, tuple]) -> str:
    """Which MiDaS v3.x DPT checkpoint (``pretrained.model.*`` backbone keys) this is."""
    keys = shapes.keys()
    block_ids = [k.split(".")[3] for k in keys if k.startswith("pretrained.model.blocks.")]
    n_blocks = max((int(b) + 1 for b in block_ids if b.isdigit()), default=0)
    if _has(keys, "pretrained.model.patch_embed.backbone"):
        return "dpt_hybrid_384"
    if _has(keys, "relative_position_bias_table") and n_blocks:
        table = next(v for k, v in shapes.items() if k.endswith("relative_position_bias_table"))
        side = 512 if table and table[0] == (2 * 32 - 1) ** 2 + 3 else 384
        return f"dpt_beit_large_{side}" if n_blocks >= 24 else f"dpt_beit_base_{side}"
    if _has(keys, "pretrained.model.layers."):
        if _has(keys, "cpb_mlp") or _has(keys, "logit_scale"):
            dim = shapes.get("pretrained.model.patch_embed.proj.weight", (0,))[0]
            return {192: "dpt_swin2_large_384", 128: "dpt_swin2_base_384", 96: "dpt_swin2_tiny_256"}.get(
                dim, "dpt_swin2 (unknown size)")
        return "dpt_swin_large_384"
    if _has(keys, "pretrained.model.stem.conv1"):
        return "dpt_levit_224"
    if _has(keys, "pretrained.model.features") or _has(keys, "pretrained.model.stem.0"):
        return "dpt_next_vit_large_384"
    if n_blocks:
        return "dpt_large_384" if n_blocks >= 24 else "dpt_base_384 (ViT-B/16)"
    return "a DPT checkpoint (MiDaS v3.x, unknown backbone)"


def detect_variant(keys_and_shapes: Mapping[str, tuple]) -> str:
    """Name of the depth model a state dict belongs to, from its key names and a few shapes.

    ``midas_v21_small_256`` for this package's model; otherwise e.g. ``midas_v21_384`` (ResNeXt-101),
    ``dpt_large_384``, ``dpt_hybrid_384``, ``dpt_beit_large_512``, ``dpt_swin2_tiny_256``,
    ``Hugging Face DPT (transformers)``, ``Depth Anything (official)`` or ``unknown``.
    """
    shapes = {k: tuple(v) for k, v in keys_and_shapes.items()}
    keys = shapes.keys()
    if any(k.startswith("dpt.") for k in keys):
        return "Hugging Face DPT (transformers DPTForDepthEstimation)"
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("neck.") for k in keys):
        return "Hugging Face Depth Anything (transformers DepthAnythingForDepthEstimation)"
    if any(k.startswith("pretrained.blocks.") for k in keys) and any(k.startswith("depth_head.") for k in keys):
        return "Depth Anything (official, DINOv2 backbone)"
    if any(k.startswith("pretrained.model.") for k in keys):
        return _dpt_variant(shapes)
    if _has(keys, "pretrained.layer1.4.0.conv1") or _has(keys, "pretrained.layer2.0.downsample"):
        return "midas_v21_384 (MidasNet, ResNeXt-101 WSL backbone)"
    if _has(keys, "pretrained.layer1.3.0.conv_dw") or _has(keys, "pretrained.layer1.4.0.conv_pw"):
        stem = shapes.get("pretrained.layer1.0.weight")
        rn4 = shapes.get("scratch.layer4_rn.weight")
        if stem == (32, 3, 3, 3) and rn4 == (512, 384, 3, 3):
            return SMALL
        return f"MidasNet_small with another EfficientNet / feature width (stem {stem}, layer4_rn {rn4})"
    return "unknown (not a MiDaS checkpoint)"


def _listing(names, limit: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_state_keys(found: Mapping[str, tuple], expected: Mapping[str, tuple], source: str) -> None:
    """EstimatorError unless ``found`` has exactly the ``expected`` keys and shapes (counters ignored).

    Another model's checkpoint is named as such (:func:`detect_variant`) before any key detail.
    """
    found = {k: tuple(v) for k, v in found.items() if not k.endswith(IGNORED_SUFFIXES)}
    variant = detect_variant(found)
    if variant != SMALL:
        raise EstimatorError(f"{source} is not MiDaS v2.1 small ({SMALL}) weights: it looks like {variant}")
    problems = state_problems(found, expected)
    if problems:
        raise EstimatorError(f"MiDaS small weights {source} do not match the network: " + "; ".join(problems))


def state_problems(found: Mapping[str, tuple], expected: Mapping[str, tuple]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of a state dict, each summarised ([] = it fits)."""
    missing = expected.keys() - found.keys()
    unexpected = found.keys() - expected.keys()
    wrong = [f"{k} {found[k]} (expected {tuple(expected[k])})" for k in expected.keys() & found.keys()
             if tuple(found[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches: {_listing(wrong, 3)}")
    return problems
