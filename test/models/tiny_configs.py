"""Tiny DPT / DPT-Hybrid / Depth Anything configs that take the real checkpoints' code paths (tests only)."""
import math
import os

# model -> (tiny config name, tiny resolution, stride, default mean / std of the model)
HALF = (0.5, 0.5, 0.5)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TINY = {
    "dpt_large": ("dpt", 64, 32, HALF, HALF),
    "dpt_hybrid": ("dpt_hybrid", 64, 32, HALF, HALF),
    "depth_anything_v2_small": ("depth_anything", 56, 14) + IMAGENET,
}


def dpt_config(hybrid: bool):
    """ViT DPT (patch 8) or BiT-hybrid DPT (token grid at 1/16: a 64x64 input gives the 4x4 BiT map)."""
    from transformers import BitConfig, DPTConfig

    common = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                  neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16, backbone_out_indices=[0, 1, 2, 3])
    if not hybrid:
        return DPTConfig(image_size=32, patch_size=8, **common)
    bit = BitConfig(global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[16, 16, 32],
                    out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True, embedding_size=8,
                    num_groups=4)
    return DPTConfig(image_size=64, patch_size=16, is_hybrid=True, backbone_config=bit,
                     backbone_featmap_shape=[1, 32, 4, 4], **common)


def depth_anything_config(metric: bool = False):
    """Dinov2 backbone (patch 14) with a Depth Anything V2 neck and a relative (or metric) head."""
    from transformers import DepthAnythingConfig, Dinov2Config

    dino = Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=37, out_features=["stage1", "stage2", "stage3", "stage4"],
                        reshape_hidden_states=False, apply_layernorm=True)
    extra = dict(depth_estimation_type="metric", max_depth=20.0) if metric else {}
    return DepthAnythingConfig(backbone_config=dino, reassemble_hidden_size=32, patch_size=14,
                               neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8, **extra)


def randomise(model, seed=0):
    """Re-draw every torch parameter so activations stay O(1) (default inits leave DPT outputs near 1e-8)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.ndim >= 2 and p.shape[0] > 1:  # linear / conv / embedding tables: 1 / sqrt(fan-in)
                p.copy_(noise / math.sqrt(p[0].numel()))
            elif p.ndim >= 2:  # cls tokens, position embeddings
                p.copy_(noise * 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model


def hf_processor(resolution, stride, mean, std, keep_aspect=True):
    """transformers' DPTImageProcessor as the official DPT / Depth Anything folders configure it."""
    from transformers import DPTImageProcessor
    from transformers.image_utils import PILImageResampling

    return DPTImageProcessor(size={"height": resolution, "width": resolution}, keep_aspect_ratio=keep_aspect,
                             ensure_multiple_of=stride, resample=PILImageResampling.BICUBIC,
                             image_mean=list(mean), image_std=list(std))


def write_tiny_folder(root, model, with_processor=True):
    """save_pretrained of a randomised tiny torch model (+ its DPTImageProcessor) under root/model."""
    import torch
    import transformers

    folder = os.path.join(str(root), model)
    if os.path.isdir(folder):
        return folder
    cfg = {"dpt_large": lambda: dpt_config(False), "dpt_hybrid": lambda: dpt_config(True),
           "depth_anything_v2_small": depth_anything_config}[model]()
    cls = transformers.DepthAnythingForDepthEstimation if model.startswith("depth") else \
        transformers.DPTForDepthEstimation
    torch.manual_seed(0)
    randomise(cls(cfg).eval()).save_pretrained(folder, safe_serialization=True)
    if with_processor:
        _, res, stride, mean, std = TINY[model]
        hf_processor(res, stride, mean, std).save_pretrained(folder)
    return folder
