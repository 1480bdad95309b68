"""Streaming Marigold: numpy image in, affine-invariant depth in [0, 1] out, one frame at a time.

Per frame: resize to the processing resolution and pad to the VAE factor, encode the RGB latent
once (posterior mean x scaling factor), initialise the depth latent cold (seeded noise) or warm
from the previous frame, run the UNet for the scheduled steps (the scheduler step is numpy maths,
:mod:`.schedulers`), decode, average the three channels, clip to [-1, 1], map to [0, 1], unpad and
resize back to the input size.

Warm-start schemes (``warm_start``):
- ``none``: every frame cold, ``steps`` steps.
- ``blend``: the diffusers video recipe: ``(1 - blend) * fixed noise + blend * previous latent``, then
  ``warm_steps`` steps of a fresh ``warm_steps``-step schedule (1 step: t = T - 1).
- ``renoise``: SDEdit style: noise the previous latent to the timestep ``steps - warm_steps`` steps
  into the ``steps``-step schedule and run only the remaining ``warm_steps`` steps.
- ``renoise_warp``: ``renoise`` after warping the previous latent into the current view, with the
  drone pose and the previous depth when the frame has a pose and intrinsics (and ``warp_motion`` is
  ``auto``), else with optical flow.
- ``fuse``: ``warm_steps`` steps from the fixed noise, as a cold frame of that many steps; the decoded depth
  is averaged with the previous frame's output warped into the current view as ``renoise_warp`` warps
  latents: ``(1 - fuse) * new + fuse * warped``. The previous output is itself fused, so this is a
  motion-compensated running average of the depth.
The first frame, and any frame after :meth:`reset`, a size change, a time jump or a scene cut, is cold.
A time jump is a stamp going back by more than ``max_frame_gap`` seconds (bag loops) or a step forward of
more than ``max_frame_gap`` in the input stream: ``Frame.input_gap``, the largest step between consecutive
input images since the previous frame (a live node drops the images that arrive while the model runs, so
processed frames are far apart on a slow CPU while the stream is continuous), else the step between the two
frames. Both are on the stamps' clock, so the decision does not depend on the machine's speed or on a bag
played faster than real time.
Ensemble mode (``ensemble > 1``, offline quality runs): that many cold members with different noise,
aligned per member (scale, shift) and reduced by median; the uncertainty is the median absolute
deviation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from depth_ms.core.image_ops import canonical_rgb
from depth_ms.core.types import Frame, Intrinsics

from . import imaging, unet_segments, warping
from .checkpoint import MarigoldParts
from .ensemble import ensemble_depth

WARM_STARTS = ("none", "blend", "renoise", "renoise_warp", "fuse")
WARPED_STARTS = ("renoise_warp", "fuse")  # schemes that move the previous frame (latent, output) into the view
LARGE_VAE_PARAMETERS = 20_000_000  # a full VAE above this runs eagerly in graph mode (SD's: 84 M)


@dataclass
class EngineOptions:
    """Sampling options (estimator options of the same names; docs/models.md, 'Marigold')."""

    steps: int = 0  # cold steps; 0 = the checkpoint's default (v1-1: 4, LCM: 1)
    processing_resolution: int = 0  # longer edge in pixels; 0 = the input size
    warm_start: str = "none"  # none | blend | renoise | renoise_warp | fuse
    warm_steps: int = 1  # steps run on warm frames
    blend: float = 0.1  # weight of the previous latent in the blend scheme
    fuse: float = 0.7  # weight of the warped previous output in the fuse scheme
    seed: int = 0  # noise seed (cold frames and re-noising reuse the same fixed noise)
    ensemble: int = 1  # members per frame (> 1 disables warm starts)
    tiny_vae_side: str = "both"  # with a tiny VAE loaded: both | decode | encode (which side uses it)
    unet_graphs: str = "whole"  # graph mode: whole (one graph) | blocks (one graph per UNet block: less memory, slower)
    scene_cut: float = 0.25  # mean absolute grey change (0..1) of a 64-px thumbnail that forces a cold frame
    max_frame_gap: float = 1.0  # stamp step (s) of the input stream beyond which the next frame is cold
    warp_depth_range: list = field(default_factory=lambda: [1.0, 40.0])  # metres [0, 1] depth maps to (pose warp)
    warp_motion: str = "auto"  # renoise_warp, fuse: auto (pose when known, else optical flow) | flow

    def validate(self) -> None:
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start '{self.warm_start}' is not one of {WARM_STARTS}")
        if self.tiny_vae_side not in ("both", "decode", "encode"):
            raise ValueError(f"tiny_vae_side '{self.tiny_vae_side}' is not one of both, decode, encode")
        if self.unet_graphs not in ("blocks", "whole"):
            raise ValueError(f"unet_graphs '{self.unet_graphs}' is not one of blocks, whole")
        if self.warp_motion not in ("auto", "flow"):
            raise ValueError(f"warp_motion '{self.warp_motion}' is not one of auto, flow")
        if self.steps < 0 or self.warm_steps < 1 or self.ensemble < 1 or self.processing_resolution < 0:
            raise ValueError("steps >= 0, warm_steps >= 1, ensemble >= 1 and processing_resolution >= 0 required")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"blend must be in [0, 1], got {self.blend}")
        if not 0.0 <= self.fuse < 1.0:
            raise ValueError(f"fuse must be in [0, 1), got {self.fuse}")
        if len(self.warp_depth_range) != 2 or not 0 < self.warp_depth_range[0] < self.warp_depth_range[1]:
            raise ValueError(f"warp_depth_range must be [near, far] metres, got {self.warp_depth_range}")


@dataclass
class EngineResult:
    """One frame's output (depth at input size) and facts for DepthInfo and the benchmark."""

    depth: np.ndarray  # (H, W) float32 in [0, 1]
    latent: np.ndarray  # (1, C, h, w) final depth latent
    steps: int
    warm: bool
    motion: str  # renoise_warp, fuse: "pose" or "flow" (what moved the previous latent / output); else ""
    reason: str  # why cold: "first", "reset", "size", "time_jump", "scene_cut", "disabled"; "" when warm
    uncertainty: Optional[np.ndarray] = None
    timings: dict = field(default_factory=dict)  # seconds: encode, unet (all steps), decode, total


