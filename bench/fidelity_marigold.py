"""Fidelity at the real sizes: our cold engine vs diffusers' MarigoldDepthPipeline, same random weights.

The checkpoint is the SD2 UNet with 8 input channels and the SD VAE (random weights, written once with
diffusers to --folder); the input is a simulator frame. Each side runs in its own process (peak memory
stays one model); ours saves its fixed noise, the reference uses it as ``latents``. Prints a table.

    python bench/fidelity_marigold.py --sizes 320x240 --steps 1 4
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from tables import machine_line

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_FOLDER = os.path.expanduser("~/.cache/depth_ms/bench/marigold-sd2-random")


def ensure_folder(folder: str) -> None:
    """Write the real-size random checkpoint once (about 3.5 GB)."""
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return
    sys.path.insert(0, os.path.join(ROOT, "test", "models"))
    from marigold_checkpoints import write_marigold_folder

    print(f"[fidelity] writing a random SD2-size Marigold checkpoint to {folder} (once)", flush=True)
    write_marigold_folder(folder, size="sd2")


def sim_frame(width: int, height: int) -> np.ndarray:
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from depth_ms.sim import DroneSimulator, load_sim_config

    return DroneSimulator(load_sim_config({"width": width, "height": height})).render(5).rgb


def run_ours(folder: str, work: str, steps: int, mode: str) -> None:
    from depth_ms.models import registry

    options = {"checkpoint": folder, "steps": steps, "processing_resolution": 0}  # the input size, as the reference
    est = registry.create("marigold", options, device="cpu", mode=mode)
    rgb = np.load(os.path.join(work, "rgb.npy"))
    first = time.perf_counter()
    result = est.engine.run(rgb)
    first = time.perf_counter() - first
    est.reset()
    start = time.perf_counter()
    result = est.engine.run(rgb)
    seconds = time.perf_counter() - start
    np.save(os.path.join(work, "ours.npy"), result.depth)
    np.save(os.path.join(work, "noise.npy"), est.engine.noise(result.latent.shape))
    json.dump({"seconds": seconds, "first": first}, open(os.path.join(work, "ours.json"), "w"))


def run_reference(folder: str, work: str, steps: int) -> None:
    import torch
    from diffusers import MarigoldDepthPipeline

    torch.set_num_threads(os.cpu_count() or 1)
    pipe = MarigoldDepthPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    rgb = np.load(os.path.join(work, "rgb.npy"))
    image = torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)  # (1, 3, H, W)
    latents = torch.from_numpy(np.load(os.path.join(work, "noise.npy")))
    start = time.perf_counter()
    with torch.no_grad():
        out = pipe(image, num_inference_steps=steps, processing_resolution=0, latents=latents)
    seconds = time.perf_counter() - start
    np.save(os.path.join(work, "reference.npy"), out.prediction[0, :, :, 0])
    json.dump({"seconds": seconds}, open(os.path.join(work, "reference.json"), "w"))


def _child(side: str, folder: str, work: str, steps: int, mode: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, __file__, "--child", side, "--folder", folder, "--work", work, "--steps", str(steps),
           "--modes", mode]
    subprocess.run(cmd, check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=DEFAULT_FOLDER)
    parser.add_argument("--sizes", nargs="+", default=["320x240"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--modes", nargs="+", default=["graph"])
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ours":
        return run_ours(args.folder, args.work, args.steps[0], args.modes[0])
    if args.child == "reference":
        return run_reference(args.folder, args.work, args.steps[0])

    ensure_folder(args.folder)
    rows = []
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        for mode in args.modes:
            for steps in args.steps:
                with tempfile.TemporaryDirectory() as work:
                    np.save(os.path.join(work, "rgb.npy"), sim_frame(width, height))
                    _child("ours", args.folder, work, steps, mode)
                    _child("reference", args.folder, work, steps, mode)
                    ours, ref = np.load(os.path.join(work, "ours.npy")), np.load(os.path.join(work, "reference.npy"))
                    t_ours = json.load(open(os.path.join(work, "ours.json")))
                    t_ref = json.load(open(os.path.join(work, "reference.json")))
                diff = np.abs(ours.astype(np.float64) - ref)
                rows.append((size, mode, steps, diff.max(), diff.mean(), float(np.ptp(ref)), t_ref["seconds"],
                             t_ours["seconds"], t_ours["first"]))
                print(f"[fidelity] {size} {mode} {steps} steps: max |diff| {diff.max():.2e}", flush=True)
    print(f"\n{machine_line()}:\n")
    print("| input | MindSpore mode | steps | max abs diff | mean abs diff | depth range (ref) | "
          "PyTorch s | ours s | ours first call s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2e} | {r[4]:.2e} | {r[5]:.3f} | {r[6]:.1f} | {r[7]:.1f} | "
              f"{r[8]:.1f} |")


if __name__ == "__main__":
    main()
