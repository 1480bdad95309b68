"""Training in MindSpore on simulator frames (no ROS): the loss, a few steps, checkpoints the estimator loads,
resume, and the shipped model's quality on held-out flights."""
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mindspore")

from depth_ms.models import mindspore_device  # noqa: E402

mindspore_device.configure("cpu")

import mindspore as ms  # noqa: E402

from depth_ms.core.types import Frame  # noqa: E402
from depth_ms.evaluation.alignment import fit_scale_shift  # noqa: E402
from depth_ms.models import registry  # noqa: E402
from depth_ms.models import weights as weight_files  # noqa: E402
from depth_ms.sim import DroneSimulator, load_sim_config  # noqa: E402
from depth_ms.training.checkpoints import CheckpointError, latest_checkpoint  # noqa: E402
from depth_ms.training.config import load_train_config  # noqa: E402
from depth_ms.training.flights import load_flight_plan, plan_flights  # noqa: E402
from depth_ms.training.diffusion import normalised_depth  # noqa: E402
from depth_ms.training.losses import ScaleShiftInvariantLoss, least_squares_abs_rel_loss  # noqa: E402
from depth_ms.training.marigold_trainer import finetune_target  # noqa: E402
from depth_ms.training.samples import SampleSet  # noqa: E402
from depth_ms.training.trainer import FastDepthTrainer  # noqa: E402
from depth_ms.training.validation import score_relative  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY_ARCH = {"stem": 8, "widths": [16, 16, 24, 32], "blocks": [1, 0, 1, 0], "features": 16, "head": 8}


@pytest.fixture(scope="module")
def tiny_samples():
    sim = DroneSimulator(load_sim_config({"width": 96, "height": 72, "rate_hz": 0.5}))
    samples = SampleSet(store_long_side=96)
    for i in range(8):
        frame = sim.render(i)
        samples.add(frame.rgb, frame.depth, "tiny", i)
    return samples


def _config(tmp_path, **changes):
    config = {"arch": TINY_ARCH, "data": {"train": ["unused"], "val_frames": 3},
              "crops": [{"from_step": 0, "width": 64, "height": 64}],
              "optim": {"steps": 6, "batch_size": 4, "lr": 3e-3, "min_lr": 1e-4, "warmup_steps": 1},
              "schedule": {"log_every": 1, "val_every": 3, "checkpoint_every": 3, "keep_checkpoints": 3},
              "resolution": 64, "output": str(tmp_path / "run")}
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return load_train_config(config)


def _loss(pred, depth, mask):
    loss = ScaleShiftInvariantLoss()
    return float(loss(ms.Tensor(pred), ms.Tensor(depth), ms.Tensor(mask)).asnumpy())


def test_loss_ignores_scale_and_shift_and_punishes_structure():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 50, (2, 32, 40)).astype(np.float32)
    mask = (rng.random((2, 32, 40)) > 0.2).astype(np.float32)
    exact = _loss((3.0 / depth + 0.7).astype(np.float32), depth * mask, mask)
    assert exact < 1e-3
    assert _loss(rng.random((2, 32, 40)).astype(np.float32), depth * mask, mask) > 1.0
    # the invalid pixels do not count, whatever the prediction says there
    wild = np.where(mask > 0, 3.0 / depth + 0.7, 1e3).astype(np.float32)
    assert _loss(wild, depth * mask, mask) == pytest.approx(exact, abs=1e-4)


