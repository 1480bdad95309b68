"""Relative-depth estimators: MiDaS v2.1 small, DPT-Hybrid / DPT-Large (MiDaS v3.0), Depth Anything V2 small.

Each maps one uint8 frame to affine-invariant inverse depth (AFFINE_DISPARITY) at the input size:
convert (grey -> 3 channels, RGBA -> drop alpha), resize to the model's resolution keeping the aspect
and rounding to the stride, normalise, run the MindSpore network, interpolate the prediction back
(bicubic, align_corners=False). Stateless: ``reset`` does nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from depth_ms.core.config import from_dict
from depth_ms.core.image_ops import canonical_rgb
from depth_ms.core.types import DepthKind, DepthPrediction, Frame
from depth_ms.models import weights as weight_files
from depth_ms.models.base import EstimatorError

from . import preprocess as pp


@dataclass
class FastDepthOptions:
    """Options shared by the four models (``estimator:`` section of the node/tool YAML)."""

    weights: str = ""  # HF folder (DPT, Depth Anything) or .safetensors file (MiDaS); "" = default location
    resolution: int = 0  # target side before rounding; 0 = the folder's preprocessor_config.json size or the
    # resolution a trained .safetensors file records, else the model's (256 MiDaS, 384 DPT, 518 Depth Anything)
    keep_aspect: bool = True  # False squashes to resolution x resolution (Intel's DPT processor does)
    resize_rule: str = ""  # "" = the model's: 'upper_bound' (MiDaS) or 'hf' (DPTImageProcessor rule)
    upsample: str = "bicubic"  # prediction back to input size: 'bicubic' or 'bilinear'


# model -> (default resolution, stride, default rule, default preprocessing without a processor file)
MODEL_DEFAULTS = {
    "midas": (256, 32, "upper_bound", dict(resample="cv2_cubic")),
    "dpt_hybrid": (384, 32, "hf", dict(mean=pp.HALF, std=pp.HALF)),
    "dpt_large": (384, 32, "hf", dict(mean=pp.HALF, std=pp.HALF)),
    "depth_anything_v2_small": (518, 14, "hf", dict()),
}


def build_preprocessing(model: str, options: FastDepthOptions, processor: dict | None = None,
                        stride: int | None = None) -> pp.Preprocessing:
    """The model's preprocessing: its defaults, the folder's preprocessor_config.json, then the options."""
    resolution, default_stride, rule, fields = MODEL_DEFAULTS[model]
    height = width = options.resolution or resolution
    if not options.resolution and processor is not None:
        height, width = pp.hf_processor_size(processor) or (height, width)
    try:
        prep = pp.Preprocessing(height=height, width=width, keep_aspect=options.keep_aspect,
                                multiple_of=stride or default_stride, rule=options.resize_rule or rule,
                                upsample=options.upsample, **fields)
        if processor is not None:
            prep = pp.from_hf_processor_config(processor, prep)
    except ValueError as e:
        raise EstimatorError(f"{model}: {e}") from e
    return prep


class RelativeDepthEstimator:
    """Preprocess -> network -> upsample; the network is any (1, 3, h, w) -> (h, w) numpy callable."""

    kind = DepthKind.AFFINE_DISPARITY
    needs_ground_truth = False

    def __init__(self, name: str, run: Callable[[np.ndarray], np.ndarray], prep: pp.Preprocessing,
                 graph: bool = False, weights: str = "") -> None:
        self.name = name
        self.weights = weights  # which weights run ("official: <path>", "shipped: <path>", ...)
        self.run = run
        self.prep = prep
        self.graph = graph

    def predict(self, frame: Frame) -> DepthPrediction:
        rgb = canonical_rgb(frame.rgb)  # BadInputError for wrong dtype / channels
        height, width = rgb.shape[:2]
        x = pp.preprocess(rgb, self.prep)  # (1, 3, h, w)
        pred = self.run(x)  # (h', w')
        if not np.isfinite(pred).all():
            raise EstimatorError(f"{self.name}: the network returned non-finite values for a "
                                 f"{width}x{height} frame")
        depth = pp.upsample_prediction(pred, height, width, self.prep.upsample)  # (H, W)
        return DepthPrediction(depth=depth, kind=self.kind,
                               extras={"resolution": (int(x.shape[3]), int(x.shape[2])), "graph": self.graph})

    def reset(self) -> None:
        """Stateless."""

    def warm_up(self, width: int, height: int) -> float:
        """One forward at ``width`` x ``height`` (compiles in graph mode); seconds taken."""
        start = time.perf_counter()
        self.predict(Frame(rgb=np.zeros((height, width, 3), np.uint8), stamp=0.0))
        return time.perf_counter() - start


def _options(options: dict) -> FastDepthOptions:
    return from_dict(FastDepthOptions, options, "estimator")


def _create_hf(model: str, options: dict, device: str, mode: str) -> RelativeDepthEstimator:
    from . import hf_models

    opts = _options(options)
    folder = weight_files.resolve(opts.weights, model)
    loaded = hf_models.load(folder, model, device=device, mode=mode)
    prep = build_preprocessing(model, opts, hf_models.processor_config(folder), loaded.stride)
    source = "explicit" if opts.weights else "official"
    return RelativeDepthEstimator(model, loaded.run, prep, loaded.graph, f"{source}: {folder}")


def create_midas_small(options: dict, device: str = "cpu", mode: str = "pynative") -> RelativeDepthEstimator:
    """MiDaS v2.1 small (midas_v21_small_256 as .safetensors) with the official MiDaS transform.

    Without an explicit file or the official release, the package's own sim-trained fast depth network
    (same transform and output convention) runs; the file's metadata says which architecture it holds.
    """
    opts = _options(options)
    found = weight_files.locate(opts.weights, "midas", "MiDaS v2.1 small weights")
    from depth_ms.models import mindspore_device

    mindspore_device.keep_torch_out()
    mindspore_device.configure(device)
    import mindspore as ms

    from .fast_net import load_relative_net

    net, trained_resolution = load_relative_net(found.path)
    net.set_train(False)
    if not opts.resolution and trained_resolution:  # the size the file's network was trained to run at
        opts = replace(opts, resolution=trained_resolution)
    forward = ms.jit(net.construct) if mode == "graph" else net

    def run(x: np.ndarray) -> np.ndarray:
        return forward(ms.Tensor(x)).asnumpy()[0]  # (h, w)

    return RelativeDepthEstimator("midas", run, build_preprocessing("midas", opts), mode == "graph", found.describe())


def create_dpt_hybrid(options: dict, device: str = "cpu", mode: str = "pynative") -> RelativeDepthEstimator:
    """DPT-Hybrid (MiDaS v3.0, Intel/dpt-hybrid-midas folder)."""
    return _create_hf("dpt_hybrid", options, device, mode)


def create_dpt_large(options: dict, device: str = "cpu", mode: str = "pynative") -> RelativeDepthEstimator:
    """DPT-Large (MiDaS v3.0, Intel/dpt-large folder)."""
    return _create_hf("dpt_large", options, device, mode)


def create_depth_anything_v2_small(options: dict, device: str = "cpu",
                                   mode: str = "pynative") -> RelativeDepthEstimator:
    """Depth Anything V2 small (depth-anything/Depth-Anything-V2-Small-hf folder)."""
    return _create_hf("depth_anything_v2_small", options, device, mode)


__all__ = ["FastDepthOptions", "RelativeDepthEstimator", "build_preprocessing", "create_midas_small",
           "create_dpt_hybrid", "create_dpt_large", "create_depth_anything_v2_small"]
