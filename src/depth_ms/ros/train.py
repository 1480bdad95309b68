"""train: train one of the package's models on bags or dataset exports (``rosrun depth_ms train CONFIG``).

    rosrun depth_ms train config/training/fast_depth.yaml [--resume] [--set optim.steps=100]
    rosrun depth_ms train config/training/marigold.yaml     (VAE stage, UNet stage, diffusers folder)
    rosrun depth_ms train config/training/marigold.yaml --until vae; ... --resume   (a process per part)
    rosrun depth_ms train config/training/marigold.yaml --until vae:500; ... --until vae --resume   (VAE step 500)
    python -m depth_ms.ros.train CONFIG.yaml
    msrun --worker_num=2 --local_worker_num=2 --join=True python -m depth_ms.ros.train CONFIG.yaml  (data parallel)

Bags must hold RGB and ground-truth depth (the simulator's topics, or any bag with
``topics.rgb`` / ``topics.gt_depth`` of the labeller config); a folder is read as a labeller dataset
export. Broken samples are skipped and counted. Exit status: 0 done, 1 training failed, 2 bad config or data.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import rospy

from depth_ms.core.config import ConfigError, load_yaml, merge_dicts, parse_overrides
from depth_ms.evaluation.config import load_labeller_config
from depth_ms.training.checkpoints import CheckpointError, CheckpointWriteError
from depth_ms.training.config import load_train_config
from depth_ms.training.samples import SampleSet, read_dataset_folder

from .bag_reader import BagFrameSource


def expand(patterns: list[str], base: Path) -> list[Path]:
    """Paths of ``patterns`` (globs allowed; relative to ``base``), in sorted order, each once."""
    paths: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full)) or [full]
        paths.extend(Path(m) for m in matches if Path(m) not in paths)
    return paths


def load_samples(paths: list[Path], config, say=print) -> SampleSet:
    """Every usable sample of ``paths`` (bags and dataset folders); broken ones counted in ``skipped``."""
    d = config.data
    samples = SampleSet(d.store_long_side, d.min_depth, d.max_depth, d.min_valid)
    bags = [p for p in paths if not p.is_dir()]
    for folder in (p for p in paths if p.is_dir()):
        try:
            read_dataset_folder(folder, samples)
        except (OSError, ValueError, KeyError) as exc:
            say(f"train: {folder}: {exc}")
            samples.skip("unreadable dataset folder")
    if bags:
        source = BagFrameSource(bags, load_labeller_config(None), "export")
        for record in source.records():
            if record.skip is not None:
                samples.skip(record.skip.reason)
            else:
                samples.add(record.rgb, record.gt, record.sequence, record.index)
        for note in source.notes:
            say(f"train: {note}")
            samples.skip("unreadable or unusable bag")
    return samples


def parse_until(text: str) -> dict:
    """``vae``, ``unet`` or either with ``:STEP`` -> the keyword arguments of MarigoldTraining.run."""
    stage, colon, step = text.partition(":")
    if stage not in ("vae", "unet"):
        raise ValueError("expected vae or unet, optionally with :STEP")
    if not colon:
        return {"until": stage}
    if not step.isdigit() or int(step) == 0:
        raise ValueError(f"expected a positive step after the colon, got {step!r}")
    return {"until": stage, "until_step": int(step)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a depth_ms model on bags / dataset exports.")
    parser.add_argument("config", help="training YAML (config/training/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--replica-log", help="write step,parameter-checksum per step to this file + rank")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu", "ascend"),
                        help="MindSpore device (under msrun each worker takes the device of its local rank)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--until", metavar="STAGE[:STEP]",
                        help="marigold family: stop after this stage (vae or unet), or at STEP of it, checkpointed "
                             "(a later run continues with --resume)")
    args = parser.parse_args(rospy.myargv(argv if argv is not None else sys.argv)[1:])
    try:
        config = load_train_config(merge_dicts(load_yaml(args.config), parse_overrides(args.set)))
    except ConfigError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    if args.until and config.family != "marigold":
        print(f"train: --until: the {config.family} family trains in one stage", file=sys.stderr)
        return 2
    try:
        stage = parse_until(args.until) if args.until else {}
    except ValueError as exc:
        print(f"train: --until {args.until}: {exc}", file=sys.stderr)
        return 2
    from depth_ms.models import mindspore_device

    if config.family == "marigold":  # the package's native CPU kernels are inference-only (no backward)
        os.environ["DEPTH_MS_NATIVE_KERNELS"] = "0"
    device_id = os.environ.get("DEVICE_ID") if args.device != "cpu" else None  # msrun: the local rank
    mindspore_device.configure(args.device, device_id=int(device_id) if device_id else None)
    from depth_ms.training.loop import Workers

    workers = Workers.from_environment()
    base = Path.cwd()
    train = load_samples(expand(config.data.train, base), config)
    val = load_samples(expand(config.data.val, base), config) if config.data.val else SampleSet()
    if workers.rank == 0:
        print(f"train: {len(train)} training samples from {len(train.sequences())} sequences, "
              f"{len(val)} validation; skipped: {dict(train.skipped + val.skipped) or 'none'}")
    if len(train) == 0:
        print(f"train: no usable training samples in {config.data.train}", file=sys.stderr)
        return 2
    replica_log = Path(f"{args.replica_log}.rank{workers.rank}") if args.replica_log else None
    try:
        if config.family == "marigold":
            from depth_ms.training.marigold_trainer import MarigoldTraining as Trainer
        else:
            from depth_ms.training.trainer import FastDepthTrainer as Trainer
        trainer = Trainer(config, train, val, workers, progress=not args.no_progress)
    except ValueError as exc:  # an architecture the network cannot be built with
        print(f"train: arch: {exc}", file=sys.stderr)
        return 2
    try:
        metrics = trainer.run(resume=args.resume, replica_log=replica_log, **stage)
    except (CheckpointWriteError, FloatingPointError, OSError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 1
    except CheckpointError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    if workers.rank == 0:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in ("abs_rel", "delta1"))
        print(f"train: done at step {trainer.step}; validation {summary or 'not validated'}; "
              f"run folder {config.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