def test_least_squares_abs_rel_loss_is_the_labellers_alignment_and_metric():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 50, (2, 24, 32)).astype(np.float32)
    depth[:, :3] = 0.0  # no ground truth: not scored
    pred = (0.02 * depth - 0.4 + rng.normal(0, 0.05, depth.shape)).astype(np.float32)  # affine depth, noisy
    loss = least_squares_abs_rel_loss(ms.Tensor(pred), ms.Tensor(depth), 0.0, 1).asnumpy()  # (B,)
    for b in range(2):
        valid = depth[b] > 0
        scale, shift = fit_scale_shift(pred[b][valid], depth[b][valid], "depth")
        abs_rel = np.mean(np.abs(scale * pred[b][valid] + shift - depth[b][valid]) / depth[b][valid])
        assert loss[b] == pytest.approx(abs_rel, rel=1e-3)
    exact = (0.02 * depth - 0.4).astype(np.float32)
    assert least_squares_abs_rel_loss(ms.Tensor(exact), ms.Tensor(depth), 0.5, 3).asnumpy().max() < 1e-4


def test_finetune_target_is_depth_over_its_median_with_missing_ground_truth_at_zero():
    depth = np.array([[[2.0, 4.0], [8.0, 0.0]]], np.float32)  # (1, 2, 2) metres, 0 = none
    mask = (depth > 0).astype(np.float32)
    normalised = normalised_depth(depth, mask)  # (1, 3, 2, 2)
    target = finetune_target("least_squares_abs_rel", depth, mask, normalised)
    np.testing.assert_allclose(target, [[[0.5, 1.0], [2.0, 0.0]]])
    assert target.dtype == np.float16
    np.testing.assert_array_equal(finetune_target("normalised_l1", depth, mask, normalised),
                                  normalised[:, 0].astype(np.float16))


def test_training_lowers_the_loss_and_writes_a_checkpoint_the_estimator_loads(tmp_path, tiny_samples):
    config = _config(tmp_path, optim={"steps": 30}, schedule={"val_every": 30, "checkpoint_every": 30},
                     processing_resolution=96)
    trainer = FastDepthTrainer(config, tiny_samples, tiny_samples, progress=False, say=lambda _: None)
    images, depth, mask = trainer.batch(0)

    def fixed_batch_loss():
        trainer.net.set_train(False)
        try:
            return _loss(trainer.net(ms.Tensor(images)).asnumpy(), depth, mask)
        finally:
            trainer.net.set_train(True)

    before = fixed_batch_loss()
    metrics = trainer.run()
    assert fixed_batch_loss() < 0.8 * before
    assert metrics["frames"] == 3 and 0 < metrics["abs_rel"] < 1
    step, folder = latest_checkpoint(tmp_path / "run")
    assert step == 30 and (folder / "config.yaml").is_file()
    assert (tmp_path / "run" / "plot.png").is_file() and (tmp_path / "run" / "log.csv").is_file()

    # the node's estimator loads the checkpoint as it is: BatchNorm folded, native kernels, graph mode
    estimator = registry.create("midas", {"weights": str(folder / "model.safetensors"), "resolution": 64},
                                mode="graph")
    assert estimator.weights.startswith("explicit: ")
    frame = tiny_samples.samples[5]
    served = estimator.predict(Frame(rgb=frame.rgb, stamp=0.0))
    np.testing.assert_allclose(served.depth, trainer.predict(frame.rgb), rtol=2e-3,
                               atol=2e-3 * np.abs(served.depth).max())
    # without a resolution option the estimator runs at the one the file records (processing_resolution 96:
    # the 96x72 frame at 96x64, where the training resolution 64 gives 64x64)
    default = registry.create("midas", {"weights": str(folder / "model.safetensors")}, mode="graph")
    assert served.extras["resolution"] == (64, 64)
    assert default.predict(Frame(rgb=frame.rgb, stamp=0.0)).extras["resolution"] == (96, 64)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_samples):
    straight = FastDepthTrainer(_config(tmp_path), tiny_samples, tiny_samples, progress=False)
    straight.run()
    run = tmp_path / "run"
    uninterrupted = (run / "log.csv").read_text()
    shutil.rmtree(run / "checkpoints" / "step_000006")  # as if killed between steps 3 and 6
    resumed = FastDepthTrainer(_config(tmp_path), tiny_samples, tiny_samples, progress=False)
    resumed.run(resume=True)

    def losses(text):
        return [row.split(",")[2] for row in text.splitlines()[1:]]

    assert len(losses(uninterrupted)) == 6
    assert losses((run / "log.csv").read_text()) == losses(uninterrupted)
    np.testing.assert_array_equal(resumed.model_tensors()["decoder.output_conv.2.weight"],
                                  straight.model_tensors()["decoder.output_conv.2.weight"])


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path, tiny_samples):
    FastDepthTrainer(_config(tmp_path, optim={"steps": 3}), tiny_samples, tiny_samples, progress=False).run()
    other = _config(tmp_path, arch={**TINY_ARCH, "widths": [16, 16, 24, 48]})
    with pytest.raises(CheckpointError, match="another architecture.*widths"):
        FastDepthTrainer(other, tiny_samples, tiny_samples, progress=False).run(resume=True)


