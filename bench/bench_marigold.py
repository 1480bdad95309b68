"""Whole Marigold frames on CPU: diffusers/PyTorch reference vs our streaming estimator (MindSpore).

Rows (each its own subprocess, one at a time, so peak RSS belongs to that configuration; it includes
loading the weights):
- ``torch_4step``: diffusers' MarigoldDepthPipeline with the v1-1 defaults (4 DDIM steps, full VAE,
  ensemble 1) on the random SD2-size folder, processing at the input size (``processing_resolution=0``),
  ``torch.set_num_threads(2)``.
- ``ours_cold4``: ``registry.create('marigold', steps=4, warm_start='none')``: every frame cold, 4 steps.
- ``ours_warm1``: ``warm_start='blend'``, ``warm_steps=1``, full VAE: the first frame is cold (4 steps),
  later frames run 1 UNet step.
- ``ours_warm1_tiny``: the same with TAESD as the VAE (``tiny_vae``), the streaming configuration.
- ``ours_warm1_tiny_blocks``: the same with ``unet_graphs='blocks'`` (one graph per UNet block instead of one
  for the pass: less memory, slower).

``--shipped``: the same rows on the Marigold-family folder the package ships (its 1-layer text encoder, its
processing resolution 128 for every row, the reference included): the like-for-like comparison at the size
the shipped model runs; ``ours_warm1`` is then the node's streaming configuration.

Input: consecutive simulator frames (defaults of config/sim.yaml at the requested size). The first call (compilation
in graph mode, cold frame for the warm rows) is reported separately; "median" is over the following
frames. Weights: ``write_marigold_folder(size='sd2')`` and ``write_taesd_folder(size='sd')`` once; by default
(``--text-encoder sd2``) with a real-size SD2 text encoder in place of that folder's one-layer one, since
the reference keeps it in memory (``bench_marigold_parts.with_sd2_text_encoder``).

    python bench/bench_marigold.py --sizes 320x240 640x480 --frames 4 --mode graph
    python bench/bench_marigold.py --shipped --sizes 320x240 --frames 12 --configs torch_4step ours_cold4 ours_warm1
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_marigold_parts import DEFAULT_FOLDER, DEFAULT_TAESD, ensure_weights, with_sd2_text_encoder  # noqa: E402
from tables import machine_line  # noqa: E402

CONFIGS = ("torch_4step", "ours_cold4", "ours_warm1", "ours_warm1_tiny", "ours_warm1_tiny_blocks")


def sim_frames(width: int, height: int, count: int) -> list:
    """Consecutive frames of the embedded simulator (config/sim.yaml holds its defaults) at this size."""
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from depth_ms.sim import DroneSimulator, load_sim_config

    sim = DroneSimulator(load_sim_config({"width": width, "height": height}))
    return [sim.render(i).to_frame() for i in range(count)]


def run_torch(folder: str, frames: list, resolution: int) -> tuple:
    import torch
    from diffusers import MarigoldDepthPipeline

    torch.set_num_threads(2)
    pipe = MarigoldDepthPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    times = []
    for frame in frames:
        start = time.perf_counter()
        with torch.no_grad():
            pipe(frame.rgb, num_inference_steps=4, ensemble_size=1, processing_resolution=resolution,
                 output_type="np", generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - start)
    return times, {}


def run_ours(config: str, folder: str, taesd: str, mode: str, frames: list, resolution: int) -> tuple:
    from depth_ms.models import registry

    options = {"checkpoint": folder, "steps": 4, "processing_resolution": resolution,  # as torch_4step
               "warm_start": "none" if config == "ours_cold4" else "blend",
               "warm_steps": 1, "tiny_vae": taesd if config.startswith("ours_warm1_tiny") else "",
               "unet_graphs": "blocks" if config.endswith("_blocks") else "whole"}
    estimator = registry.create("marigold", options, device="cpu", mode=mode)
    times, steps, parts = [], [], []
    for frame in frames:
        start = time.perf_counter()
        pred = estimator.predict(frame)
        times.append(time.perf_counter() - start)
        steps.append(pred.steps)
        parts.append(pred.extras.get("timings", {}))
    later = parts[1:] or parts
    split = {k: float(np.median([p[k] for p in later])) for k in ("encode", "unet", "decode") if k in later[0]}
    return times, dict(steps=steps, split=split)


def worker(config: str, width: int, height: int, count: int, folder: str, taesd: str, mode: str,
           resolution: int) -> dict:
    frames = sim_frames(width, height, count)
    t = time.perf_counter()
    if config == "torch_4step":
        times, extra = run_torch(folder, frames, resolution)
    else:
        times, extra = run_ours(config, folder, taesd, mode, frames, resolution)
    total = time.perf_counter() - t
    return dict(first_s=times[0], median_s=float(np.median(times[1:] if len(times) > 1 else times)),
                total_s=total, peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"], help="input WxH")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--frames", type=int, default=4, help="consecutive simulator frames per configuration")
    parser.add_argument("--mode", default="graph", choices=("graph", "pynative"), help="MindSpore mode (ours)")
    parser.add_argument("--folder", default=DEFAULT_FOLDER)
    parser.add_argument("--text-encoder", default="sd2", choices=("sd2", "small"),
                        help="sd2: the real-size text encoder (1.4 GB, as Marigold v1-1); small: --folder's own (49 MB)")
    parser.add_argument("--taesd", default=DEFAULT_TAESD)
    parser.add_argument("--json", default="")
    parser.add_argument("--shipped", action="store_true", help="the shipped sim-trained folder at its resolution")
    parser.add_argument("--resolution", type=int, default=0, help="processing resolution of every row (0 = input)")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        config, size = args.worker
        width, height = (int(v) for v in size.split("x"))
        print(json.dumps(worker(config, width, height, args.frames, args.folder, args.taesd, args.mode,
                                args.resolution)))
        return

    if args.shipped:
        sys.path.insert(0, os.path.join(ROOT, "src"))
        from depth_ms.models import weights

        args.folder, args.text_encoder = weights.shipped("marigold"), "small"
        with open(os.path.join(args.folder, "model_index.json")) as f:
            args.resolution = json.load(f)["default_processing_resolution"]
    ensure_weights(args.folder, args.taesd)
    if args.text_encoder == "sd2":
        args.folder = with_sd2_text_encoder(args.folder)
    print(f"checkpoint: {args.folder}, processing resolution {args.resolution or 'input size'}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]))
    rows = []
    print(machine_line())
    print(f"| config | input | mode | first frame s | median frame s (frames 2..{args.frames}) | steps | "
          "encode / unet / decode s | peak RSS GB | speed-up vs torch_4step |")
    print("|---|---|---|---:|---:|---|---|---:|---:|")
    for size in args.sizes:
        ref = None
        for config in args.configs:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", config, size, "--frames", str(args.frames),
                   "--mode", args.mode, "--folder", args.folder, "--taesd", args.taesd, "--resolution",
                   str(args.resolution)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            mode = "torch" if config.startswith("torch") else args.mode
            if proc.returncode != 0 or not lines:
                err = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[:300]
                print(f"| {config} | {size} | {mode} | failed: {err} | | | | | |", flush=True)
                rows.append(dict(config=config, size=size, error=err))
                continue
            r = json.loads(lines[-1])
            r.update(config=config, size=size, mode=mode)
            rows.append(r)
            if config == "torch_4step":
                ref = r["median_s"]
            split = " / ".join(f"{r['split'][k]:.2f}" for k in ("encode", "unet", "decode") if k in r.get("split", {}))
            speed = f"{ref / r['median_s']:.1f}x" if ref else ""
            print(f"| {config} | {size} | {mode} | {r['first_s']:.1f} | {r['median_s']:.2f} | "
                  f"{','.join(map(str, r.get('steps', [])))} | {split} | {r['peak_rss_gb']:.2f} | {speed} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
