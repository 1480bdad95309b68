#!/usr/bin/env python3
"""Training speed of the fast model with 1 worker and with 2 data-parallel msrun workers, as a table.

Each run trains the shipped config (config/training/fast_depth.yaml) for ``--steps`` steps on the first
training flights, in its own process; images/s comes from the run's ``log.csv`` after ``--skip`` steps
(compilation and warm-up left out). Needs the flights: rosrun depth_ms sim_flights
config/training/flights.yaml -o data/flights.

    python bench/bench_train_speed.py [--bags 'data/flights/train/train_00*.bag'] [--steps 100]
"""
from __future__ import annotations

import argparse
import copy
import glob
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import machine_line, markdown_table  # noqa: E402

from depth_ms.training.progress_log import read_log  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(shipped: dict, folder: Path, bags: list[str], steps: int) -> Path:
    """The shipped fast-model config on ``bags`` for ``steps`` steps, validated once at the end on a few frames."""
    config = copy.deepcopy(shipped)
    config["data"].update(train=bags, val=bags[:1], val_frames=8)
    config["optim"]["steps"] = steps
    config["schedule"].update(log_every=10, val_every=steps, checkpoint_every=steps)
    config["output"] = str(folder / "run")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(workers: int, config: Path, folder: Path) -> None:
    command = [sys.executable, "-m", "depth_ms.ros.train", str(config), "--no-progress"]
    if workers > 1:  # msrun starts `python` from PATH: the venv's must come first
        command = ["msrun", f"--worker_num={workers}", f"--local_worker_num={workers}",
                   f"--master_port={free_port()}", f"--log_dir={folder / 'logs'}", "--join=True",
                   "python", *command[1:]]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")


def speeds(log: Path, skip: int) -> np.ndarray:
    """images/s of each logged window after step ``skip``."""
    return np.array([float(r["images_per_s"]) for r in read_log(log) if r["images_per_s"] and int(r["step"]) > skip])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", default="data/flights/train/train_00*.bag", help="training bags (a glob)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--skip", type=int, default=40, help="steps left out of the speed")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    bags = sorted(glob.glob(str(ROOT / args.bags)))
    if not bags:
        print(f"bench_train_speed: no bags match {args.bags} (render them: rosrun depth_ms sim_flights "
              "config/training/flights.yaml -o data/flights)", file=sys.stderr)
        return 2
    shipped = yaml.safe_load((ROOT / "config/training/fast_depth.yaml").read_text())
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config = write_config(shipped, folder, bags, args.steps)
            train(workers, config, folder)
            measured = speeds(folder / "run" / "log.csv", args.skip)
        rows.append([workers, shipped["optim"]["batch_size"] * workers, f"{np.median(measured):.1f}",
                     f"{measured.min():.1f}-{measured.max():.1f}"])
        print(f"{workers} worker(s): {rows[-1][2]} images/s", flush=True)
    print(f"{len(bags)} bags, steps {args.skip}-{args.steps}, {machine_line()}:")
    print("\n".join(markdown_table(["workers", "global batch", "images/s median", "range"], rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
