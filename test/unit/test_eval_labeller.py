"""The labeller core on simulator frames (no ROS): scores, outputs, bad input, comparison, config."""
import csv
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_ms.core.config import ConfigError, load_yaml
from depth_ms.core.types import DepthKind, DepthPrediction
from depth_ms.evaluation.compare import compare_runs
from depth_ms.evaluation.config import LabellerConfig, load_labeller_config
from depth_ms.evaluation.labeller import Labeller
from depth_ms.evaluation.labels import png16_to_depth
from depth_ms.evaluation.predict import ModelSource
from depth_ms.evaluation.records import FrameRecord, ListSource
from depth_ms.models import registry
from depth_ms.sim import DroneSimulator, load_sim_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frames():
    sim = DroneSimulator(load_sim_config({"width": 64, "height": 48}))
    return [sim.render(i) for i in range(8)]


def _records(frames, depth_of=lambda gt: gt, kind=DepthKind.METRIC, sequence="flight"):
    return [FrameRecord(sequence, f.index, f.stamp, gt=f.depth, rgb=f.rgb, intrinsics=f.intrinsics,
                        pose=f.T_map_optical,
                        prediction=DepthPrediction(depth_of(f.depth).astype(np.float32), kind))
            for f in frames]


def _config(**sections) -> LabellerConfig:
    data = {"scoring": {"max_depth": 100.0}, "outputs": {"samples": 2}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return load_labeller_config(data)


def _label(tmp_path, records, **sections):
    return Labeller(_config(**sections), tmp_path / "run", progress=False).run(ListSource(records))


def test_ground_truth_scores_perfectly_and_every_output_is_written(tmp_path, frames):
    result = _label(tmp_path, _records(frames), outputs={"dataset": True})
    s = result.summary
    assert s["complete"] and s["scored"] == s["frames"] == 8
    assert s["metrics"]["abs_rel"] == s["metrics"]["rmse"] == s["metrics"]["silog"] == 0.0
    assert s["metrics"]["delta1"] == 1.0 and s["coverage"] == 1.0
    assert s["temporal"]["flicker"] == 0.0 and s["temporal"]["tae_pairs"] == 7
    assert s["temporal"]["tae"] < 3.0  # not 0 even for ground truth: pixel rounding and occlusions
    out = tmp_path / "run"
    for name in ("per_frame.csv", "summary.json", "report.md", "report.html", "plots/metrics_over_time.png",
                 "plots/error_histogram.png", "plots/error_vs_distance.png", "plots/samples.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["scored"] == 8
    assert len((out / "per_frame.csv").read_text().splitlines()) == 9
    # labels: 16-bit millimetres and float metres, both equal to the ground truth
    gt_png = cv2.imread(str(out / "labels/gt/flight_000003.png"), cv2.IMREAD_UNCHANGED)
    assert gt_png.dtype == np.uint16
    np.testing.assert_allclose(png16_to_depth(gt_png), frames[3].depth, atol=5e-4)
    np.testing.assert_array_equal(np.load(out / "labels/pred/flight_000003.npy"), frames[3].depth)
    # dataset export for training: index rows point at files that exist
    index = (out / "dataset/index.csv").read_text().splitlines()
    assert len(index) == 9 and index[1].startswith("rgb/flight_000000.png,depth/flight_000000.png,flight,0,")
    assert (out / "dataset/rgb/flight_000007.png").is_file() and (out / "dataset/meta.json").is_file()
    # the Markdown and HTML reports carry the same sections
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for heading in [line[3:] for line in md.splitlines() if line.startswith("## ")]:
        assert f"<h2>{heading}</h2>" in html


def test_known_distortion_gives_the_known_error(tmp_path, frames):
    s = _label(tmp_path, _records(frames, lambda gt: gt * 1.1)).summary["metrics"]
    assert s["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert s["rmse_log"] == pytest.approx(math.log(1.1), rel=1e-5)
    assert s["log10"] == pytest.approx(math.log10(1.1), rel=1e-5)
    assert s["silog"] == pytest.approx(0.0, abs=1e-2) and s["delta1"] == 1.0
    rmse = np.mean([np.sqrt(np.nanmean((0.1 * f.depth.astype(np.float64)) ** 2)) for f in frames])
    assert s["rmse"] == pytest.approx(rmse, rel=1e-5)


def test_relative_predictions_are_aligned_per_frame_and_per_sequence(tmp_path, frames):
    affine = _records(frames, lambda gt: (gt - 3.0) / 2.0, DepthKind.AFFINE_DEPTH)
    result = _label(tmp_path, affine, scoring={"scope": "sequence"})
    assert result.summary["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(result.summary["alignment_per_sequence"]["flight"], (2.0, 3.0), rtol=1e-5)
    disparity = _records(frames, lambda gt: (1.0 / gt - 0.01) / 0.02, DepthKind.AFFINE_DISPARITY)
    result = Labeller(_config(), tmp_path / "disp", progress=False).run(ListSource(disparity))
    assert result.summary["alignment_applied"] == {"disparity": 8}
    assert result.summary["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-4)


def test_bad_frames_are_counted_with_reasons_and_the_rest_is_kept(tmp_path, frames):
    records = _records(frames[:5])
    records[1] = replace(records[1], gt=np.full_like(frames[1].depth, np.nan))
    records[2] = replace(records[2], prediction=DepthPrediction(np.ones((30, 30), np.float32), DepthKind.METRIC))
    half = frames[3].depth[::2, ::2].copy()  # same aspect ratio, half size: resized, still scored
    records[3] = replace(records[3], prediction=DepthPrediction(half, DepthKind.METRIC))
    s = _label(tmp_path, records).summary
    assert s["scored"] == 3 and s["frames"] == 5
    assert s["skipped"] == {"no_valid_gt": 1, "size_mismatch": 1}
    assert "all NaN" in s["skip_examples"]["no_valid_gt"]
    assert "30x30 but ground truth 64x48 (other aspect ratio)" in s["skip_examples"]["size_mismatch"]
    rows = (tmp_path / "run/per_frame.csv").read_text().splitlines()
    assert [row.split(",")[3] for row in rows[1:]] == ["scored", "no_valid_gt", "size_mismatch", "scored", "scored"]
    assert ",32x24" in rows[4]
    report = (tmp_path / "run/report.md").read_text()
    assert "`no_valid_gt`" in report and "`size_mismatch`" in report


def test_nan_only_ground_truth_says_why_nothing_was_scored(tmp_path, frames):
    records = [replace(r, gt=np.full_like(r.gt, np.nan)) for r in _records(frames[:3])]
    s = _label(tmp_path, records).summary
    assert s["scored"] == 0 and any("no valid ground-truth pixel" in note for note in s["notes"])
    assert (tmp_path / "run/report.html").is_file()


class _BreakingSource(ListSource):
    def records(self):
        for i, record in enumerate(self.items):
            if i == 3:
                raise OSError("disk went away")
            yield record


def test_a_source_failing_half_way_keeps_results(tmp_path, frames):
    result = Labeller(_config(), tmp_path / "run", progress=False).run(_BreakingSource(_records(frames)))
    s = result.summary
    assert not s["complete"] and s["scored"] == 3
    assert any("disk went away" in note for note in s["notes"])
    assert len((tmp_path / "run/per_frame.csv").read_text().splitlines()) == 4


def test_model_runs_once_per_frame_even_with_two_passes(tmp_path, frames):
    oracle = registry.create("oracle", {"scale": 2.0, "shift": 1.0})
    calls = []
    predict = oracle.predict
    oracle.predict = lambda frame: calls.append(frame.stamp) or predict(frame)
    base = ListSource([replace(r, prediction=None) for r in _records(frames)])
    source = ModelSource(base, oracle, cache_dir=tmp_path / "cache")
    result = Labeller(_config(scoring={"scope": "sequence", "alignment": "depth"}), tmp_path / "run",
                      progress=False).run(source)
    assert len(calls) == 8
    assert result.summary["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(result.summary["alignment_per_sequence"]["flight"], (0.5, -0.5), rtol=1e-5)


def test_compare_runs_puts_runs_in_one_table(tmp_path, frames):
    good = Labeller(_config(), tmp_path / "good", progress=False).run(ListSource(_records(frames)))
    bad = Labeller(_config(), tmp_path / "bad", progress=False).run(ListSource(_records(frames, lambda g: g * 1.2)))
    assert good.complete and bad.complete
    paths = compare_runs([tmp_path / "good", tmp_path / "bad"], tmp_path / "cmp")
    md = paths["md"].read_text()
    assert "| good |" in md and "| bad |" in md and "AbsRel: good (0)" in md
    assert paths["png"].is_file() and len(paths["csv"].read_text().splitlines()) == 3


def test_shipped_config_is_the_defaults_and_keys_are_checked():
    assert load_labeller_config(ROOT / "config" / "labeller.yaml") == load_labeller_config({})
    assert set(load_yaml(ROOT / "config" / "labeller.yaml")) == set(LabellerConfig.__dataclass_fields__)
    with pytest.raises(ConfigError, match="'tolerence'"):
        load_labeller_config({"pairing": {"tolerence": 0.1}})
    with pytest.raises(ConfigError, match="scoring.alignment"):
        load_labeller_config({"scoring": {"alignment": "median"}})
    with pytest.raises(ConfigError, match="distance_bins"):
        load_labeller_config({"scoring": {"distance_bins": [40.0, 30.0]}})


def test_evaluation_never_imports_ros_or_models():
    code = ("import sys; import depth_ms.evaluation.labeller, depth_ms.evaluation.compare, "
            "depth_ms.evaluation.predict, depth_ms.evaluation.export; "
            "bad = [m for m in ('rospy', 'rosbag', 'cv_bridge', 'sensor_msgs', 'mindspore', 'torch', "
            "'depth_ms.models') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"}, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_temporal_metrics_see_scale_drift_that_per_frame_alignment_hides(tmp_path, frames):
    """Affine depth whose scale drifts 10 % per frame: per-frame scores are perfect, TAE and flicker are not."""
    drift = iter(1.0 + 0.1 * np.arange(8))
    records = _records(frames, lambda gt: gt * next(drift), kind=DepthKind.AFFINE_DEPTH)
    s = _label(tmp_path, records, scoring={"alignment": "depth", "scope": "frame"}).summary
    assert s["metrics"]["abs_rel"] < 1e-5  # each frame alone is the ground truth up to scale
    steady = _label(tmp_path / "steady", _records(frames, lambda gt: gt * 1.3, kind=DepthKind.AFFINE_DEPTH),
                    scoring={"alignment": "depth", "scope": "frame"}).summary
    assert steady["temporal"]["flicker"] < 1e-3 and steady["temporal"]["tae"] < 3.0
    assert s["temporal"]["flicker"] > 3.0 and s["temporal"]["tae"] > steady["temporal"]["tae"] + 3.0
    assert "flight" in s["alignment_per_sequence"]


def test_live_replay_drops_the_frames_a_busy_node_would_drop(tmp_path, frames):
    """10 Hz frames, 250 ms per frame: the node takes frame 0, then the newest frame each time it frees."""
    records = [replace(r, prediction=None) for r in _records(frames)]
    source = ModelSource(ListSource(records), registry.create("oracle", {}), live_model_ms=250.0,
                         cache_dir=tmp_path / "cache")
    s = Labeller(_config(scoring={"alignment": "depth"}), tmp_path / "run", progress=False).run(source).summary
    with (tmp_path / "run/per_frame.csv").open() as stream:
        status = {int(row["index"]): row["status"] for row in csv.DictReader(stream)}
    assert [i for i, value in sorted(status.items()) if value == "scored"] == [0, 2, 4, 7]  # 7: newest at 0.75 s
    assert {i for i, value in status.items() if value == "dropped_live"} == {1, 3, 5, 6}
    assert s["scored"] == 4 and s["pairing"]["frames_dropped_live"] == 4
