#!/usr/bin/env python3
"""Labeller throughput and memory at 640x480 (or any size); prints one Markdown table.

- ``scoring:`` rows, scoring alone (no bag, no model, no files; the frames held in memory): frames/s of
  FrameScorer.score frame by frame (TAE waited for) / of the labeller loop around it (TAE overlapping the
  next frame, summary, per_frame.csv; scope sequence includes its fitting pass), for each alignment; with
  the allocator settings label_bag uses (depth_ms.evaluation.allocator) and once with glibc's defaults.
- ``label_bag:`` rows, end to end on a simulator bag (read + decode + pair + oracle x1.1 + score + outputs):
  frames/s of the streaming loop, the time to write the report and plots at the end, and the peak memory
  (VmHWM) labelling the same bag 1, 2 and 4 times in a row (flat in the number of frames).

Every row runs in its own process.

    source scripts/env.sh && python bench/bench_labeller.py [--frames 40] [--width 640 --height 480]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tables import machine_line, markdown_table

SCORING_CASES = [  # (label, prediction kind, config overrides)
    ("metric, alignment none", "metric", {}),
    ("affine depth, lstsq per frame", "affine_depth", {}),
    ("affine disparity, lstsq per frame", "affine_disparity", {}),
    ("affine depth, lstsq per sequence", "affine_depth", {"scoring": {"scope": "sequence"}}),
]


def _vm(field: str) -> float:
    """MiB of a /proc/self/status field (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _frames(width: int, height: int, count: int, cache: Path):
    """Simulator frames (rendered once, cached as .npz next to the bag)."""
    from depth_ms.core.types import Intrinsics
    path = cache / f"frames_{width}x{height}_{count}.npz"
    if not path.exists():
        from depth_ms.sim import DroneSimulator, load_sim_config
        sim = DroneSimulator(load_sim_config({"width": width, "height": height}))
        rendered = [sim.render(i) for i in range(count)]
        np.savez(path, depth=np.stack([f.depth for f in rendered]), rgb=np.stack([f.rgb for f in rendered]),
                 pose=np.stack([f.T_map_optical for f in rendered]), stamp=[f.stamp for f in rendered],
                 k=rendered[0].intrinsics.k)
    data = np.load(path)
    intrinsics = Intrinsics.from_k(data["k"], width, height)
    return data, intrinsics


def child_scoring(args) -> dict:
    """One scoring case in this process; returns timings."""
    from depth_ms.core.types import DepthKind, DepthPrediction
    from depth_ms.evaluation.allocator import keep_freed_memory
    from depth_ms.evaluation.config import load_labeller_config
    from depth_ms.evaluation.labeller import Labeller
    from depth_ms.evaluation.records import FrameRecord, ListSource
    from depth_ms.evaluation.scoring import FrameScorer

    if args.tuned:
        keep_freed_memory()
    data, intrinsics = _frames(args.width, args.height, args.frames, Path(args.cache))
    label, kind_name, overrides = SCORING_CASES[args.case]
    kind = {"metric": DepthKind.METRIC, "affine_depth": DepthKind.AFFINE_DEPTH,
            "affine_disparity": DepthKind.AFFINE_DISPARITY}[kind_name]
    depths, rgbs, poses, stamps = data["depth"], data["rgb"], data["pose"], data["stamp"]  # read each once
    records = []
    for i, gt in enumerate(depths):
        pred = {"metric": gt * 1.1, "affine_depth": (gt - 3.0) / 2.0,
                "affine_disparity": 1.0 / gt * 20.0 + 0.5}[kind_name].astype(np.float32)
        records.append(FrameRecord("bench", i, float(stamps[i]), gt=gt, rgb=rgbs[i], intrinsics=intrinsics,
                                   pose=poses[i], prediction=DepthPrediction(pred, kind)))
    config = load_labeller_config({**overrides, "outputs": {"labels": False, "samples": 0}})
    scorer = FrameScorer(config)
    fits = {}
    if config.scoring.scope == "sequence":
        fits = Labeller(config, Path(args.cache) / "fit", progress=False).fit_sequences(ListSource(records))
    per_frame = []
    for _ in range(args.repeat):
        scorer.reset()
        for record in records:
            start = time.perf_counter()
            scorer.score(record, fits.get("bench"))
            per_frame.append(time.perf_counter() - start)
    per_frame = np.array(per_frame[len(records):] or per_frame)  # first pass warms caches
    source = ListSource(records * args.repeat)
    with tempfile.TemporaryDirectory() as out:
        result = Labeller(config, Path(out), progress=False).run(source)
    timing = result.summary["timing"]
    return {"label": label, "median_ms": float(np.median(per_frame) * 1e3),
            "p90_ms": float(np.percentile(per_frame, 90) * 1e3), "score_fps": float(1.0 / np.mean(per_frame)),
            "loop_fps": result.summary["frames"] / timing["wall_s"],
            "rss_mib": _vm("VmHWM")}


def child_bag(args) -> dict:
    """label_bag's label() on the bag (repeated ``args.times``) in this process."""
    from depth_ms.evaluation.allocator import keep_freed_memory
    from depth_ms.ros.label_bag import build_config, label

    keep_freed_memory()
    overrides = {"model": "oracle", "estimator": {"scale": 1.1},
                 "outputs": {"labels": bool(args.labels), "bag": bool(args.output_bag), "samples": 2}}
    config = build_config(None, overrides)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = label([Path(args.bag)] * args.times, config, Path(out), progress=False)
        wall = time.perf_counter() - start
    summary = result.summary
    loop = summary["timing"]["wall_s"]
    return {"frames": summary["frames"], "wall_s": wall, "loop_fps": summary["frames"] / loop,
            "report_s": wall - loop, "peak_mib": _vm("VmHWM"), "rss_mib": _vm("VmRSS"),
            "abs_rel": summary["metrics"]["abs_rel"]}


def _run_child(*extra: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="distinct frames rendered (default 40)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the frames when scoring alone")
    parser.add_argument("--cache", help="folder for rendered frames and the bag (default: a temp dir)")
    parser.add_argument("--child", choices=["scoring", "bag"], help=argparse.SUPPRESS)
    parser.add_argument("--case", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tuned", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--bag", help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--labels", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--output-bag", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "scoring":
        print(json.dumps(child_scoring(args)))
        return
    if args.child == "bag":
        print(json.dumps(child_bag(args)))
        return

    cache = Path(args.cache or tempfile.mkdtemp(prefix="bench_labeller_"))
    cache.mkdir(parents=True, exist_ok=True)
    common = ["--frames", str(args.frames), "--width", str(args.width), "--height", str(args.height),
              "--cache", str(cache)]
    _frames(args.width, args.height, args.frames, cache)  # render once
    rows = []
    for case in range(len(SCORING_CASES)):
        for tuned in (1, 0) if case == 0 else (1,):
            row = _run_child("--child", "scoring", "--case", str(case), "--tuned", str(tuned),
                             "--repeat", str(args.repeat), *common)
            allocator = "" if tuned else " (glibc's default allocator settings)"
            rows.append([f"scoring: {row['label']}{allocator}", args.frames * args.repeat,
                         f"{row['score_fps']:.0f} / {row['loop_fps']:.0f}", f"{row['median_ms']:.1f}", "",
                         f"{row['rss_mib']:.0f}"])

    bag = cache / f"flight_{args.width}x{args.height}_{args.frames}.bag"
    if not bag.exists():
        from depth_ms.ros.sim_bag import write_sim_bag
        from depth_ms.sim import DroneSimulator, load_sim_config
        write_sim_bag(DroneSimulator(load_sim_config({"width": args.width, "height": args.height})), bag,
                      args.frames)
    runs = [("csv + reports", 0, 0, 1), ("+ labels (PNG16 + npy)", 1, 0, 1), ("+ labels + output bag", 1, 1, 1),
            ("csv + reports, the bag twice", 0, 0, 2), ("csv + reports, the bag 4 times", 0, 0, 4)]
    for name, labels, output_bag, times in runs:
        row = _run_child("--child", "bag", "--bag", str(bag), "--labels", str(labels), "--output-bag",
                         str(output_bag), "--times", str(times), *common)
        rows.append([f"label_bag: {name}", row["frames"], f"{row['loop_fps']:.0f}", "", f"{row['report_s']:.1f}",
                     f"{row['peak_mib']:.0f}"])

    print(f"{args.width}x{args.height}, {args.frames} simulator frames ({bag.stat().st_size / 2**20:.0f} MiB bag), "
          f"{machine_line()}:")
    print()
    print("\n".join(markdown_table(["run", "frames", "frames/s", "median ms/frame", "report s", "peak RSS MiB"], rows)))


if __name__ == "__main__":
    main()
