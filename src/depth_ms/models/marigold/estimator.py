"""The ``marigold`` and ``marigold_lcm`` estimators: checkpoint + streaming engine behind the protocol."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from depth_ms.core.config import from_dict
from depth_ms.core.types import DepthKind, DepthPrediction, Frame
from depth_ms.models import mindspore_device, weights
from depth_ms.models.base import EstimatorError

from .compile_cache import CompileCache


@dataclass
class MarigoldOptions:
    """Estimator options (``~estimator`` of depth_node; docs/models.md, 'Marigold')."""

    checkpoint: str = ""  # diffusers folder; "" = <weights dir>/marigold-depth-v1-1 (LCM: ...-lcm-v1-0), else shipped
    tiny_vae: str = ""  # AutoencoderTiny (TAESD) folder; "" = the checkpoint's full VAE
    tiny_vae_side: str = "both"  # both | decode | encode: where the tiny VAE replaces the full one
    unet_graphs: str = "whole"  # graph mode: whole (one graph) | blocks (a graph per UNet block: less memory, slower)
    steps: int = 0  # 0 = the checkpoint's default
    processing_resolution: int = -1  # longer edge in pixels; -1 = the checkpoint's (model_index.json); 0 = input size
    warm_start: str = "none"  # none | blend | renoise | renoise_warp | fuse
    warm_steps: int = 1
    blend: float = 0.1
    fuse: float = 0.7
    seed: int = 0
    ensemble: int = 1
    scene_cut: float = 0.25
    max_frame_gap: float = 1.0
    warp_depth_range: list = field(default_factory=lambda: [1.0, 40.0])
    warp_motion: str = "auto"  # renoise_warp, fuse: auto (pose when the frame has one, else optical flow) | flow
    compile_cache: str = ""  # graph mode: MindSpore's compile cache folder, e.g. ~/.cache/depth_ms/compile;
    # "" = off. One sub-folder per architecture and model input shape; a second shape in one process runs uncached.


class MarigoldEstimator:
    """Affine-invariant depth (``AFFINE_DEPTH``, 0 near, 1 far) from a Marigold checkpoint, streamed."""

    needs_ground_truth = False

    def __init__(self, engine, name: str = "marigold", weights: str = "") -> None:
        self.engine = engine
        self.name = name
        self.weights = weights  # which checkpoint runs ("official: <path>", ...)
        info = engine.parts.info
        self.kind = DepthKind.AFFINE_DISPARITY if info.prediction_type == "disparity" else DepthKind.AFFINE_DEPTH
        # the node then looks up the camera TF
        from .engine import WARPED_STARTS

        self.uses_pose = engine.options.warm_start in WARPED_STARTS and engine.options.warp_motion == "auto"

    def predict(self, frame: Frame) -> DepthPrediction:
        result = self.engine.run(frame.rgb, frame)
        opts = self.engine.options
        scheme = opts.warm_start if opts.ensemble == 1 else f"ensemble{opts.ensemble}"
        if result.motion:  # what moved the previous frame: "renoise_warp:pose", "fuse:flow", ...
            scheme = f"{scheme}:{result.motion}"
        return DepthPrediction(depth=result.depth, kind=self.kind, steps=result.steps, warm_start=scheme,
                               warm=result.warm, uncertainty=result.uncertainty,
                               extras=dict(cold_reason=result.reason, timings=result.timings))

    def reset(self) -> None:
        self.engine.reset()

    def warm_up(self, width: int, height: int) -> float:
        """Compile at this size (a cold and, with warm starts, a warm frame), then forget the frames."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        start = time.perf_counter()
        self.engine.run(image)
        if self.engine.options.warm_start != "none":
            self.engine.run(image)
        self.engine.reset()
        return time.perf_counter() - start


def _build(options: dict, device: str, mode: str, default_model: str, name: str) -> MarigoldEstimator:
    opts = from_dict(MarigoldOptions, options, "estimator")
    from .engine import EngineOptions

    found = weights.locate(opts.checkpoint, default_model, "Marigold checkpoint folder")
    checkpoint_path = found.path
    tiny_path = weights.resolve(opts.tiny_vae, "taesd") if opts.tiny_vae else ""
    from .checkpoint import check_folder, check_tiny_vae_folder

    info = check_folder(checkpoint_path)  # fail on a missing file before MindSpore starts
    if tiny_path:
        check_tiny_vae_folder(tiny_path)
    if opts.processing_resolution == -1:  # the resolution the checkpoint was made for (model_index.json)
        opts.processing_resolution = info.default_resolution
    engine_opts = EngineOptions(**{f.name: getattr(opts, f.name) for f in fields(EngineOptions)})
    try:
        engine_opts.validate()
    except ValueError as exc:
        raise EstimatorError(f"estimator options: {exc}") from exc
    compile_cache = None
    if mode == "graph" and opts.compile_cache and os.path.isfile(sys.argv[0]):  # the cache hashes the entry script
        # Reuses compiled graphs across runs (SD2-size first frame 50 s -> 28 s); graphs, not weight values
        # (test_compile_cache_reuses_graphs_not_weights); one folder per architecture and input shape.
        compile_cache = CompileCache(opts.compile_cache, checkpoint_path, tiny_path, engine_opts)
    mindspore_device.keep_torch_out()
    mindspore_device.configure(device, mode)
    from .checkpoint import load
    from .engine import MarigoldEngine

    parts = load(checkpoint_path, tiny_path, full_vae=not (tiny_path and opts.tiny_vae_side == "both"))
    try:
        engine = MarigoldEngine(parts, engine_opts, before_shape=compile_cache)
    except ValueError as exc:
        raise EstimatorError(f"estimator options: {exc}") from exc
    return MarigoldEstimator(engine, name, found.describe())


def create(options: dict, device: str = "cpu", mode: str = "pynative") -> MarigoldEstimator:
    """Registry factory for ``marigold`` (v1-1 by default)."""
    return _build(options, device, mode, "marigold", "marigold")


def create_lcm(options: dict, device: str = "cpu", mode: str = "pynative") -> MarigoldEstimator:
    """Registry factory for ``marigold_lcm`` (the LCM v1-0 checkpoint by default)."""
    return _build(options, device, mode, "marigold_lcm", "marigold_lcm")


def option_names() -> list[str]:
    """Documented option names (docs/models.md table, launch args)."""
    return list(asdict(MarigoldOptions()))
