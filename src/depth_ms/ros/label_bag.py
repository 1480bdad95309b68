"""label_bag / compare_runs: score depth in rosbags against simulator ground truth, offline.

    rosrun depth_ms label_bag flight.bag -o out/                       # mode (a): recorded depth/image
    rosrun depth_ms label_bag flight.bag -o out/ --model oracle --set estimator.scale=1.1   # mode (b)
    rosrun depth_ms compare_runs out_a/ out_b/ -o cmp/                 # existing runs, one table
    rosrun depth_ms compare_runs -o cmp/ --bags flight.bag --runs runs.yaml   # label several settings, compare

No roscore is needed (rosbag only). Options and outputs: docs/labeller.md.
"""
from __future__ import annotations

import argparse
import multiprocessing
import shlex
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import rospy
import yaml
from tqdm import tqdm

from depth_ms.core.config import ConfigError, load_yaml, merge_dicts, parse_overrides, to_dict
from depth_ms.evaluation.allocator import keep_freed_memory
from depth_ms.evaluation.compare import CompareError, compare_runs
from depth_ms.evaluation.config import ALIGNMENTS, SCOPES, LabellerConfig, load_labeller_config
from depth_ms.evaluation.export import DatasetExporter
from depth_ms.evaluation.labeller import Labeller, LabelResult, RunInfo, needs_sequence_fit
from depth_ms.evaluation.metric_source import MetricSource
from depth_ms.evaluation.predict import INDEX_FILE, ModelSource, StoredPredictions
from depth_ms.evaluation.reports import first_line
from depth_ms.metric import SCALE_SOURCES
from depth_ms.models import registry
from depth_ms.models.base import EstimatorError

from .bag_reader import BagFrameSource, sequence_names
from .label_output_bag import OutputBagWriter

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2


def build_config(config_path: Optional[str], overrides: dict) -> LabellerConfig:
    """The YAML file (or the defaults) with ``overrides`` merged in, checked strictly."""
    base = load_yaml(config_path) if config_path else {}
    return load_labeller_config(merge_dicts(base, overrides))


