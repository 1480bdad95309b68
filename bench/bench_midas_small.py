"""Network-only speed of MiDaS v2.1 small: MindSpore (PyNative, ms.jit graph) beside the official PyTorch model.

    .venv/bin/python bench/bench_midas_small.py --sizes 256x256 160x256 256x448 --repeats 20 --modes pynative graph
    .venv/bin/python bench/bench_midas_small.py --sizes 256x256 160x256 256x448 --repeats 20 --modes torch

Random weights (the fixture's seeded rule) loaded into both; input (1, 3, h, w) float32. Each
configuration gets warm-up calls (graph compilation included there), then ``--repeats`` timed calls;
the table shows median and best ms and the frames/s of the median. 160x256 is what the estimator
feeds the network for an 848x480 frame (MiDaS 'upper_bound' 256). MindSpore runs with the native
kernels when they build (see small_net.py); ``--no-native`` adds a graph-mode row on MindSpore's
Conv2D only, ``--unfolded`` a PyNative row without BatchNorm folding (and without native kernels).
PyTorch runs the official code exported from the fetched mirrors (see
tools/make_midas_small_fixture.py). Thread pools of the two frameworks in one process disturb each
other, so time them in separate runs (``--modes pynative graph``, then ``--modes torch``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "test", "models"))
sys.path.insert(0, os.path.join(ROOT, "tools"))


def timed(fn, x, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "160x256", "256x448"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--ms-threads", type=int, default=0,
                        help="mindspore.device_context.cpu.op_tuning.threads_num (0: MindSpore's default)")
    parser.add_argument("--modes", nargs="+", default=["pynative", "graph", "torch"])
    parser.add_argument("--unfolded", action="store_true", help="also time MindSpore without BatchNorm folding")
    parser.add_argument("--no-native", action="store_true",
                        help="also time MindSpore graph mode on Conv2D only (no native kernels)")
    parser.add_argument("--midas-git", default="/work/.mirror/isl-org+MiDaS/repo")
    parser.add_argument("--geffnet-git", default="/work/.mirror/rwightman+gen-efficientnet-pytorch/repo")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]

    from test_midas_small import fixture_keys, seeded_state_dict

    state = seeded_state_dict(fixture_keys(), 0)  # official keys (with the BatchNorm counters)
    runners = {}
    if "pynative" in args.modes or "graph" in args.modes:  # MindSpore only imported when timed
        from depth_ms.models import mindspore_device

        mindspore_device.configure("cpu")
        import mindspore as ms

        if args.ms_threads:
            ms.device_context.cpu.op_tuning.threads_num(args.ms_threads)
        from depth_ms.models.midas import small_net

        net = small_net.load_state(small_net.MidasSmall(), state, "seeded")
        if "pynative" in args.modes:
            runners["ms pynative"] = lambda x: net(ms.Tensor(x)).asnumpy()  # noqa: E731
        if "graph" in args.modes:
            graph = ms.jit(net.construct)
            runners["ms graph"] = lambda x: graph(ms.Tensor(x)).asnumpy()
        if args.no_native:
            conv2d_only = small_net.load_state(small_net.MidasSmall(), state, "seeded", native=False)
            graph_conv2d = ms.jit(conv2d_only.construct)
            runners["ms graph, no native kernels"] = lambda x: graph_conv2d(ms.Tensor(x)).asnumpy()
        if args.unfolded:
            plain = small_net.MidasSmall()
            for name, p in small_net.state_names(plain).items():
                p.set_data(ms.Tensor(state[name]))
            plain.set_train(False)
            runners["ms pynative, BN unfolded"] = lambda x: plain(ms.Tensor(x)).asnumpy()
    if "torch" in args.modes:
        import torch

        from make_midas_small_fixture import export, official_model

        torch.set_num_threads(args.threads)
        ref_dir = tempfile.mkdtemp(prefix="midas_ref_")
        export(args.midas_git, "midas", ref_dir)
        export(args.geffnet_git, "geffnet", ref_dir)
        models = {}

        def torch_run(x):
            key = x.shape  # exportable padding is frozen per model at its first input size
            if key not in models:
                models[key] = official_model(ref_dir)
                models[key].load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            with torch.inference_mode():
                return models[key](torch.from_numpy(x)).numpy()

        runners[f"torch {torch.__version__} ({args.threads} threads)"] = torch_run

    rows = []
    for height, width in sizes:
        x = np.random.default_rng(0).normal(size=(1, 3, height, width)).astype(np.float32)
        for name, fn in runners.items():
            times = np.array(timed(fn, x, args.warmup, args.repeats)) * 1e3
            rows.append(dict(size=f"{height}x{width}", runner=name, median_ms=float(np.median(times)),
                             best_ms=float(times.min()), fps=float(1e3 / np.median(times))))
    print(f"{'size (HxW)':<10} {'runner':<32} {'median ms':>10} {'best ms':>9} {'frames/s':>9}")
    for r in rows:
        print(f"{r['size']:<10} {r['runner']:<32} {r['median_ms']:>10.1f} {r['best_ms']:>9.1f} {r['fps']:>9.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