class _Modules:
    """The three model calls as small Cells: graph mode compiles each as one graph (the UNet step one per
    block with ``unet_graphs='blocks'``), except a full VAE (eager)."""

    def __init__(self, parts: MarigoldParts, tiny_side: str, unet_graphs: str = "whole") -> None:
        import mindspore as ms
        from mindspore import nn, ops

        info = parts.info
        use_tiny = parts.tiny_vae is not None
        enc_vae = parts.tiny_vae if use_tiny and tiny_side in ("both", "encode") else parts.vae
        dec_vae = parts.tiny_vae if use_tiny and tiny_side in ("both", "decode") else parts.vae
        if enc_vae is None or dec_vae is None:
            raise ValueError(f"tiny_vae_side '{tiny_side}' needs the checkpoint's full VAE, which was not loaded")
        latent_c = info.latent_channels
        enc_tiny, dec_tiny = enc_vae is parts.tiny_vae, dec_vae is parts.tiny_vae
        enc_scale = float(enc_vae.config.scaling_factor) if enc_tiny else info.scaling_factor
        dec_scale = float(dec_vae.config.scaling_factor) if dec_tiny else info.scaling_factor

        class Encode(nn.Cell):
            def __init__(self):
                super().__init__()
                self.vae = enc_vae

            def construct(self, image):  # (1, 3, H, W) in [-1, 1]
                moments = self.vae.encode(image)[0]  # KL: (1, 2C, h, w) mean and log-variance; tiny: (1, C, h, w)
                return moments[:, :latent_c] * enc_scale  # (1, C, h, w) posterior mean

        class Denoise(nn.Cell):
            def __init__(self):
                super().__init__()
                self.unet = parts.unet

            def construct(self, image_latent, latent, timestep, text):
                x = ops.concat((image_latent, latent), 1)  # (B, 2C, h, w)
                return self.unet(x, timestep, text)[0]  # (B, C, h, w)

        class Decode(nn.Cell):
            def __init__(self):
                super().__init__()
                self.vae = dec_vae

            def construct(self, latent):  # (B, C, h, w)
                image = self.vae.decode(latent / dec_scale)[0]  # (B, 3, H, W)
                depth = ops.clamp(image.mean(axis=1, keep_dims=True), -1.0, 1.0)  # (B, 1, H, W)
                return (depth + 1.0) / 2.0

        self.ms = ms
        self.encode, self.denoise, self.decode = Encode(), Denoise(), Decode()
        for cell in (self.encode, self.denoise, self.decode):
            cell.set_train(False)
        if unet_graphs == "blocks" and ms.get_context("mode") == ms.GRAPH_MODE and unet_segments.supports(parts.unet):
            self.denoise = unet_segments.SegmentedUNet(parts.unet)  # same call, one graph per block
        self.text = parts.text_embedding  # (1, tokens, hidden)
        # In graph mode a large full VAE runs eagerly: MindSpore's CPU graphs hold every intermediate tensor at
        # once (SD's VAE decode 4.5 vs 1.7 GB at 320x240; out of 24 GB at 640x480), for 15-25 % of its time.
        # A small one (the shipped sim-trained VAE: 0.7 M parameters) stays compiled.
        def large(vae) -> bool:
            return sum(p.size for p in vae.get_parameters()) > LARGE_VAE_PARAMETERS

        self.eager_encode = not enc_tiny and large(enc_vae)
        self.eager_decode = not dec_tiny and large(dec_vae)

    def call(self, cell, eager: bool, *inputs):
        """``cell(*inputs)``; with ``eager`` in PyNative even when the context is in graph mode."""
        ms = self.ms
        if not eager or ms.get_context("mode") != ms.GRAPH_MODE:
            return cell(*inputs)
        ms.set_context(mode=ms.PYNATIVE_MODE)
        try:
            return cell(*inputs)
        finally:
            ms.set_context(mode=ms.GRAPH_MODE)