def label(bags: list[Path], config: LabellerConfig, output: Path, progress: bool = True,
          command: str = "", jobs: int = 1, resume: bool = False) -> LabelResult:
    """Label ``bags`` into ``output`` with ``config``; raises EstimatorError if the model cannot be built.

    Mode (b) with ``jobs`` > 1 or ``resume``: the model runs over each bag in its own process (``jobs`` at a
    time) into a prediction store per bag under ``output/.predictions`` that survives a killed run;
    ``resume`` keeps the finished stores and redoes the others. The scoring pass then reads the stores.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    scratch = output / ".scratch"
    scratch.mkdir(exist_ok=True)
    stores = output / ".predictions"
    try:
        if config.runs_model and (jobs > 1 or resume):
            predict_bags(bags, config, stores, jobs, resume, progress)
            source = StoredPredictions(BagFrameSource(bags, config, "model", scratch), stores,
                                       config.live.drop_frames)
        elif config.runs_model:
            estimator = registry.create(config.model, config.estimator, config.device, config.mode)
            cache = scratch / "predictions" if needs_sequence_fit(config) else None  # two passes, one model run
            live = config.live.model_ms if config.live.drop_frames else None
            source = ModelSource(BagFrameSource(bags, config, "model", scratch), estimator,
                                 config.time_jump_tolerance, cache, live)
        else:
            source = BagFrameSource(bags, config, "recorded", scratch)
        if config.scale.source != "none":
            source = MetricSource(source, config.scale, config.time_jump_tolerance)
        sinks = [OutputBagWriter(output / "labels.bag", config.outputs.error_range)] if config.outputs.bag else []
        info = RunInfo(inputs=[str(b) for b in bags], model=config.model, command=command)
        result = Labeller(config, output, sinks, progress=progress, info=info).run(source)
        if result.complete:
            shutil.rmtree(stores, ignore_errors=True)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def predict_bags(bags: list[Path], config: LabellerConfig, stores: Path, jobs: int, resume: bool,
                 progress: bool) -> None:
    """Run the model over every bag without a finished store (all of them unless ``resume``), ``jobs`` at once."""
    if not resume:
        shutil.rmtree(stores, ignore_errors=True)
    todo = [(str(bag), name) for bag, name in zip(bags, sequence_names(list(bags)))
            if not (stores / name / INDEX_FILE).is_file()]
    for _, name in todo:
        shutil.rmtree(stores / name, ignore_errors=True)  # an unfinished store from a killed run
    if not todo:
        return
    registry.create(config.model, config.estimator, config.device, config.mode)  # a bad model fails here, once
    settings = to_dict(config)
    # spawn: each worker imports MindSpore afresh (a forked MindSpore runtime is not safe to use)
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        work = [pool.submit(_predict_bag, bag, name, settings, str(stores / name)) for bag, name in todo]
        for future in tqdm(as_completed(work), total=len(work), desc="bags", unit="bag", disable=not progress):
            future.result()


def _predict_bag(bag: str, sequence: str, settings: dict, folder: str) -> None:
    """Worker: the model over one bag in recorded order, into a finished prediction store."""
    config = load_labeller_config(settings)
    estimator = registry.create(config.model, config.estimator, config.device, config.mode)
    with tempfile.TemporaryDirectory(prefix="label_") as scratch:
        base = BagFrameSource([Path(bag)], config, "model", Path(scratch), sequences=[sequence])
        source = ModelSource(base, estimator, config.time_jump_tolerance, Path(folder),
                             config.live.model_ms if config.live.drop_frames else None)
        for _ in source.records():
            pass
        source.write_index()


def export_only(bags: list[Path], config: LabellerConfig, output: Path, progress: bool = True) -> int:
    """RGB + ground-truth pairs into ``output/dataset`` without scoring."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    source = BagFrameSource(bags, config, "export", output)
    exporter = DatasetExporter(output / "dataset", [str(b) for b in bags])
    try:
        for record in tqdm(source.records(), desc="export", unit="frame", disable=not progress):
            exporter.add_record(record)
    finally:
        exporter.close()
    for note in source.notes:
        print(f"label_bag: {note}", file=sys.stderr)
    print(f"label_bag: exported {exporter.written} RGB + depth pairs to {output / 'dataset'} "
          f"({exporter.skipped} frames without ground truth or with mismatched sizes)")
    return EXIT_OK if exporter.written and not source.notes else EXIT_INCOMPLETE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="label_bag", description="Score depth predictions in rosbags against simulator ground truth.",
        epilog="Without --model the predictions recorded in the bag (topics.prediction, default "
               "/depth_node/depth/image with /depth_node/depth/info) are scored.")
    parser.add_argument("bags", nargs="+", type=Path, help="bag file(s); each is one sequence")
    parser.add_argument("--output", "-o", required=True, type=Path, help="output folder")
    parser.add_argument("--config", "-c", help="labeller YAML (default: built-in defaults = config/labeller.yaml)")
    parser.add_argument("--model", "-m", help="run this registered estimator over the RGB frames (mode b)")
    parser.add_argument("--estimator", help="estimator options as YAML, e.g. '{scale: 1.1, shift: 0}'")
    parser.add_argument("--alignment", choices=ALIGNMENTS, help="override scoring.alignment")
    parser.add_argument("--scale", choices=SCALE_SOURCES,
                        help="metric scale source as depth_node's scale.source; scores with alignment none")
    parser.add_argument("--scope", choices=SCOPES, help="override scoring.scope")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set scoring.max_depth=40 --set topics.pose=/odom")
    parser.add_argument("--output-bag", action="store_true", help="also write labels.bag for RViz replay")
    parser.add_argument("--dataset", action="store_true", help="also export RGB + GT pairs to <output>/dataset")
    parser.add_argument("--export-only", action="store_true", help="only export RGB + GT pairs (no scoring)")
    parser.add_argument("--no-labels", action="store_true", help="skip the per-frame PNG/npy label files")
    parser.add_argument("--live", action="store_true",
                        help="mode (b): drop the frames the live node would drop at the model's speed (live.*)")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="mode (b): run the model over this many bags at once, one process each")
    parser.add_argument("--resume", action="store_true",
                        help="mode (b): keep the bags a killed run of the same output folder finished")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    overrides = parse_overrides(args.set)
    if args.model is not None:
        overrides["model"] = args.model
    if args.estimator is not None:
        options = yaml.safe_load(args.estimator) or {}
        if not isinstance(options, dict):
            raise ConfigError(f"--estimator must be a YAML mapping, got {args.estimator!r}")
        overrides["estimator"] = options
    scoring = overrides.setdefault("scoring", {})
    if args.scale:  # the node's metric pipeline, scored as published (no alignment to the ground truth)
        overrides.setdefault("scale", {})["source"] = args.scale
        scoring["alignment"] = "none"
    if args.alignment:
        scoring["alignment"] = args.alignment
    if args.scope:
        scoring["scope"] = args.scope
    if args.live:
        overrides.setdefault("live", {})["drop_frames"] = True
    outputs = overrides.setdefault("outputs", {})
    if args.output_bag:
        outputs["bag"] = True
    if args.dataset:
        outputs["dataset"] = True
    if args.no_labels:
        outputs["labels"] = False
    return overrides


