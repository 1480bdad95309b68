"""Training data without MindSpore or ROS: flight plans, sample checks, batches, schedule, logs, checkpoints."""
import errno
from pathlib import Path

import numpy as np
import pytest

from depth_ms.core.config import ConfigError
from depth_ms.evaluation.export import export_dataset
from depth_ms.evaluation.records import FrameRecord
from depth_ms.training import checkpoints as ckpt
from depth_ms.training.augment import AugmentConfig, make_batch, step_rng
from depth_ms.training.config import load_train_config
from depth_ms.training.diffusion import multires_noise, noisy_and_velocity, normalised_depth
from depth_ms.training.flights import load_flight_plan, plan_flights
from depth_ms.training.progress_log import ProgressLog
from depth_ms.training.loop import learning_rates
from depth_ms.training.marigold_config import MarigoldTrainConfig
from depth_ms.training.samples import Sample, SampleSet, read_dataset_folder

TRAINING_CONFIGS = Path(__file__).resolve().parents[2] / "config" / "training"
PLAN = {
    "variation": {"sizes": [[64, 48], [96, 54]]},
    "splits": {
        "train": {"flights": 5, "frames": 3, "rate_hz": 1.0, "seed": 1},
        "heldout": {"flights": 3, "frames": 2, "rate_hz": 1.0, "seed": 2,
                    "variation": {"sun_azimuth_deg": [270.0, 360.0]}},
    },
}


def test_flight_plan_is_deterministic_and_held_out_flights_are_unseen():
    plan = load_flight_plan(PLAN)
    train, again = plan_flights(plan, "train"), plan_flights(load_flight_plan(PLAN), "train")
    assert [f.config for f in train] == [f.config for f in again]
    heldout = plan_flights(plan, "heldout")
    assert not {f.config.seed for f in train} & {f.config.seed for f in heldout}
    assert all(0 <= f.config.world.sun_azimuth_deg < 270 for f in train)
    assert all(270 <= f.config.world.sun_azimuth_deg <= 360 for f in heldout)
    assert len({f.config.world.buildings for f in train}) > 1  # settings vary between flights
    assert {(f.config.width, f.config.height) for f in train + heldout} <= {(64, 48), (96, 54)}
    assert [f.name for f in heldout] == ["heldout_000", "heldout_001", "heldout_002"]


def test_shipped_plan_keeps_its_held_out_flights_apart_from_training_and_validation():
    """The quality of record is scored on flights that neither training nor any choice of the configs saw."""
    plan = load_flight_plan(TRAINING_CONFIGS / "flights.yaml")
    world_seeds = {split: {f.config.seed for f in plan_flights(plan, split)} for split in plan.splits}
    assert not world_seeds["heldout"] & (world_seeds["train"] | world_seeds["validation"])
    for config in ("fast_depth", "marigold"):
        data = load_train_config(TRAINING_CONFIGS / f"{config}.yaml").data
        assert data.val == ["data/flights/validation/*.bag"], config


@pytest.mark.parametrize("change, named", [
    ({"splits": {"a": {"seed": 1}, "b": {"seed": 1}}}, "same seed"),
    ({"splits": {"a": {"seed": 1, "flihgts": 2}}}, "flihgts"),
    ({"colour": 1, "splits": {"a": {}}}, "colour"),
    ({"splits": {"a": {"variation": {"sun": [0, 1]}}}}, "sun"),
    ({"base": {"widht": 3}, "splits": {"a": {}}}, "widht"),
])
def test_flight_plan_errors_name_the_key(change, named):
    with pytest.raises(ConfigError, match=named):
        load_flight_plan(change)


def _depth(height=48, width=64, value=10.0):
    return np.full((height, width), value, np.float32)


def test_broken_samples_are_skipped_and_counted():
    samples = SampleSet(store_long_side=32)
    rgb = np.zeros((48, 64, 3), np.uint8)
    assert samples.add(rgb, _depth())
    assert not samples.add(rgb, np.full((48, 64), np.nan, np.float32))
    assert not samples.add(rgb, _depth(24, 32))
    assert not samples.add(rgb, None)
    assert not samples.add(rgb.astype(np.float32), _depth())
    assert not samples.add(rgb, _depth(value=100.0))  # everything beyond max_depth: nothing valid
    samples.skip("unreadable message")
    assert len(samples) == 1 and samples.samples[0].rgb.shape == (24, 32, 3)
    assert samples.skipped == {"empty or NaN ground truth": 2, "size mismatch": 1, "missing RGB or ground truth": 1,
                               "bad RGB": 1, "unreadable message": 1}