def test_shipped_model_loads_without_any_weights_directory_and_scores_held_out_flights(tmp_path, monkeypatch):
    """The quality regression bar: the shipped fast model on held-out flights of the plan, as the node runs it."""
    monkeypatch.setenv("DEPTH_MS_WEIGHTS", str(tmp_path / "empty"))
    estimator = registry.create("midas", {}, mode="graph")
    assert estimator.weights == f"shipped: {weight_files.shipped('midas')}"
    plan = load_flight_plan(ROOT / "config" / "training" / "flights.yaml")
    scores = []
    for flight in plan_flights(plan, "heldout")[:4]:
        sim = DroneSimulator(load_sim_config({**_as_dict(flight.config), "width": 320, "height": 240}))
        for index in (3, 17):
            frame = sim.render(index)
            pred = estimator.predict(Frame(rgb=frame.rgb, stamp=0.0)).depth
            scores.append(score_relative(pred, frame.depth, 0.2, 65.535))
    abs_rel = np.mean([s["abs_rel"] for s in scores])
    delta1 = np.mean([s["delta1"] for s in scores])
    assert abs_rel < 0.09 and delta1 > 0.9, (abs_rel, delta1)


def test_shipped_marigold_runs_cold_and_warm_on_held_out_flights(tmp_path, monkeypatch):
    """The quality regression bar of the shipped Marigold-family folder: 4 cold steps, as the labeller scores
    it, and its warm frames (1 step) stay close."""
    monkeypatch.setenv("DEPTH_MS_WEIGHTS", str(tmp_path / "empty"))
    estimator = registry.create("marigold", {"steps": 4, "warm_start": "renoise"}, mode="graph")
    assert estimator.weights == f"shipped: {weight_files.shipped('marigold')}"
    plan = load_flight_plan(ROOT / "config" / "training" / "flights.yaml")
    cold, warm = [], []
    for flight in plan_flights(plan, "heldout")[:4]:
        sim = DroneSimulator(load_sim_config({**_as_dict(flight.config), "width": 320, "height": 240,
                                              "rate_hz": 10.0}))
        estimator.reset()
        for index in (30, 31):  # 0.1 s apart, as the 10 Hz camera: the second frame is warm
            frame = sim.render(index)
            prediction = estimator.predict(Frame(rgb=frame.rgb, stamp=index * 0.1))
            (warm if prediction.warm else cold).append(score_relative(prediction.depth, frame.depth, 0.2, 65.535,
                                                                      "depth"))
    assert len(cold) == 4 and len(warm) == 4
    cold_abs_rel, cold_delta1 = np.mean([s["abs_rel"] for s in cold]), np.mean([s["delta1"] for s in cold])
    assert cold_abs_rel < 0.26 and cold_delta1 > 0.6, (cold_abs_rel, cold_delta1)
    assert np.mean([s["abs_rel"] for s in warm]) < 1.25 * cold_abs_rel


def _as_dict(config):
    from depth_ms.core.config import to_dict

    return to_dict(config)
