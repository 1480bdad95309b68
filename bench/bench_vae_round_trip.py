#!/usr/bin/env python3
"""What Marigold-family VAEs keep of the validation frames; prints one table.

For each VAE (a Marigold folder such as the shipped ``marigold_sim``, or a VAE-stage checkpoint of a run), on
the training config's validation frames at its processing resolution: the RGB round trip's PSNR
(mean and worst frame; the UNet sees the image only through this RGB latent) and the depth round trip
scored like a prediction (AbsRel / delta1, per-frame least squares in depth: the best any UNet can reach
through this decoder). The first row resizes to the processing size and back without a VAE: the bound that
resolution alone sets.

    source scripts/env.sh && python bench/bench_vae_round_trip.py [VAE ...] [--config CONFIG.yaml]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from tables import machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "src/depth_ms/models/shipped/marigold_sim"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("vaes", nargs="*", default=[SHIPPED],
                        help="Marigold folders or VAE-stage checkpoints (folder or model.safetensors)")
    parser.add_argument("--config", default="config/training/marigold.yaml",
                        help="training config: validation bags, frame count, processing resolution")
    args = parser.parse_args()
    os.chdir(ROOT)
    from depth_ms.models import mindspore_device

    os.environ["DEPTH_MS_NATIVE_KERNELS"] = "0"  # the training stage's own kernels, as it validates
    mindspore_device.configure("cpu")
    from depth_ms.ros.train import expand, load_samples
    from depth_ms.training.config import load_train_config
    from depth_ms.training.validation import spread, validate
    from depth_ms.training.vae_round_trip import depth_at_processing_size, depth_round_trip, load_vae, rgb_psnr

    config = load_train_config(args.config)
    d, resolution = config.data, config.resolution
    samples = spread(load_samples(expand(d.val, ROOT), config).samples, d.val_frames)
    if not samples:
        print(f"no validation frames in {d.val}: rosrun depth_ms sim_flights config/training/flights.yaml "
              "-o data/flights", file=sys.stderr)
        return 2
    header = ["VAE", "RGB PSNR dB (mean)", "RGB PSNR dB (worst)", "depth AbsRel", "depth delta1", "s"]
    start = time.monotonic()
    depth = validate(lambda s: (depth_at_processing_size(s.depth, resolution)[0, 0] + 1.0) / 2.0, samples,
                     d.min_depth, d.max_depth, "depth")
    rows = [["none (resize only)", "-", "-", f"{depth['abs_rel']:.4f}", f"{depth['delta1']:.4f}",
             f"{time.monotonic() - start:.0f}"]]
    for path in args.vaes:
        start = time.monotonic()
        vae = load_vae(Path(path))
        psnr = [rgb_psnr(vae, s.rgb, resolution) for s in samples]
        depth = validate(lambda s: depth_round_trip(vae, s.depth, resolution), samples, d.min_depth, d.max_depth,
                         "depth")
        rows.append([path, f"{np.mean(psnr):.2f}", f"{np.min(psnr):.2f}", f"{depth['abs_rel']:.4f}",
                     f"{depth['delta1']:.4f}", f"{time.monotonic() - start:.0f}"])
    print(f"\n{len(samples)} validation frames at processing resolution {resolution}, {machine_line()}")
    print("\n".join(markdown_table(header, rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