def test_out_of_range_depth_becomes_invalid():
    samples = SampleSet(store_long_side=64, min_depth=0.5, max_depth=20.0)
    depth = _depth()
    depth[0, :5] = [0.1, 25.0, np.inf, -1.0, 5.0]
    samples.add(np.zeros((48, 64, 3), np.uint8), depth)
    kept = samples.samples[0].depth[0, :5]
    assert np.isnan(kept[:4]).all() and kept[4] == 5.0


def test_batches_are_deterministic_per_step_and_rank():
    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8),
                      np.where(rng.random((60, 80)) > 0.1, rng.uniform(1, 50, (60, 80)), np.nan).astype(np.float32))
               for _ in range(4)]
    config = AugmentConfig()
    first = make_batch(samples, np.array([0, 1, 2]), 32, 64, config, step_rng(0, 5, 0))
    again = make_batch(samples, np.array([0, 1, 2]), 32, 64, config, step_rng(0, 5, 0))
    other = make_batch(samples, np.array([0, 1, 2]), 32, 64, config, step_rng(0, 5, 1))
    images, depth, mask = first
    assert images.shape == (3, 3, 32, 64) and depth.shape == mask.shape == (3, 32, 64)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(images, other[0])
    assert set(np.unique(mask)) <= {0.0, 1.0} and (depth[mask == 0] == 0).all() and (depth[mask == 1] >= 1).all()


def test_learning_rate_warms_up_then_decays_to_the_minimum():
    config = load_train_config({"data": {"train": ["x"]}, "optim": {"steps": 100, "warmup_steps": 10, "lr": 1e-3,
                                                                     "min_lr": 1e-5}})
    lrs = learning_rates(config.optim)
    assert lrs.shape == (100,) and np.all(np.diff(lrs[:10]) > 0) and lrs[9] == pytest.approx(1e-3)
    assert np.all(np.diff(lrs[10:]) <= 0) and lrs[-1] == pytest.approx(1e-5, rel=0.05)


@pytest.mark.parametrize("change, named", [
    ({"optim": {"stpes": 3}}, "stpes"),
    ({"crops": [{"from_step": 0, "width": 100, "height": 96}]}, "multiples of 32"),
    ({"crops": [{"from_step": 5, "width": 64, "height": 64}]}, "from_step 0"),
    ({"family": "unet"}, "family"),
    ({"data": {"train": []}}, "data.train"),
])
def test_train_config_errors_name_the_key(change, named):
    config = {"data": {"train": ["x"]}}
    config.update(change)
    with pytest.raises(ConfigError, match=named):
        load_train_config(config)


@pytest.mark.parametrize("change, named", [
    ({"vae": {"crop": 40}}, "vae.crop"),
    ({"unet": {"variants": 0}}, "variants"),
    ({"unet": {"optim": {"lr": -1}}}, "min_lr"),
    ({"vae": {"archh": {}}}, "archh"),
])
def test_marigold_config_is_strict_and_names_the_key(change, named):
    config = {"family": "marigold", "data": {"train": ["x"]}}
    config.update(change)
    with pytest.raises(ConfigError, match=named):
        load_train_config(config)


def test_marigold_config_builds_frames_at_the_training_resolution():
    config = load_train_config({"family": "marigold", "data": {"train": ["x"]}, "resolution": 128})
    assert isinstance(config, MarigoldTrainConfig) and config.frame_size() == (96, 128)
    assert config.exported_resolution() == 128


@pytest.mark.parametrize("family", ["marigold", "fast_depth"])
def test_config_exports_its_own_processing_resolution_and_refuses_a_tiny_one(family):
    config = load_train_config({"family": family, "data": {"train": ["x"]}, "processing_resolution": 160})
    assert config.resolution == 128 and config.exported_resolution() == 160
    if family == "marigold":
        assert config.frame_size() == (96, 128)  # training frames stay at the training resolution
    assert load_train_config({"family": family, "data": {"train": ["x"]}}).exported_resolution() == 128
    with pytest.raises(ConfigError, match="processing_resolution"):
        load_train_config({"family": family, "data": {"train": ["x"]}, "processing_resolution": 16})


