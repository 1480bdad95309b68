"""The numpy DDIM/LCM maths against diffusers' schedulers built from the same configs."""
import importlib.util

import numpy as np
import pytest

from depth_ms.models.marigold import schedulers
from marigold_checkpoints import DDIM_V1_1, LCM_V1_0

needs_torch = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="diffusers not importable")

CONFIGS = {
    "v1-1 ddim trailing v zero-snr": ("DDIMScheduler", DDIM_V1_1),
    "ddim leading epsilon": ("DDIMScheduler", dict(DDIM_V1_1, prediction_type="epsilon", rescale_betas_zero_snr=False,
                                                  timestep_spacing="leading")),
    "ddim linspace sample linear": ("DDIMScheduler", dict(DDIM_V1_1, prediction_type="sample", beta_schedule="linear",
                                                          timestep_spacing="linspace", beta_end=0.02,
                                                          beta_start=0.0001)),
    "lcm v1-0": ("LCMScheduler", LCM_V1_0),
    "lcm epsilon": ("LCMScheduler", dict(LCM_V1_0, prediction_type="epsilon")),
}


def _diffusers(name, cfg):
    import diffusers

    return getattr(diffusers, name)(**cfg)


@needs_torch
@pytest.mark.parametrize("label", list(CONFIGS))
@pytest.mark.parametrize("steps", [1, 2, 4, 10])
def test_schedule_and_steps_match_diffusers(label, steps):
    import torch

    name, cfg = CONFIGS[label]
    ref = _diffusers(name, cfg)
    ours = schedulers.from_config(dict(cfg, _class_name=name))
    ref.set_timesteps(steps)
    ts = ours.timesteps(steps)
    np.testing.assert_array_equal(ts, ref.timesteps.numpy())

    rng = np.random.default_rng(steps)
    x = rng.standard_normal((1, 4, 6, 5)).astype(np.float32)
    x_ref = torch.from_numpy(x.copy())
    for i, t in enumerate(ref.timesteps):
        out = rng.standard_normal(x.shape).astype(np.float32)
        noise = rng.standard_normal(x.shape).astype(np.float32)
        if name == "LCMScheduler":  # diffusers draws the re-noising noise itself: hand it the same numbers
            gen_noise = torch.from_numpy(noise)
            import diffusers.schedulers.scheduling_lcm as lcm_mod
            orig = lcm_mod.randn_tensor
            lcm_mod.randn_tensor = lambda *a, **k: gen_noise
            try:
                x_ref = ref.step(torch.from_numpy(out), t, x_ref).prev_sample
            finally:
                lcm_mod.randn_tensor = orig
        else:
            x_ref = ref.step(torch.from_numpy(out), t, x_ref).prev_sample
        x = ours.step(out, ts, i, x, noise)
        np.testing.assert_allclose(x, x_ref.numpy(), rtol=1e-5, atol=2e-5, err_msg=f"step {i} (t={int(t)})")


@needs_torch
def test_add_noise_matches_diffusers():
    import torch

    ref = _diffusers("DDIMScheduler", DDIM_V1_1)
    ours = schedulers.from_config(DDIM_V1_1)
    rng = np.random.default_rng(0)
    clean, noise = rng.standard_normal((2, 1, 4, 3, 3)).astype(np.float32)
    for t in (0, 249, 499, 999):
        want = ref.add_noise(torch.from_numpy(clean), torch.from_numpy(noise), torch.tensor([t])).numpy()
        np.testing.assert_allclose(ours.add_noise(clean, noise, t), want, rtol=1e-5, atol=1e-6)


def test_zero_snr_end_and_v1_1_schedule():
    s = schedulers.from_config(DDIM_V1_1)
    assert s.alphas_cumprod[-1] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(s.timesteps(4), [999, 749, 499, 249])
    np.testing.assert_array_equal(s.timesteps(1), [999])
    # one trailing v-prediction step from pure noise returns x0 = -v exactly
    co = s.coefficients(s.timesteps(1), 0)
    assert (co.x0_x, co.x0_out) == pytest.approx((0.0, -1.0), abs=1e-6)


def test_unsupported_configs_are_named():
    with pytest.raises(schedulers.SchedulerConfigError, match="PNDMScheduler"):
        schedulers.from_config(dict(DDIM_V1_1, _class_name="PNDMScheduler"))
    with pytest.raises(schedulers.SchedulerConfigError, match="'x_prediction'"):
        schedulers.from_config(dict(DDIM_V1_1, prediction_type="x_prediction"))
    with pytest.raises(schedulers.SchedulerConfigError, match="thresholding"):
        schedulers.from_config(dict(DDIM_V1_1, thresholding=True))
    with pytest.raises(schedulers.SchedulerConfigError, match="zero SNR"):
        s = schedulers.from_config(dict(DDIM_V1_1, prediction_type="epsilon"))
        s.coefficients(s.timesteps(1), 0)
    with pytest.raises(ValueError, match="1..1000"):
        schedulers.from_config(DDIM_V1_1).timesteps(0)
