#!/usr/bin/env python3
"""Metric depth from the drone's state on held-out video flights: one table, model x scale source.

Runs ``compare_runs`` with ``config/bench/metric_runs.yaml``: each model (the oracle with a known affine
distortion in depth and in disparity, the shipped MiDaS-family and Marigold models) with each scale source
(``ground_truth``: the per-frame least-squares bound, ``ground_plane_alone``, ``ground_plane`` anchored by the
rangefinder, ``rangefinder`` alone), in labeller mode
(b) through the node's metric pipeline, scored without alignment. Prints metric AbsRel / delta1, the share
of frames that had a metric scale, each run's AbsRel relative to its model's bound, and the frame-to-frame
scale jitter (median |delta log scale| between consecutive metric frames of a flight).

    source scripts/env.sh && python bench/bench_metric_scale.py [--flights data/metric_flights] [-o runs/bench_metric]

The held-out video flights of ``--plan`` are rendered into ``--flights`` first when missing (they carry the
rangefinder); ``--plan config/bench/sloped_flights.yaml`` measures the same over a 3 degree slope, and
``--models oracle_depth oracle_disparity`` keeps only those rows of the runs file.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from tables import machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
SPLIT = "heldout_video"


def scale_jitter(per_frame_csv: Path) -> float:
    """Median |log(scale_t / scale_t-1)| over consecutive scored frames of each sequence, in percent."""
    steps: list[float] = []
    previous: dict[str, tuple[int, float]] = {}
    with per_frame_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["status"] != "scored" or not row["scale"]:
                continue
            index, scale = int(row["index"]), float(row["scale"])
            last = previous.get(row["sequence"])
            if last is not None and index == last[0] + 1 and scale > 0 and last[1] > 0:
                steps.append(abs(math.log(scale / last[1])))
            previous[row["sequence"]] = (index, scale)
    return 100.0 * float(np.median(steps)) if steps else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", default=str(ROOT / "config/training/flights.yaml"), help="sim_flights plan")
    parser.add_argument("--flights", default=str(ROOT / "data/metric_flights"))
    parser.add_argument("--runs", default=str(ROOT / "config/bench/metric_runs.yaml"))
    parser.add_argument("--models", nargs="+", help="only the runs of these models (the part before the dot)")
    parser.add_argument("-o", "--output", default=str(ROOT / "runs/bench_metric"))
    args = parser.parse_args()
    bags = sorted((Path(args.flights) / SPLIT).glob("*.bag"))
    if not bags:
        subprocess.run(["rosrun", "depth_ms", "sim_flights", args.plan,
                        "-o", args.flights, "--split", SPLIT], check=True)
        bags = sorted((Path(args.flights) / SPLIT).glob("*.bag"))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    base = output / "base.yaml"  # scores only: no per-frame label files
    base.write_text("outputs: {labels: false}\n")
    runs = yaml.safe_load(Path(args.runs).read_text())
    if args.models:
        runs = {name: run for name, run in runs.items() if name.split(".")[0] in args.models}
    runs_file = output / "runs.yaml"
    runs_file.write_text(yaml.safe_dump(runs, sort_keys=False))
    subprocess.run(["rosrun", "depth_ms", "compare_runs", "-o", str(output), "--bags", *map(str, bags),
                    "--runs", str(runs_file), "--config", str(base), "--quiet"], check=True)

    names = list(runs)
    summaries = {n: json.loads((output / n / "summary.json").read_text()) for n in names}
    bounds = {n.split(".")[0]: s["metrics"]["abs_rel"] for n, s in summaries.items() if n.endswith(".ground_truth")}
    header = ["model", "scale source", "metric frames", "AbsRel", "delta1", "AbsRel / bound", "scale jitter %",
              "model ms"]
    rows = []
    for name, s in summaries.items():
        model, source = name.split(".")
        abs_rel, bound = s["metrics"]["abs_rel"], bounds.get(model)
        ratio = f"{abs_rel / bound:.2f}" if abs_rel is not None and bound and bound > 1e-3 else "n/a"  # oracle: 0
        rows.append([model, source, f"{s['scored']}/{s['frames']}",
                     "n/a" if abs_rel is None else f"{abs_rel:.4f}",
                     "n/a" if s["metrics"]["delta1"] is None else f"{s['metrics']['delta1']:.4f}", ratio,
                     f"{scale_jitter(output / name / 'per_frame.csv'):.2f}", f"{s['model_ms_mean']:.1f}"])
    lines = [f"{len(bags)} held-out video flights ({SPLIT} of {Path(args.plan).name}), {machine_line()}",
             *markdown_table(header, rows)]  # regenerate_docs adds the elapsed time
    (output / "table.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
