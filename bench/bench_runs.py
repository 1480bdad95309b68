#!/usr/bin/env python3
"""Labeller runs compared on held-out flights; prints one table.

Runs ``compare_runs`` with a runs file (default ``config/bench/streaming_runs.yaml``: streaming Marigold cold
4 and 1 steps, ensemble 5, each warm scheme at 1 step, the shipped MiDaS-family model, the oracle, every run
in labeller mode (b) with live frame dropping, on the held-out video flights; ``config/bench/heldout_runs.yaml``
on ``data/flights/heldout/*.bag``: the shipped models' held-out quality), then tabulates each run's
summary.json: per-frame least-squares AbsRel / delta1 (the labeller's defaults), RMSE, TAE and flicker on one
alignment per sequence, model ms per frame, frames scored / dropped live.

    source scripts/env.sh && python bench/bench_runs.py [--runs RUNS.yaml] [--bags 'GLOB' ...] [-o OUT]
"""
from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
from pathlib import Path

from tables import machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def row(name: str, summary: dict) -> list[str]:
    m, t = summary["metrics"], summary["temporal"]
    dropped = summary["skipped"].get("dropped_live", 0)

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    return [name, fmt(m["abs_rel"], ".4f"), fmt(m["delta1"], ".4f"), fmt(m["rmse"], ".2f"), fmt(t["tae"], ".3f"),
            fmt(t["flicker"], ".3f"),
            fmt(summary["model_ms_mean"], ".1f"), f"{summary['scored']}/{summary['frames']}", str(dropped)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bags", nargs="+", default=["data/flights/heldout_video/*.bag"],
                        help="bag files or glob patterns, relative to the repository root")
    parser.add_argument("--runs", default="config/bench/streaming_runs.yaml", help="run name -> labeller overrides")
    parser.add_argument("-o", "--output", help="output folder (default runs/bench_<runs file name>)")
    args = parser.parse_args()
    args.bags = sorted(path for pattern in args.bags for path in glob.glob(str(ROOT / pattern)))
    args.runs = str(ROOT / args.runs)
    args.output = args.output or str(ROOT / "runs" / f"bench_{Path(args.runs).stem}")
    if not args.bags:
        print("no bags: rosrun depth_ms sim_flights config/training/flights.yaml -o data/flights", file=sys.stderr)
        return 2
    base = Path(args.output) / "base.yaml"  # scores only: no per-frame label files
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text("outputs: {labels: false}\n")
    subprocess.run(["rosrun", "depth_ms", "compare_runs", "-o", args.output, "--bags", *args.bags, "--runs", args.runs,
                    "--config", str(base), "--quiet"], check=True)
    import yaml

    names = list(yaml.safe_load(Path(args.runs).read_text()))
    header = ["run", "AbsRel", "delta1", "RMSE m", "TAE %", "flicker %", "model ms/frame", "scored/frames", "dropped live"]
    rows = [row(n, json.loads((Path(args.output) / n / "summary.json").read_text())) for n in names]
    print(f"\n{len(args.bags)} bags, {machine_line()}")  # regenerate_docs adds the elapsed time
    print("\n".join(markdown_table(header, rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
