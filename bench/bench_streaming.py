#!/usr/bin/env python3
"""Streaming quality on held-out video flights, as the live node sees them; prints one table.

Runs ``compare_runs`` with ``config/bench/streaming_runs.yaml`` (cold 4 and 1 steps, ensemble 5, each warm
scheme at 1 step, the shipped MiDaS-family model, the oracle), every run in labeller mode (b) with live frame
dropping, then tabulates each run's summary.json: per-frame least-squares AbsRel / delta1 (the labeller's
defaults), TAE and flicker on one alignment per sequence, model ms per frame, frames scored / dropped.

    source scripts/env.sh && python bench/bench_streaming.py [--bags data/flights/heldout_video/*.bag] [-o runs/bench_streaming]
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

    return [name, fmt(m["abs_rel"], ".4f"), fmt(m["delta1"], ".4f"), fmt(t["tae"], ".3f"), fmt(t["flicker"], ".3f"),
            fmt(summary["model_ms_mean"], ".1f"), f"{summary['scored']}/{summary['frames']}", str(dropped)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bags", nargs="+", default=sorted(glob.glob(str(ROOT / "data/flights/heldout_video/*.bag"))))
    parser.add_argument("--runs", default=str(ROOT / "config/bench/streaming_runs.yaml"))
    parser.add_argument("-o", "--output", default=str(ROOT / "runs/bench_streaming"))
    args = parser.parse_args()
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
    header = ["run", "AbsRel", "delta1", "TAE %", "flicker %", "model ms/frame", "scored/frames", "dropped live"]
    rows = [row(n, json.loads((Path(args.output) / n / "summary.json").read_text())) for n in names]
    print(f"\n{len(args.bags)} bags, {machine_line()}")  # regenerate_docs adds the elapsed time
    print("\n".join(markdown_table(header, rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