class MarigoldEngine:
    """Streaming depth with a loaded checkpoint (:func:`.checkpoint.load`)."""

    def __init__(self, parts: MarigoldParts, options: EngineOptions,
                 before_shape: Optional[Callable[[tuple], None]] = None) -> None:
        """``before_shape(model input shape)`` runs before each frame's networks (the compile cache)."""
        options.validate()
        self.parts, self.options = parts, options
        self.before_shape = before_shape
        self.sampler = parts.info.sampler
        self.steps = options.steps or parts.info.default_steps
        if options.warm_start in ("renoise", "renoise_warp") and options.warm_steps >= self.steps:
            raise ValueError(f"warm_start '{options.warm_start}' needs warm_steps < steps ({options.warm_steps} >= "
                             f"{self.steps}): it skips the first steps of the schedule")
        self.align = parts.info.vae_scale_factor
        # below this many pixels a side, the UNet's down/up-sampling cannot match shapes
        self.min_side = self.align * 2 ** (len(parts.unet.config.block_out_channels) - 1)
        self.modules = _Modules(parts, options.tiny_vae_side, options.unet_graphs)
        self._noise: dict[tuple, np.ndarray] = {}
        self._prev: Optional[dict] = None
        self._reset_reason = "first"

    # ------------------------------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget the previous frame: the next one is cold."""
        self._prev = None
        self._reset_reason = "reset"

    def noise(self, shape: tuple, member: int = 0) -> np.ndarray:
        """The fixed standard-normal latent noise for ``shape`` (seeded; reused every frame)."""
        key = (tuple(shape), member)
        if key not in self._noise:
            rng = np.random.default_rng(self.options.seed + 1000003 * member)
            self._noise[key] = rng.standard_normal(shape).astype(np.float32)
        return self._noise[key]

    # ------------------------------------------------------------------------------------- model calls

    def _tensor(self, array: np.ndarray):
        return self.modules.ms.Tensor(np.ascontiguousarray(array, dtype=np.float32))

    def encode(self, image: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) in [-1, 1] -> RGB latent (1, C, H/f, W/f)."""
        return self.modules.call(self.modules.encode, self.modules.eager_encode, self._tensor(image)).asnumpy()

    def denoise(self, image_latent: np.ndarray, latent: np.ndarray, timesteps: np.ndarray, start: int = 0,
                noise_member: int = 0) -> np.ndarray:
        """Run ``timesteps[start:]`` from ``latent``; returns the final latent (1, C, h, w)."""
        ms = self.modules.ms
        image_t = self._tensor(image_latent)
        for index in range(start, len(timesteps)):
            t = ms.Tensor(np.array([timesteps[index]], dtype=np.int64))
            out = self.modules.denoise(image_t, self._tensor(latent), t, self.modules.text).asnumpy()
            # LCM re-noises between its steps with fresh noise each step (seeded, like everything here)
            renoise = self.noise(latent.shape, 1000 + 100 * noise_member + index) if self.sampler.kind == "lcm" \
                else None
            latent = self.sampler.step(out, timesteps, index, latent, renoise)  # (1, C, h, w)
        return latent

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Latent (B, C, h, w) -> depth (B, 1, H, W) in [0, 1]."""
        return self.modules.call(self.modules.decode, self.modules.eager_decode, self._tensor(latent)).asnumpy()

    # ------------------------------------------------------------------------------------------ frames

    def _cold_reason(self, size: tuple, thumb: np.ndarray, stamp: Optional[float],
                     input_gap: Optional[float]) -> str:
        if self.options.ensemble > 1 or self.options.warm_start == "none":
            return "disabled"
        if self._prev is None:
            return self._reset_reason
        if self._prev["size"] != size:
            return "size"
        if stamp is not None and self._prev["stamp"] is not None:
            gap, bound = stamp - self._prev["stamp"], self.options.max_frame_gap
            forward = gap if input_gap is None else input_gap
            if gap < -bound or forward > bound:
                return "time_jump"
        if float(np.abs(thumb - self._prev["thumb"]).mean()) > self.options.scene_cut:
            return "scene_cut"
        return ""

    def _warm_latent(self, latent_shape: tuple, frame: Optional[Frame], grey: np.ndarray) -> tuple:
        """Initial latent, schedule, first schedule index and motion source for a warm frame."""
        opts, prev = self.options, self._prev
        if opts.warm_start == "blend":
            timesteps = self.sampler.timesteps(opts.warm_steps)
            init = (1.0 - opts.blend) * self.noise(latent_shape) + opts.blend * prev["latent"]
            return init.astype(np.float32), timesteps, 0, ""
        timesteps = self.sampler.timesteps(self.steps)
        start = max(0, self.steps - opts.warm_steps)
        previous, motion = prev["latent"], ""
        if opts.warm_start == "renoise_warp":
            previous, motion = self._warp(previous, prev["depth_small"], frame, grey)
        init = self.sampler.add_noise(previous, self.noise(latent_shape), int(timesteps[start]))
        return init, timesteps, start, motion

    def _warp(self, array: np.ndarray, depth: np.ndarray, frame: Optional[Frame], grey: np.ndarray
              ) -> tuple[np.ndarray, str]:
        """The previous frame's ``array`` (1, C, h, w) on the padded processing grid at (h, w) (latents, or the
        output depth at full size), moved into the current view; ``depth`` (h, w) is its [0, 1] depth there."""
        prev = self._prev
        have_pose = (self.options.warp_motion == "auto" and frame is not None and frame.pose_map_camera is not None
                     and prev.get("pose") is not None
                     and frame.intrinsics is not None and frame.intrinsics.is_valid())
        if have_pose:
            h, w = array.shape[-2:]
            near, far = self.options.warp_depth_range
            metres = near + (far - near) * depth  # (h, w) metres, from the [0, 1] depth
            grid_k = _latent_intrinsics(frame.intrinsics, prev["processing"], prev["padding"], w, h)
            return warping.warp_by_pose(array, metres, grid_k, prev["pose"], frame.pose_map_camera), "pose"
        return warping.warp_by_flow(array, warping.flow_to_previous(prev["grey"], grey)), "flow"

    def _fuse(self, depth: np.ndarray, padding: tuple, frame: Optional[Frame], grey: np.ndarray
              ) -> tuple[np.ndarray, str]:
        """This frame's depth (ph, pw) averaged with the previous output moved into this view."""
        previous = self._prev["depth_padded"]  # (ph + pad, pw + pad) in [0, 1]
        warped, motion = self._warp(previous[None, None], previous, frame, grey)
        warped = imaging.unpad(warped, padding)[0, 0]  # (ph, pw)
        weight = self.options.fuse
        return ((1.0 - weight) * depth + weight * warped).astype(np.float32), motion  # (ph, pw) in [0, 1]

    def run(self, rgb: np.ndarray, frame: Optional[Frame] = None) -> EngineResult:
        """Depth for one image (uint8 (H, W, 3), grey or RGBA); ``frame`` supplies stamp, pose and intrinsics."""
        t0 = time.perf_counter()
        rgb = canonical_rgb(rgb, imaging.MAX_PIXELS)
        height, width = rgb.shape[:2]
        image, padding = imaging.to_model_input(rgb, self.options.processing_resolution, self.align, self.min_side)
        if self.before_shape is not None:
            self.before_shape(image.shape)
        thumb = imaging.thumbnail(rgb)
        stamp = None if frame is None else frame.stamp
        reason = self._cold_reason((height, width), thumb, stamp, None if frame is None else frame.input_gap)
        grey = None
        if self.options.warm_start in WARPED_STARTS:  # (ph, pw) uint8 grey at processing size, for the flow
            processing = (image.shape[2] - padding[0], image.shape[3] - padding[1])
            grey = imaging.resize(rgb.transpose(2, 0, 1).astype(np.float32).mean(0, keepdims=True), *processing,
                                  True)[0].clip(0, 255).astype(np.uint8)
        timings = {}
        t = time.perf_counter()
        image_latent = self.encode(image)  # (1, C, h, w)
        timings["encode"] = time.perf_counter() - t
        if self.options.ensemble > 1:
            latent, steps, depth_small, uncertainty, motion = self._ensemble(image_latent, padding, timings)
        else:
            latent, steps, depth_small, motion = self._single(image_latent, padding, reason, frame, grey, timings)
            uncertainty = None
        depth = imaging.resize(depth_small[None], height, width, antialias=False)[0]  # (H, W)
        if uncertainty is not None:
            uncertainty = imaging.resize(uncertainty[None], height, width, antialias=False)[0]  # (H, W)
        timings["total"] = time.perf_counter() - t0
        self._remember(latent, depth_small, padding, (height, width), thumb, grey, stamp, frame)
        return EngineResult(depth=depth.astype(np.float32), latent=latent, steps=steps, warm=not reason,
                            motion=motion, reason=reason, uncertainty=uncertainty, timings=timings)

    def _single(self, image_latent, padding, reason, frame, grey, timings) -> tuple:
        """One cold or warm sample: (latent, steps run, depth (ph, pw), motion source)."""
        t = time.perf_counter()
        motion = ""
        fusing = not reason and self.options.warm_start == "fuse"
        if reason or fusing:
            timesteps = self.sampler.timesteps(self.options.warm_steps if fusing else self.steps)
            start, init = 0, self.noise(image_latent.shape)
        else:
            init, timesteps, start, motion = self._warm_latent(image_latent.shape, frame, grey)
        latent = self.denoise(image_latent, init, timesteps, start)  # (1, C, h, w)
        timings["unet"] = time.perf_counter() - t
        t = time.perf_counter()
        depth_small = imaging.unpad(self.decode(latent), padding)[0, 0]  # (ph, pw)
        if fusing:
            depth_small, motion = self._fuse(depth_small, padding, frame, grey)
        timings["decode"] = time.perf_counter() - t
        return latent, len(timesteps) - start, depth_small, motion

    def _ensemble(self, image_latent, padding, timings) -> tuple:
        """``ensemble`` cold members: (first latent, steps run, depth (ph, pw), MAD (ph, pw), "")."""
        t = time.perf_counter()
        timesteps = self.sampler.timesteps(self.steps)
        members = [self.denoise(image_latent, self.noise(image_latent.shape, m), timesteps, noise_member=m)
                   for m in range(self.options.ensemble)]  # E x (1, C, h, w)
        timings["unet"] = time.perf_counter() - t
        t = time.perf_counter()
        depths = imaging.unpad(self.decode(np.concatenate(members)), padding)[:, 0]  # (E, ph, pw)
        timings["decode"] = time.perf_counter() - t
        depth_small, uncertainty = ensemble_depth(depths)
        return members[0], self.steps * self.options.ensemble, depth_small, uncertainty, ""

    def _remember(self, latent, depth_small, padding, size, thumb, grey, stamp, frame) -> None:
        """Keep what the next frame's warm start and cold tests need."""
        lat_h, lat_w = latent.shape[-2:]
        padded = np.pad(depth_small, ((0, padding[0]), (0, padding[1])), mode="edge")  # (h * f, w * f)
        self._prev = dict(latent=latent, size=size, thumb=thumb, grey=grey, stamp=stamp,
                          pose=None if frame is None else frame.pose_map_camera,
                          processing=depth_small.shape, padding=padding, depth_padded=padded,
                          depth_small=imaging.resize(padded[None], lat_h, lat_w, True)[0])  # (h, w)


def _latent_intrinsics(k: Intrinsics, processing: tuple, padding: tuple, lat_w: int, lat_h: int) -> Intrinsics:
    """Intrinsics of the latent grid: the image scaled to the processing size, padded, then /f."""
    ph, pw = processing
    scaled = k.scaled_to(pw, ph)
    padded = Intrinsics(scaled.fx, scaled.fy, scaled.cx, scaled.cy, pw + padding[1], ph + padding[0])
    return padded.scaled_to(lat_w, lat_h)