def test_marigold_depth_target_spans_minus_one_to_one_by_quantiles_and_sky_is_far():
    depth = np.tile(np.linspace(2.0, 52.0, 100, dtype=np.float32), (2, 10, 1))  # (2, 10, 100)
    mask = np.ones_like(depth)
    mask[1, :, 90:] = 0  # no return: sky
    target = normalised_depth(depth, mask)
    assert target.shape == (2, 3, 10, 100) and np.array_equal(target[:, 0], target[:, 2])
    assert target.min() == -1.0 and target.max() == 1.0
    near, far = np.quantile(depth[0], [0.02, 0.98])
    np.testing.assert_allclose(target[0, 0, 0, 50], (depth[0, 0, 50] - near) / (far - near) * 2 - 1, atol=1e-5)
    assert np.all(target[1, :, :, 90:] == 1.0)
    assert np.all(np.diff(target[0, 0, 0]) >= 0)  # monotonic in depth


def test_noising_and_velocity_recover_the_clean_latent():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((4, 4, 6, 8)).astype(np.float32)
    t = np.array([0, 250, 700, 999])
    alphas = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    noise = multires_noise(clean.shape, rng, 0.9, 3, t, 1000)
    assert abs(float(noise.std()) - 1.0) < 0.1
    noisy, velocity = noisy_and_velocity(clean, noise, alphas, t)
    a = alphas[t][:, None, None, None]
    np.testing.assert_allclose(np.sqrt(a) * noisy - np.sqrt(1 - a) * velocity, clean, atol=1e-4)
    again = multires_noise(clean.shape, np.random.default_rng(5), 0.9, 3, t, 1000)
    np.testing.assert_array_equal(again, multires_noise(clean.shape, np.random.default_rng(5), 0.9, 3, t, 1000))


def test_progress_log_drops_rows_after_the_resumed_step_and_plots(tmp_path):
    log = ProgressLog(tmp_path / "log.csv")
    for step in (10, 20, 30):
        log.add(step=step, loss=1.0 / step, val_abs_rel=0.1 if step == 20 else "", val_delta1=0.9 if step == 20 else "")
    resumed = ProgressLog(tmp_path / "log.csv", resume_step=20)
    assert [int(r["step"]) for r in resumed.read()] == [10, 20]
    resumed.plot(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def _save(folder, step, config):
    return ckpt.save_checkpoint(folder, step, {"w": np.ones(3, np.float32)}, {"arch": "a"},
                                {"global_step": np.array([step])}, config)


def test_checkpoint_write_is_atomic_on_a_full_disk(tmp_path, monkeypatch):
    config = load_train_config({"data": {"train": ["x"]}})
    good = _save(tmp_path, 10, config)
    real = ckpt.write_safetensors
    calls = []

    def full_disk(path, tensors, metadata):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, tensors, metadata)

    monkeypatch.setattr(ckpt, "write_safetensors", full_disk)
    with pytest.raises(ckpt.CheckpointError, match="step_000020 .No space left"):
        _save(tmp_path, 20, config)
    assert [step for step, _ in ckpt.checkpoints(tmp_path)] == [10]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [good.name]
    tensors, metadata = ckpt.read_safetensors(good / "model.safetensors")
    assert metadata == {"arch": "a"} and tensors["w"].tolist() == [1, 1, 1]


def test_checkpoints_are_pruned_and_architecture_checked(tmp_path):
    config = load_train_config({"data": {"train": ["x"]}})
    for step in (1, 2, 3):
        _save(tmp_path, step, config)
    ckpt.prune(tmp_path, 2)
    assert [s for s, _ in ckpt.checkpoints(tmp_path)] == [2, 3]
    with pytest.raises(ckpt.CheckpointError, match="another architecture"):
        ckpt.check_same_architecture(tmp_path, {"arch": "a"}, {"arch": "b"})


def test_dataset_export_reads_back_as_samples(tmp_path):
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 30, (24, 32)).astype(np.float32)
    depth[:2] = np.nan
    records = [FrameRecord("seq", i, float(i), gt=depth, rgb=rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
               for i in range(3)]
    records.append(FrameRecord("seq", 3, 3.0, gt=np.full((24, 32), np.nan, np.float32), rgb=records[0].rgb))
    export_dataset(records, tmp_path / "export")
    samples = read_dataset_folder(tmp_path / "export", SampleSet(store_long_side=64))
    assert len(samples) == 3 and samples.skipped == {"empty or NaN ground truth": 1}
    np.testing.assert_array_equal(samples.samples[1].rgb, records[1].rgb)
    np.testing.assert_allclose(samples.samples[1].depth, depth, atol=6e-4)  # millimetre PNG
