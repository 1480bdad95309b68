"""label_bag on real bags written by the simulator: both modes, known errors, damaged input, outputs."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rosbag

from depth_ms.core.types import DepthKind
from depth_ms.msg import DepthInfo
from depth_ms.ros import conversions
from depth_ms.ros.label_bag import main
from depth_ms.ros.sim_bag import write_sim_bag
from depth_ms.ros.sim_messages import DEPTH_TOPIC, RGB_TOPIC
from depth_ms.sim import DroneSimulator, load_sim_config

FRAMES = 12
PREDICTION, RELATIVE, INFO = "/depth_node/depth/image", "/depth_node/depth/relative", "/depth_node/depth/info"
QUICK = ["--quiet", "--no-labels", "--set", "scoring.max_depth=100", "--set", "outputs.samples=1"]


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "flight.bag"
    return write_sim_bag(DroneSimulator(load_sim_config({"width": 64, "height": 48})), path, FRAMES)


@pytest.fixture(scope="module")
def gt_frames(sim_bag):
    with rosbag.Bag(str(sim_bag)) as bag:
        return [conversions.image_to_depth(msg) for _, msg, _ in bag.read_messages(DEPTH_TOPIC)]


def _copy(src, dst, keep=lambda topic: True, chunk_threshold=768 * 1024, transform=None):
    """Copy a bag message by message; ``transform(topic, msg, t, out)`` may write extra messages."""
    with rosbag.Bag(str(src)) as inp, rosbag.Bag(str(dst), "w", chunk_threshold=chunk_threshold) as out:
        for topic, msg, t in inp.read_messages():
            if keep(topic):
                out.write(topic, msg, t)
            if transform is not None:
                transform(topic, msg, t, out)
    return dst


def _with_predictions(src, dst, depth_of, kind=DepthKind.METRIC, drop=(), size=None):
    """Add the depth node's outputs (depth/image, or depth/relative for relative kinds, + depth/info, stamps of
    the RGB frames) to a bag."""
    counter = iter(range(10 ** 6))

    def add(topic, msg, t, out):
        if topic != DEPTH_TOPIC:
            return
        index = next(counter)
        if index in drop:  # the node skipped this frame
            return
        depth = depth_of(conversions.image_to_depth(msg))
        if size is not None:
            depth = np.ones(size[::-1], np.float32)
        topic = PREDICTION if kind == DepthKind.METRIC else RELATIVE
        out.write(topic, conversions.depth_to_image(depth.astype(np.float32), msg.header), t)
        out.write(INFO, DepthInfo(header=msg.header, model="recorded_oracle", depth_kind=int(kind), scale=1.0,
                                  shift=0.0, model_latency_ms=12.5), t)

    return _copy(src, dst, transform=add)


def _summary(output: Path) -> dict:
    return json.loads((output / "summary.json").read_text())


def test_rosrun_label_bag_scores_the_oracle_perfectly(sim_bag, tmp_path):
    out = tmp_path / "oracle"
    result = subprocess.run(["rosrun", "depth_ms", "label_bag", str(sim_bag), "-o", str(out), "--model", "oracle",
                             "--quiet", "--set", "outputs.samples=1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{FRAMES}/{FRAMES} frames scored: AbsRel 0.0000" in result.stdout
    s = _summary(out)
    assert s["complete"] and s["metrics"]["rmse"] == 0.0 and s["metrics"]["delta1"] == 1.0
    assert s["temporal"]["tae_pairs"] == FRAMES - 1 and s["temporal"]["flicker"] == 0.0
    assert s["pairing"].get("frames without pose (/mavros/local_position/pose)", 0) == 0
    for name in ("report.md", "report.html", "per_frame.csv", "plots/samples.png", "labels/gt/flight_000011.png",
                 "labels/pred/flight_000011.npy"):
        assert (out / name).is_file(), name


def test_model_with_known_distortion_gives_the_known_error(sim_bag, gt_frames, tmp_path):
    out = tmp_path / "scaled"
    assert main(["label_bag", str(sim_bag), "-o", str(out), "--model", "oracle", "--estimator", "{scale: 1.1}",
                 *QUICK]) == 0
    m = _summary(out)["metrics"]
    assert m["abs_rel"] == pytest.approx(0.1, rel=1e-5) and m["delta1"] == 1.0
    expected_rmse = np.mean([np.sqrt(np.nanmean((0.1 * g.astype(np.float64)) ** 2)) for g in gt_frames])
    assert m["rmse"] == pytest.approx(expected_rmse, rel=1e-5)


def test_recorded_predictions_are_paired_by_stamp_and_scored(sim_bag, tmp_path):
    bag = _with_predictions(sim_bag, tmp_path / "recorded.bag", lambda gt: gt * 1.1, drop={4, 7})
    out = tmp_path / "recorded"
    assert main(["label_bag", str(bag), "-o", str(out), *QUICK]) == 0
    s = _summary(out)
    assert s["scored"] == s["frames"] == FRAMES - 2
    assert s["metrics"]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert s["pairing"]["unused ground truth (/camera/depth/image_raw) messages"] == 2  # frames the node dropped
    assert s["model_ms_mean"] == pytest.approx(12.5)
    assert ",scored,,recorded_oracle,none," in (out / "per_frame.csv").read_text()


def test_recorded_relative_predictions_are_aligned_by_their_depth_kind(sim_bag, tmp_path):
    bag = _with_predictions(sim_bag, tmp_path / "affine.bag", lambda gt: (gt - 3.0) / 2.0, DepthKind.AFFINE_DEPTH)
    out = tmp_path / "affine"
    assert main(["label_bag", str(bag), "-o", str(out), "--set", f"topics.prediction={RELATIVE}", *QUICK]) == 0
    s = _summary(out)
    assert s["alignment_applied"] == {"depth": FRAMES}
    assert s["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)


def test_truncated_bag_keeps_the_frames_before_the_cut(sim_bag, tmp_path):
    whole = _copy(sim_bag, tmp_path / "chunks.bag", chunk_threshold=16 * 1024)
    data = whole.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "cut"
    assert main(["label_bag", str(cut), "-o", str(out), "--model", "oracle", *QUICK]) == 1
    s = _summary(out)
    assert not s["complete"] and any("not indexed (recording cut short?)" in n for n in s["notes"])
    assert 0 < s["scored"] < FRAMES and s["metrics"]["abs_rel"] == 0.0
    assert len((out / "per_frame.csv").read_text().splitlines()) == s["frames"] + 1
    assert cut.read_bytes() == data[: int(len(data) * 0.6)]  # the input is never modified


def test_bag_without_ground_truth_is_named_and_other_bags_are_still_scored(sim_bag, tmp_path):
    no_gt = _copy(sim_bag, tmp_path / "no_gt.bag", keep=lambda topic: topic != DEPTH_TOPIC)
    out = tmp_path / "mixed"
    assert main(["label_bag", str(no_gt), str(sim_bag), "-o", str(out), "--model", "oracle", *QUICK]) == 1
    s = _summary(out)
    assert s["scored"] == FRAMES and list(s["sequences"]) == ["flight"]
    note = next(n for n in s["notes"] if "no_gt.bag" in n)
    assert "no messages on the ground-truth topic '/camera/depth/image_raw'" in note
    assert RGB_TOPIC in note and "set topics.gt_depth" in note


def test_nan_only_ground_truth_says_so(sim_bag, tmp_path, capsys):
    def nan_gt(topic, msg, t, out):
        if topic == DEPTH_TOPIC:
            out.write(topic, conversions.depth_to_image(np.full((msg.height, msg.width), np.nan), msg.header), t)
    bag = _copy(sim_bag, tmp_path / "nan.bag", keep=lambda topic: topic != DEPTH_TOPIC, transform=nan_gt)
    assert main(["label_bag", str(bag), "-o", str(tmp_path / "nan"), "--model", "oracle", *QUICK]) == 1
    assert "no valid ground-truth pixel (all NaN" in capsys.readouterr().err
    assert _summary(tmp_path / "nan")["skipped"] == {"no_valid_gt": FRAMES}


def test_prediction_of_another_size_is_reported(sim_bag, tmp_path):
    bag = _with_predictions(sim_bag, tmp_path / "size.bag", lambda gt: gt, size=(30, 30))
    assert main(["label_bag", str(bag), "-o", str(tmp_path / "size"), *QUICK]) == 1
    s = _summary(tmp_path / "size")
    assert s["skipped"] == {"size_mismatch": FRAMES}
    assert "prediction is 30x30 but ground truth 64x48" in s["skip_examples"]["size_mismatch"]


def test_output_bag_dataset_and_export_only(sim_bag, tmp_path):
    out = tmp_path / "full"
    assert main(["label_bag", str(sim_bag), "-o", str(out), "--model", "oracle", "--output-bag", "--dataset",
                 *QUICK]) == 0
    with rosbag.Bag(str(out / "labels.bag")) as bag:
        counts = {t: i.message_count for t, i in bag.get_type_and_topic_info().topics.items()}
        error = next(msg for _, msg, _ in bag.read_messages("/label/depth/error"))
    assert counts["/label/depth/aligned"] == counts["/label/depth/error_colored"] == FRAMES
    assert counts["/label/camera_info"] == counts["/label/camera_pose"] == FRAMES
    assert np.nanmax(np.abs(conversions.image_to_depth(error))) == 0.0
    assert len((out / "dataset/index.csv").read_text().splitlines()) == FRAMES + 1
    assert main(["label_bag", str(sim_bag), "-o", str(tmp_path / "export"), "--export-only", "--quiet"]) == 0
    assert len((tmp_path / "export/dataset/index.csv").read_text().splitlines()) == FRAMES + 1
    assert not (tmp_path / "export/summary.json").exists()


def test_unknown_option_is_named(sim_bag, tmp_path, capsys):
    assert main(["label_bag", str(sim_bag), "-o", str(tmp_path / "x"), "--set", "scoring.max_dept=3"]) == 2
    assert "'max_dept'" in capsys.readouterr().err


def test_launch_file_runs_the_labeller(sim_bag, tmp_path, launch):
    out = tmp_path / "launched"
    proc = launch("label_bag.launch", f"bag:={sim_bag}", f"output:={out}", "model:=oracle",
                  "extra_args:=--no-labels --set outputs.samples=1")
    proc.proc.wait(timeout=120)
    assert _summary(out)["scored"] == FRAMES, proc.output()


def test_compare_runs_labels_several_settings_and_compares_them(sim_bag, tmp_path):
    runs = tmp_path / "runs.yaml"
    runs.write_text("exact: {model: oracle}\nscaled: {model: oracle, estimator: {scale: 1.2}}\n")
    result = subprocess.run(["rosrun", "depth_ms", "compare_runs", "-o", str(tmp_path / "cmp"), "--bags",
                             str(sim_bag), "--runs", str(runs), "--quiet"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "cmp/comparison.md").read_text()
    assert "| exact | oracle |" in table and "| scaled | oracle |" in table and "AbsRel: exact (0)" in table
    assert (tmp_path / "cmp/comparison.png").is_file() and (tmp_path / "cmp/scaled/report.html").is_file()


@pytest.mark.parametrize("source", ["ground_plane", "rangefinder"])
def test_label_bag_scale_runs_the_nodes_metric_pipeline_on_a_distorted_oracle(sim_bag, tmp_path, source):
    """Mode (b) with --scale: the relative map gets its metres from the bag's pose (and Range) and is scored
    without alignment; the frames are those the node would publish as metric."""
    out = tmp_path / source
    oracle = "{kind: affine_disparity, scale: 3.0, shift: 0.1}"
    assert main(["label_bag", str(sim_bag), "-o", str(out), "--model", "oracle", "--estimator", oracle,
                 "--scale", source, *QUICK]) == 0
    s = _summary(out)
    assert s["alignment_applied"] == {"none": s["scored"]} and s["scored"] >= FRAMES - 1
    assert s["metrics"]["abs_rel"] < 0.03 and s["metrics"]["delta1"] > 0.98
    rows = (out / "per_frame.csv").read_text().splitlines()[1:]
    scales = [float(row.split(",")[7]) for row in rows if ",scored," in row]
    assert np.median(scales) == pytest.approx(1 / 3, rel=0.03)  # 1 / metres = value / 3 - 1 / 30


def test_label_bag_scale_none_leaves_relative_maps_to_the_alignment(sim_bag, tmp_path):
    out = tmp_path / "aligned"
    assert main(["label_bag", str(sim_bag), "-o", str(out), "--model", "oracle", "--estimator",
                 "{kind: affine_depth, scale: 0.5, shift: 2.0}", *QUICK]) == 0
    s = _summary(out)
    assert s["alignment_applied"] == {"depth": FRAMES} and s["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)


@pytest.fixture(scope="module")
def three_bags(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    return [write_sim_bag(DroneSimulator(load_sim_config({"width": 64, "height": 48, "seed": seed})),
                          folder / f"flight_{seed}.bag", 8) for seed in (1, 2, 3)]


def _rows(output: Path) -> list[str]:
    return sorted((output / "per_frame.csv").read_text().splitlines()[1:])


def test_jobs_label_bags_in_parallel_with_the_results_of_one_process(three_bags, tmp_path):
    oracle = ["--model", "oracle", "--estimator", "{scale: 1.1}", *QUICK]
    assert main(["label_bag", *map(str, three_bags), "-o", str(tmp_path / "one"), *oracle]) == 0
    assert main(["label_bag", *map(str, three_bags), "-o", str(tmp_path / "two"), "--jobs", "2", *oracle]) == 0
    one, two = _summary(tmp_path / "one"), _summary(tmp_path / "two")
    assert two["scored"] == one["scored"] == 24 and two["metrics"] == one["metrics"]
    strip = lambda rows: [",".join(r.split(",")[:-2]) for r in rows]  # noqa: E731 - model_ms differs
    assert strip(_rows(tmp_path / "two")) == strip(_rows(tmp_path / "one"))
    assert not (tmp_path / "two" / ".predictions").exists()  # a finished run keeps no stores


def test_resume_keeps_finished_bags_and_redoes_the_unfinished_one(three_bags, tmp_path):
    """A run killed after the first bag: its store is finished, the second bag's store is half written. The
    resumed run reads the first store as it is (marked here: one of its frames doubled) and redoes the second."""
    from depth_ms.ros.label_bag import build_config, predict_bags

    out = tmp_path / "killed"
    config = build_config(None, {"model": "oracle", "estimator": {"scale": 1.1}})
    predict_bags(three_bags[:1], config, out / ".predictions", 1, False, False)
    marked = out / ".predictions" / "flight_1" / "flight_1_000000.npy"
    np.save(marked, np.load(marked) * 2.0)  # 2.2 x the ground truth: AbsRel near 1.2 if this store is reused
    half = out / ".predictions" / "flight_2"
    half.mkdir()
    (half / "flight_2_000000.npy").write_bytes(b"half a file")
    oracle = ["--model", "oracle", "--estimator", "{scale: 1.1}", *QUICK]
    assert main(["label_bag", *map(str, three_bags), "-o", str(out), "--resume", *oracle]) == 0
    rows = _rows(out)
    assert len(rows) == 24 and len({tuple(r.split(",")[:2]) for r in rows}) == 24  # each frame once
    abs_rel = {tuple(r.split(",")[:2]): float(r.split(",")[11]) for r in rows}
    assert abs_rel["flight_1", "0"] > 1.0  # the finished store, not recomputed (about 1.2, less where clipped)
    assert all(v == pytest.approx(0.1, rel=1e-4) for k, v in abs_rel.items() if k != ("flight_1", "0"))
    assert _summary(out)["complete"] and not (out / ".predictions").exists()


def test_jobs_need_a_model(sim_bag, tmp_path):
    assert main(["label_bag", str(sim_bag), "-o", str(tmp_path / "x"), "--jobs", "2"]) == 2
