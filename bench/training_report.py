#!/usr/bin/env python3
"""The validation of a training run, read from its logs, as one Markdown table.

A run folder holds ``log.csv`` (the fast model) or one folder per stage with its own ``log.csv`` (the
Marigold family: vae, unet, finetune). Each validated step becomes a row with the stage's median training
speed; the line above the table names the run, the date its logs were last written and this machine.

    python bench/training_report.py runs/fast_depth       # after scripts/retrain.sh fast_depth --fresh
    python bench/training_report.py runs/marigold         # after scripts/retrain.sh marigold --fresh
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import markdown_table  # noqa: E402

from depth_ms.training.progress_log import read_log  # noqa: E402

STAGES = ("vae", "unet", "finetune")  # marigold_trainer.STAGES, not imported: that module loads MindSpore


def stage_logs(run: Path) -> list[tuple[str, Path]]:
    """(stage name, log.csv) of ``run``: the stage folders in training order, else the run's own log."""
    staged = [(name, run / name / "log.csv") for name in STAGES if (run / name / "log.csv").is_file()]
    if staged:
        return staged
    if (run / "log.csv").is_file():
        return [("training", run / "log.csv")]
    raise FileNotFoundError(f"{run}: no log.csv (train it first: scripts/retrain.sh ... --fresh)")


def stage_rows(stage: str, log: Path) -> list[list[str]]:
    """One row per validated step of one stage: stage, step, AbsRel, delta1, the stage's images/s."""
    rows = read_log(log)
    speeds = [float(r["images_per_s"]) for r in rows if r["images_per_s"]]
    speed = f"{np.median(speeds):.1f}" if speeds else "n/a"
    return [[stage, r["step"], f"{float(r['val_abs_rel']):.4f}", f"{float(r['val_delta1']):.4f}", speed]
            for r in rows if r["val_abs_rel"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (the config's `output`)")
    args = parser.parse_args(argv)
    try:
        logs = stage_logs(args.run)
    except FileNotFoundError as exc:
        print(f"training_report: {exc}", file=sys.stderr)
        return 2
    rows = [row for stage, log in logs for row in stage_rows(stage, log)]
    written = time.strftime("%Y-%m-%d", time.localtime(max(log.stat().st_mtime for _, log in logs)))
    print(f"{args.run} logs written {written}, read on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores:")
    print("\n".join(markdown_table(["stage", "step", "val AbsRel", "val delta1", "images/s (median)"], rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
