"""Every 3x3 convolution shape of one SD2 UNet pass: the device layer's path against MindSpore's oneDNN Conv2D.

    .venv/bin/python bench/bench_unet_convs.py --sizes 320x240 640x480 --repeats 5

Graph mode (``ms.jit``), random inputs and weights, median ms of ``--repeats`` calls after one warm-up call.
"Ours" is ``mindspore_device._conv2d`` as the models call it: the native Winograd kernels on maps of at least
``WINOGRAD_MIN_PIXELS`` pixels (4x4 tiles on large maps, 2x2 tiles by panels otherwise), oneDNN below.
The totals weight each shape by how often one UNet pass runs it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from tables import machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (UNet level, C_in, C_out, convolutions per pass): resnet convolutions, upsamplers (at the finer level), conv_in
SHAPES = [(0, 8, 320, 1), (0, 320, 320, 7), (0, 640, 320, 2), (0, 960, 320, 1), (0, 640, 640, 1),
          (1, 320, 640, 1), (1, 640, 640, 6), (1, 960, 640, 1), (1, 1280, 640, 1), (1, 1920, 640, 1),
          (1, 1280, 1280, 1), (2, 640, 1280, 1), (2, 1280, 1280, 7), (2, 1920, 1280, 1), (2, 2560, 1280, 2),
          (3, 1280, 1280, 8), (3, 2560, 1280, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"], help="input WxH (latents /8)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from depth_ms.models import mindspore_device as md

    md.configure("cpu")
    import mindspore as ms
    from mindspore import ops

    def ours(x, w, b):
        return md._conv2d(x, w, b, 1, 1)

    def onednn(x, w, b):
        return ops.bias_add(ops.conv2d(x, w, None, 1, "pad", (1, 1)), b)

    calls = {"ours": ms.jit(ours), "oneDNN": ms.jit(onednn)}

    def timed(fn, inputs):
        fn(*inputs).asnumpy()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn(*inputs).asnumpy()
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e3

    rng = np.random.default_rng(0)
    print(f"median of {args.repeats} calls, {machine_line()}:\n")
    print("| input | level | map | C_in -> C_out | per pass | ours ms | oneDNN ms | max abs diff |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        totals = dict.fromkeys(calls, 0.0)
        for level, c_in, c_out, count in SHAPES:
            scale = 8 * 2 ** level
            h, w = -(-height // scale), -(-width // scale)
            inputs = (ms.Tensor(rng.standard_normal((1, c_in, h, w)).astype(np.float32)),  # (1, C_in, h, w)
                      ms.Tensor((rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)),
                      ms.Tensor(rng.standard_normal(c_out).astype(np.float32)))
            ms_times = {name: timed(fn, inputs) for name, fn in calls.items()}
            for name in calls:
                totals[name] += ms_times[name] * count
            diff = np.abs(calls["ours"](*inputs).asnumpy() - calls["oneDNN"](*inputs).asnumpy()).max()
            print(f"| {size} | {level} | {h}x{w} | {c_in} -> {c_out} | {count} | {ms_times['ours']:.1f} | "
                  f"{ms_times['oneDNN']:.1f} | {diff:.1e} |", flush=True)
        print(f"| {size} | all | | | | **{totals['ours']:.0f}** | **{totals['oneDNN']:.0f}** | |", flush=True)


if __name__ == "__main__":
    main()
