"""Single layers at real model sizes: MindSpore's own CPU kernels, the native kernels behind the device
layer, and PyTorch, side by side (median ms of ``--repeats`` calls after 2 warm-up calls, graph mode).

    .venv/bin/python bench/bench_native_ops.py --repeats 20

PyTorch runs in a subprocess (its thread pool and MindSpore's disturb each other in one process), with
``torch.set_num_threads(2)``. Sizes: Depth Anything V2 small at 518x518 (GELU, LayerNorm), a VAE / BiT
GroupNorm, a 3x3 convolution of the Depth Anything neck and BiT, the DPT / Depth Anything 4x4 / stride-4
reassembly.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from tables import machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (input shapes, description)
CASES = {
    "gelu": ([(1, 1370, 1536)], "exact GELU, 1370 x 1536"),
    "layer_norm": ([(1, 1370, 384), (384,), (384,)], "LayerNorm over 384, 1370 tokens"),
    "group_norm": ([(1, 256, 96, 96), (256,), (256,)], "GroupNorm, 32 groups, 256 x 96 x 96"),
    "conv3x3": ([(1, 64, 148, 148), (64, 64, 3, 3), (64,)], "3x3 conv 64 -> 64 at 148 x 148"),
    "conv_transpose": ([(1, 48, 37, 37), (48, 48, 4, 4), (48,)], "transposed conv 4x4 / stride 4, 48 ch"),
}


def inputs(shapes):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def timed(fn, repeats):
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def run_mindspore(repeats):
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from depth_ms.models import mindspore_device as md

    md.configure("cpu")
    import mindspore as ms
    from mindspore import ops

    if not md.native_kernels_bound():
        raise SystemExit("native kernels unavailable (DEPTH_MS_NATIVE_KERNELS=0 or no C++ compiler)")
    # ms.jit parses a function's source: named functions, not lambdas in a dict literal
    def own_gelu(x):
        return md._gelu(x)  # the ops fallback

    def own_layer_norm(x, w, b):
        return ops.LayerNorm(-1, -1, 1e-6)(x, w, b)[0]

    def own_group_norm(x, w, b):
        return ops.group_norm(x, 32, w, b, 1e-6)

    def own_conv3x3(x, w, b):
        return ops.bias_add(ops.conv2d(x, w, None, 1, "pad", (1, 1)), b)

    def own_conv_transpose(x, w, b):
        return ops.Conv2DTranspose(48, 4, pad_mode="valid", stride=4)(x, w, (1, 48, 148, 148)) + b.reshape(1, -1, 1, 1)

    def native_gelu(x):
        return md.gelu_exact(x)

    def native_layer_norm(x, w, b):
        return md.layer_norm_last_axis(x, w, b, 1e-6)

    def native_group_norm(x, w, b):
        return md.group_norm(x, 32, w, b, 1e-6)

    def native_conv3x3(x, w, b):
        return md.conv3x3(x, w, b)

    def native_conv_transpose(x, w, b):
        return md.conv_transpose2d(x, w, b, (4, 4))

    own = {"gelu": own_gelu, "layer_norm": own_layer_norm, "group_norm": own_group_norm, "conv3x3": own_conv3x3,
           "conv_transpose": own_conv_transpose}  # MindSpore's kernels (the fallbacks before the native ones)
    native = {"gelu": native_gelu, "layer_norm": native_layer_norm, "group_norm": native_group_norm,
              "conv3x3": native_conv3x3, "conv_transpose": native_conv_transpose}
    out = {}
    for name, (shapes, _) in CASES.items():
        args = [ms.Tensor(a) for a in inputs(shapes)]
        row = {}
        for label, table in (("mindspore", own), ("native", native)):
            fn = ms.jit(table[name])
            row[label] = timed(lambda: fn(*args).asnumpy(), repeats)
        ref, got = own[name](*args).asnumpy(), native[name](*args).asnumpy()
        row["max_abs_diff"] = float(np.abs(ref - got).max())
        out[name] = row
    return out


def run_torch(repeats):
    import torch

    torch.set_num_threads(2)
    f = torch.nn.functional
    calls = {
        "gelu": lambda x: f.gelu(x),
        "layer_norm": lambda x, w, b: f.layer_norm(x, (384,), w, b, 1e-6),
        "group_norm": lambda x, w, b: f.group_norm(x, 32, w, b, 1e-6),
        "conv3x3": lambda x, w, b: f.conv2d(x, w, b, padding=1),
        "conv_transpose": lambda x, w, b: f.conv_transpose2d(x, w, b, stride=4),
    }
    out = {}
    with torch.no_grad():
        for name, (shapes, _) in CASES.items():
            args = [torch.from_numpy(a) for a in inputs(shapes)]
            out[name] = {"torch": timed(lambda: calls[name](*args), repeats)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        print(json.dumps(run_torch(args.repeats)))
        return
    ours = run_mindspore(args.repeats)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker", "--repeats",
                           str(args.repeats)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    theirs = json.loads(lines[-1]) if lines else {}
    print(f"median of {args.repeats} calls, {machine_line()}:")
    print()
    print("| layer | MindSpore kernels ms | native kernels ms | PyTorch ms | max abs difference |")
    print("|---|---:|---:|---:|---:|")
    for name, (_, description) in CASES.items():
        row = ours[name]
        torch_ms = theirs.get(name, {}).get("torch", float("nan"))
        print(f"| {description} | {row['mindspore']:.2f} | {row['native']:.2f} | {torch_ms:.2f} | "
              f"{row['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()