def main(argv: Optional[list[str]] = None) -> int:
    argv = rospy.myargv(argv if argv is not None else sys.argv)
    args = _parser().parse_args(argv[1:])
    try:
        config = build_config(args.config, _overrides(args))
    except (ConfigError, yaml.YAMLError) as exc:
        print(f"label_bag: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs < 1 or ((args.jobs > 1 or args.resume) and not config.runs_model):
        print("label_bag: --jobs (>= 1) and --resume apply to a model run (--model)", file=sys.stderr)
        return EXIT_USAGE
    keep_freed_memory()
    if args.export_only:
        return export_only(args.bags, config, args.output, progress=not args.quiet)
    try:
        result = label(args.bags, config, args.output, progress=not args.quiet, command=shlex.join(argv),
                       jobs=args.jobs, resume=args.resume)
    except (EstimatorError, ConfigError) as exc:
        print(f"label_bag: cannot create model '{config.model}': {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _report(result, args.output)


def _report(result: LabelResult, output: Path) -> int:
    summary = result.summary
    for note in summary["notes"]:
        print(f"label_bag: {note}", file=sys.stderr)
    print(f"label_bag: {first_line(summary)}")
    print(f"label_bag: report {result.paths['report_md']} (and .html), per-frame {result.paths['per_frame']}")
    return EXIT_OK if result.complete and summary["scored"] > 0 else EXIT_INCOMPLETE


def compare_main(argv: Optional[list[str]] = None) -> int:
    """compare_runs: compare existing run folders, or label several settings of the same bags, then compare."""
    argv = rospy.myargv(argv if argv is not None else sys.argv)
    parser = argparse.ArgumentParser(
        prog="compare_runs", description="Compare labelling runs in one table and one plot.",
        epilog="runs.yaml maps a run name to labeller config overrides, e.g. "
               "{oracle: {model: oracle}, scaled: {model: oracle, estimator: {scale: 1.1}}}.")
    parser.add_argument("runs", nargs="*", type=Path, help="label_bag output folders to compare")
    parser.add_argument("--output", "-o", required=True, type=Path, help="folder for comparison.* (and new runs)")
    parser.add_argument("--names", nargs="+", help="a display name per run folder")
    parser.add_argument("--bags", nargs="+", type=Path, help="label these bags once per entry of --runs")
    parser.add_argument("--runs", dest="runs_file", help="YAML: run name -> config overrides (with --bags)")
    parser.add_argument("--config", "-c", help="base labeller YAML for --runs")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    args = parser.parse_args(argv[1:])
    folders, names = list(args.runs), args.names
    if bool(args.bags) != bool(args.runs_file):
        parser.error("--bags and --runs go together")
    if args.runs_file:
        try:
            new_folders, new_names = _label_runs(args)
        except (ConfigError, EstimatorError, yaml.YAMLError) as exc:
            print(f"compare_runs: {exc}", file=sys.stderr)
            return EXIT_USAGE
        folders += new_folders
        names = (names or [f.name for f in args.runs]) + new_names if names or args.runs else new_names
    try:
        paths = compare_runs(folders, args.output, names)
    except CompareError as exc:
        print(f"compare_runs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"compare_runs: {len(folders)} runs compared: {paths['md']} (and .html, .csv, .png)")
    return EXIT_OK


def _label_runs(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    runs = load_yaml(args.runs_file)
    if not runs:
        raise ConfigError(f"{args.runs_file}: no runs")
    base = load_yaml(args.config) if args.config else {}
    configs = {}
    for name, overrides in runs.items():  # check every run before labelling any
        if not isinstance(overrides, dict):
            raise ConfigError(f"{args.runs_file}: run '{name}' must map to config overrides")
        try:
            configs[str(name)] = load_labeller_config(merge_dicts(base, overrides))
        except ConfigError as exc:
            raise ConfigError(f"{args.runs_file}: run '{name}': {exc}") from None
    folders = []
    keep_freed_memory()
    for name, config in configs.items():
        folder = args.output / name
        result = label(args.bags, config, folder, progress=not args.quiet, command=f"compare_runs run '{name}'")
        print(f"compare_runs: {name}: {first_line(result.summary)}")
        folders.append(folder)
    return folders, list(configs)
