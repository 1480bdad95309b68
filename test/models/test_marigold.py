"""Streaming Marigold on MindSpore against diffusers' PyTorch MarigoldDepthPipeline (same random weights)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mindspore")
pytest.importorskip("mindone")
if importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("torch") is None:
    pytest.skip("the PyTorch reference (torch + diffusers) is not installed", allow_module_level=True)

import torch  # noqa: E402

from depth_ms.core.image_ops import BadInputError  # noqa: E402
from depth_ms.core.types import DepthKind, Frame  # noqa: E402
from depth_ms.models import registry, weights  # noqa: E402
from depth_ms.models.base import EstimatorError  # noqa: E402
from depth_ms.models.marigold import checkpoint, imaging  # noqa: E402
from marigold_checkpoints import reference_pipeline, write_marigold_folder, write_taesd_folder  # noqa: E402

TOL = 1e-4  # the bar: max abs difference on the [0, 1] depth


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("marigold")
    ddim = write_marigold_folder(str(root / "v1-1"), scheduler="ddim", seed=0)
    lcm = write_marigold_folder(str(root / "lcm"), scheduler="lcm", seed=1)
    taesd = write_taesd_folder(str(root / "taesd"), seed=2)
    return dict(root=root, ddim=ddim, lcm=lcm, taesd=taesd)


def _path(folders, name):
    return str(folders["root"] / name)


def _image(h=30, w=44, seed=0):
    """A smooth scene-like image (random pixels would make every frame a scene cut)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(3 * xx + 1), np.cos(2 * yy), np.sin(2 * xx + 3 * yy)], axis=-1)
    return ((base * 0.4 + 0.5 + 0.03 * rng.standard_normal((h, w, 3))).clip(0, 1) * 255).astype(np.uint8)


def _torch_image(rgb):
    return torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)  # (1, 3, H, W) in [0, 1]


def _reference(modules, rgb, steps, resolution, latents):
    pipe = reference_pipeline(modules)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(_torch_image(rgb), num_inference_steps=steps, processing_resolution=resolution,
               latents=torch.from_numpy(latents), output_latent=True)
    return out.prediction[0, :, :, 0], out.latent.numpy()


@pytest.fixture(scope="module")
def marigold(folders):
    return registry.create("marigold", {"checkpoint": _path(folders, "v1-1")})


# ------------------------------------------------------------------------------------------- fidelity


@pytest.mark.parametrize("steps,resolution,size", [(4, 0, (30, 44)), (1, 0, (30, 44)), (4, 24, (30, 44)),
                                                   (2, 64, (21, 33)), (4, 0, (32, 48))])
def test_cold_engine_matches_diffusers(marigold, folders, steps, resolution, size):
    engine = marigold.engine
    engine.options.processing_resolution = resolution
    engine.steps = steps
    try:
        engine.reset()
        rgb = _image(*size)
        ours = engine.run(rgb)
        ref_depth, ref_latent = _reference(folders["ddim"], rgb, steps, resolution, engine.noise(ours.latent.shape))
    finally:
        engine.options.processing_resolution, engine.steps = 0, 4
    assert ours.depth.shape == size and ours.steps == steps and not ours.warm
    assert 0.0 <= ours.depth.min() and ours.depth.max() <= 1.0 and np.ptp(ours.depth) > 0.05
    assert float(np.abs(ours.depth - ref_depth).max()) <= TOL
    assert float(np.abs(ours.latent - ref_latent).max()) <= 1e-3


def test_lcm_checkpoint_matches_diffusers(folders):
    est = registry.create("marigold_lcm", {"checkpoint": _path(folders, "lcm")})
    assert est.engine.sampler.kind == "lcm" and est.engine.steps == 1  # default from model_index.json
    rgb = _image()
    ours = est.engine.run(rgb)
    ref_depth, _ = _reference(folders["lcm"], rgb, 1, 0, est.engine.noise(ours.latent.shape))
    assert float(np.abs(ours.depth - ref_depth).max()) <= TOL


def test_blend_warm_start_is_the_diffusers_video_recipe(folders):
    """Frame 2 = diffusers run with latents 0.9 * the fixed noise + 0.1 * frame 1's latent, 1 step."""
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "warm_start": "blend"})
    first, second = _image(seed=0), _image(seed=1)
    cold = est.engine.run(first)
    warm = est.engine.run(second)
    assert (cold.warm, cold.reason, cold.steps) == (False, "first", 4)
    assert (warm.warm, warm.reason, warm.steps) == (True, "", 1)
    init = 0.9 * est.engine.noise(cold.latent.shape) + 0.1 * cold.latent
    ref_depth, _ = _reference(folders["ddim"], second, 1, 0, init.astype(np.float32))
    assert float(np.abs(warm.depth - ref_depth).max()) <= TOL


def test_renoise_warm_start_matches_a_manual_diffusers_tail(folders):
    """Re-noise frame 1's latent to t=249 of the 4-step trailing schedule, run the last step (torch)."""
    from diffusers import DDIMScheduler

    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "warm_start": "renoise"})
    first, second = _image(seed=0), _image(seed=1)
    cold = est.engine.run(first)
    warm = est.engine.run(second)
    assert warm.warm and warm.steps == 1

    mods = folders["ddim"]
    sched = DDIMScheduler.from_config(mods["scheduler"].config)
    sched.set_timesteps(4)
    t = sched.timesteps[3]
    assert int(t) == 249
    noise = torch.from_numpy(est.engine.noise(cold.latent.shape))
    with torch.no_grad():
        x = sched.add_noise(torch.from_numpy(cold.latent), noise, t.reshape(1))
        image = torch.from_numpy(imaging.to_model_input(second, 0, 4)[0])  # (1, 3, 32, 44): edge-padded rows
        image_latent = mods["vae"].encode(image).latent_dist.mode() * mods["vae"].config.scaling_factor
        text = mods["text_encoder"](mods["tokenizer"]("", padding="do_not_pad", return_tensors="pt").input_ids)[0]
        out = mods["unet"](torch.cat([image_latent, x], 1), t, encoder_hidden_states=text).sample
        x = sched.step(out, t, x).prev_sample
        depth = mods["vae"].decode(x / mods["vae"].config.scaling_factor).sample.mean(1).clip(-1, 1)[0]
    ref = ((depth + 1) / 2).numpy()[:30]  # (30, 44)
    assert float(np.abs(warm.depth - ref).max()) <= TOL


def test_tiny_vae_matches_diffusers_with_autoencoder_tiny(folders):
    """The TAESD path: diffusers' pipeline with its VAE swapped for AutoencoderTiny (the docs' recipe)."""
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "tiny_vae": _path(folders, "taesd")})
    rgb = _image()
    ours = est.engine.run(rgb)
    mods = dict(folders["ddim"], vae=folders["taesd"])
    ref_depth, _ = _reference(mods, rgb, 4, 0, est.engine.noise(ours.latent.shape))
    assert float(np.abs(ours.depth - ref_depth).max()) <= TOL
    # decode-only: full VAE encoder, tiny decoder
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "tiny_vae": _path(folders, "taesd"),
                                       "tiny_vae_side": "decode"})
    mixed = est.engine.run(rgb)
    assert mixed.depth.shape == rgb.shape[:2] and not np.allclose(mixed.depth, ours.depth)


# ----------------------------------------------------------------------------------- streaming state


def test_cold_reasons_size_scene_cut_and_reset(folders):
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "warm_start": "renoise"})
    run = est.engine.run
    assert run(_image()).reason == "first"
    assert run(_image(seed=1)).warm
    assert run(_image(32, 48)).reason == "size"
    assert run(255 - _image(32, 48)).reason == "scene_cut"
    est.reset()
    assert run(_image(32, 48)).reason == "reset"
    assert run(_image(32, 48, seed=3)).warm
    predict = est.predict
    assert predict(Frame(rgb=_image(32, 48), stamp=10.0)).warm
    assert predict(Frame(rgb=_image(32, 48), stamp=10.1)).warm
    back = predict(Frame(rgb=_image(32, 48), stamp=2.0))  # a bag loop
    assert not back.warm and back.extras["cold_reason"] == "time_jump"


def test_forward_jumps_are_judged_on_the_input_streams_clock(folders):
    """A live node drops the images that arrive while the model runs: frames far apart are warm when the input
    stream between them was continuous (``input_gap``), whatever the machine's speed or the replay rate; a step
    in the stream beyond max_frame_gap, or any step back, is cold."""
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "warm_start": "renoise",
                                       "max_frame_gap": 0.5})
    run = est.engine.run

    def at(stamp, seed, input_gap=None):
        image = _image(32, 48, seed=seed)
        return run(image, Frame(rgb=image, stamp=stamp, input_gap=input_gap))

    assert at(100.0, 0).reason == "first"
    assert at(108.0, 1, input_gap=0.1).warm  # eight seconds of images dropped, a continuous stream
    assert at(108.7, 2, input_gap=0.7).reason == "time_jump"  # the stream itself paused
    assert at(108.9, 3).warm  # unknown stream: the step between the frames counts
    assert at(109.6, 4).reason == "time_jump"
    assert at(109.3, 5, input_gap=-0.3).warm and at(108.0, 6, input_gap=0.1).reason == "time_jump"  # back


def test_renoise_warp_uses_pose_or_flow(folders):
    from depth_ms.core.types import Intrinsics

    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "warm_start": "renoise_warp"})
    k = Intrinsics.from_hfov(44, 30, 1.5)
    pose = np.eye(4)
    moved = np.eye(4)
    moved[0, 3] = 0.2
    first = est.predict(Frame(rgb=_image(), stamp=0.0, intrinsics=k, pose_map_camera=pose))
    second = est.predict(Frame(rgb=_image(seed=1), stamp=0.1, intrinsics=k, pose_map_camera=moved))
    third = est.predict(Frame(rgb=_image(seed=2), stamp=0.2))  # no pose: optical flow
    assert not first.warm and second.warm and third.warm
    assert first.warm_start == "renoise_warp" and second.warm_start == "renoise_warp:pose"
    assert third.warm_start == "renoise_warp:flow"
    assert second.steps == 1 and second.kind == DepthKind.AFFINE_DEPTH and est.uses_pose
    assert all(np.isfinite(p.depth).all() for p in (first, second, third))


def test_fuse_averages_a_fresh_step_with_the_warped_previous_output(folders):
    """The same image twice, no pose: the flow is zero, so frame 2 = 0.7 * a cold 1-step depth + 0.3 * frame 1's."""
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "warm_start": "fuse", "fuse": 0.3})
    rgb = _image()
    first = est.engine.run(rgb, Frame(rgb=rgb, stamp=0.0))
    second = est.engine.run(rgb, Frame(rgb=rgb, stamp=0.1))
    assert (first.warm, first.steps, second.warm, second.steps, second.motion) == (False, 4, True, 1, "flow")
    engine = est.engine
    image, padding = imaging.to_model_input(rgb, 0, engine.align, engine.min_side)
    fresh_latent = engine.denoise(engine.encode(image), engine.noise(first.latent.shape), engine.sampler.timesteps(1))
    fresh = imaging.unpad(engine.decode(fresh_latent), padding)[0, 0]  # (30, 44)
    np.testing.assert_allclose(second.depth, 0.7 * fresh + 0.3 * first.depth, atol=1e-4)
    assert est.predict(Frame(rgb=rgb, stamp=0.2)).warm_start == "fuse:flow"


def test_ensemble_members_median_and_mad(folders):
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "ensemble": 3, "steps": 1})
    pred = est.predict(Frame(rgb=_image(), stamp=0.0))
    assert pred.depth.shape == (30, 44) and pred.uncertainty.shape == (30, 44)
    assert pred.depth.min() == pytest.approx(0.0, abs=1e-6) and pred.depth.max() == pytest.approx(1.0, abs=1e-6)
    assert (pred.uncertainty >= 0).all() and pred.steps == 3 and pred.warm_start == "ensemble3"
    engine = est.engine
    image, _ = imaging.to_model_input(_image(), 0, engine.align, engine.min_side)  # (1, 3, 32, 44)
    image_latent = engine.encode(image)  # (1, 4, 8, 11)
    members = [engine.decode(engine.denoise(image_latent, engine.noise(image_latent.shape, m),
                                            engine.sampler.timesteps(1), noise_member=m))[0, 0, :30, :44]
               for m in range(3)]  # (30, 44) each
    spread = np.std(members, axis=0)
    assert np.corrcoef(spread.ravel(), pred.uncertainty.ravel())[0, 1] > 0.3  # MAD follows member disagreement


# --------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("shape", [(30, 44), (30, 44, 1), (30, 44, 4)])
def test_grey_and_rgba_are_converted(marigold, shape):
    rgb = _image()
    image = rgb[..., 0] if len(shape) == 2 else (rgb[..., :1] if shape[-1] == 1 else
                                                  np.concatenate([rgb, np.full((30, 44, 1), 7, np.uint8)], -1))
    marigold.reset()
    got = marigold.engine.run(image).depth
    assert got.shape == (30, 44) and np.isfinite(got).all()
    if shape[-1] == 4:
        marigold.reset()
        np.testing.assert_allclose(got, marigold.engine.run(rgb).depth, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 200)])
def test_tiny_and_odd_sizes_run_at_input_size(marigold, size):
    marigold.reset()
    got = marigold.engine.run(_image(*size)).depth
    assert got.shape == size and np.isfinite(got).all()


def test_bad_dtypes_are_refused(marigold):
    with pytest.raises(BadInputError, match="uint8"):
        marigold.engine.run(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(BadInputError, match=r"\(8, 8, 2\)"):
        marigold.engine.run(np.zeros((8, 8, 2), np.uint8))


def test_huge_image_is_processed_at_the_processing_resolution(folders):
    est = registry.create("marigold", {"checkpoint": _path(folders, "v1-1"), "processing_resolution": 64,
                                       "steps": 1})
    result = est.engine.run(_image(1500, 2000))
    assert result.depth.shape == (1500, 2000) and result.latent.shape == (1, 4, 12, 16)


# ---------------------------------------------------------------------------------------- checkpoints


def _broken_copy(folders, tmp_path, edit):
    dst = tmp_path / "ckpt"
    shutil.copytree(_path(folders, "v1-1"), dst)
    edit(dst)
    return str(dst)


def _set_json(path, **values):
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data))


def _edit_weights(folder, drop="", reshape=""):
    from safetensors.numpy import load_file, save_file

    path = str(folder / "diffusion_pytorch_model.safetensors")
    tensors = load_file(path)
    tensors.pop(drop, None)
    if reshape:
        tensors[reshape] = np.concatenate([tensors[reshape], tensors[reshape]])
    save_file(tensors, path)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("edit,message", [
    (lambda d: os.remove(d / "unet" / "diffusion_pytorch_model.safetensors"),
     r"missing file .*unet/diffusion_pytorch_model\.safetensors"),
    (lambda d: os.remove(d / "model_index.json"), r"missing file .*model_index\.json"),
    (lambda d: os.remove(d / "tokenizer" / "merges.txt"), r"missing file .*tokenizer/merges\.txt"),
    (lambda d: (d / "vae" / "config.json").write_text("{not json"), r"malformed .*vae/config\.json"),
    (lambda d: _set_json(d / "scheduler" / "scheduler_config.json", _class_name="PNDMScheduler"),
     r"scheduler_config\.json: scheduler 'PNDMScheduler'"),
    (lambda d: _set_json(d / "model_index.json", prediction_type="normals",
                         _class_name="MarigoldNormalsPipeline"), r"'normals'.*MarigoldNormalsPipeline"),
    (lambda d: _set_json(d / "unet" / "config.json", in_channels=4), r"in_channels is 4.*plain Stable Diffusion"),
    (lambda d: os.replace(d / "vae" / "diffusion_pytorch_model.safetensors", d / "vae" / "diffusion_pytorch_model.bin"),
     r"PyTorch pickle"),
    (lambda d: _edit_weights(d / "unet", drop="conv_in.bias"), r"unet/diffusion_pytorch_model\.safetensors does not "
     r"fit UNet2DConditionModel: 1 missing \(conv_in\.bias\)"),
    (lambda d: _edit_weights(d / "vae", reshape="decoder.conv_out.bias"), r"1 mismatched \(decoder\.conv_out\.bias"),
    (lambda d: _truncate(d / "unet" / "diffusion_pytorch_model.safetensors"), r"truncated in tensor"),
])
def test_bad_checkpoint_folders_are_named(folders, tmp_path, edit, message):
    path = _broken_copy(folders, tmp_path, edit)
    with pytest.raises(EstimatorError, match=message):
        registry.create("marigold", {"checkpoint": path})


def test_missing_folder_and_default_location(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_MS_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(weights, "SHIPPED_NAMES", {})  # as a checkout without the shipped model
    with pytest.raises(EstimatorError, match=f"{tmp_path}/marigold-depth-v1-1.*no download"):
        registry.create("marigold")
    with pytest.raises(EstimatorError, match="marigold-depth-lcm-v1-0"):
        registry.create("marigold_lcm")


def test_fp16_file_names_load_as_float32(tmp_path):
    write_marigold_folder(str(tmp_path / "fp16"), with_fp16_names=True)
    info = checkpoint.check_folder(str(tmp_path / "fp16"))
    assert info.variants == {"unet": "fp16", "vae": "fp16", "text_encoder": "fp16"}
    est = registry.create("marigold", {"checkpoint": str(tmp_path / "fp16"), "steps": 1})
    assert np.isfinite(est.engine.run(_image()).depth).all()


def test_options_are_checked(folders):
    ckpt = _path(folders, "v1-1")
    with pytest.raises(EstimatorError, match="warm_start 'fast'"):
        registry.create("marigold", {"checkpoint": ckpt, "warm_start": "fast"})
    with pytest.raises(EstimatorError, match="warm_steps < steps"):
        registry.create("marigold", {"checkpoint": ckpt, "warm_start": "renoise", "steps": 1})
    with pytest.raises(Exception, match="'stepz'"):
        registry.create("marigold", {"checkpoint": ckpt, "stepz": 2})
    with pytest.raises(EstimatorError, match="AutoencoderTiny"):
        registry.create("marigold", {"checkpoint": ckpt, "tiny_vae": os.path.join(ckpt, "vae")})


def test_empty_prompt_embedding_is_computed_once_at_load(marigold, folders):
    mods = folders["ddim"]
    ids = mods["tokenizer"]("", padding="do_not_pad", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = mods["text_encoder"](ids)[0].numpy()
    got = marigold.engine.modules.text.asnumpy()
    assert got.shape == ref.shape == (1, 2, 32)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_folded_cross_attention_matches_diffusers_unet(marigold, folders):  # marigold: device configured
    """The UNet with the empty prompt folded into its cross-attentions equals diffusers' UNet given the
    prompt's embedding, and holds no cross-attention Attention any more."""
    from mindone.diffusers.models.attention_processor import Attention

    import mindspore as ms

    parts = checkpoint.load(_path(folders, "v1-1"))
    blocks = [cell for _, cell in parts.unet.cells_and_names() if hasattr(cell, "attn2")]
    assert blocks and not any(isinstance(b.attn2, Attention) for b in blocks)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 6, 10)).astype(np.float32)
    text = parts.text_embedding.asnumpy()
    got = parts.unet(ms.Tensor(x), ms.Tensor(np.int32([501])), ms.Tensor(text))[0].asnumpy()
    with torch.no_grad():
        ref = folders["ddim"]["unet"](torch.from_numpy(x), 501, torch.from_numpy(text)).sample.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.abs(ref).max() > 0.1


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_text_encoder_is_freed_after_load(marigold, folders, mode):  # marigold: device configured
    """The text encoder is used once for the embedding; no CLIPTextModel outlives the load (in graph mode a
    compiled embedding call had kept the 1.4 GB SD2 encoder alive)."""
    import gc

    import mindspore as ms
    from mindone.transformers import CLIPTextModel

    def alive():
        gc.collect()
        return sum(isinstance(o, CLIPTextModel) for o in gc.get_objects())

    before, previous = alive(), ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        parts = checkpoint.load(_path(folders, "v1-1"))
    finally:
        ms.set_context(mode=previous)
    assert parts.text_embedding.shape == (1, 2, 32)
    assert alive() == before


# ------------------------------------------------------------------------------- modes and imports


def _run_script(script, tmp_path):
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(src), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)


def _run(code, tmp_path):
    (tmp_path / "snippet.py").write_text(code)
    return _run_script(tmp_path / "snippet.py", tmp_path)


def test_graph_mode_matches_pynative_and_never_imports_torch(folders, marigold, tmp_path):
    rgb = _image()
    np.save(tmp_path / "rgb.npy", rgb)
    marigold.reset()
    eager = marigold.engine.run(rgb).depth
    code = (
        "import sys, numpy as np\n"
        "from depth_ms.models import registry\n"
        "for graphs in ('blocks', 'whole'):\n"
        f"    est = registry.create('marigold', {{'checkpoint': {_path(folders, 'v1-1')!r}, 'unet_graphs': graphs}},"
        " mode='graph')\n"
        "    np.save(graphs + '.npy', est.engine.run(np.load('rgb.npy')).depth)\n"
        "    print(type(est.engine.modules.denoise).__name__)\n"
        "print('torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-3:] == ["SegmentedUNet", "Denoise", "False False"]
    for graphs in ("blocks", "whole"):  # one graph per UNet block, or one for the UNet
        np.testing.assert_allclose(np.load(tmp_path / f"{graphs}.npy"), eager, atol=1e-5)


def test_compile_cache_reuses_graphs_not_weights(tmp_path):
    """Graph mode with the compile cache: a second checkpoint of the same shapes reuses the cached graphs
    and still gives its own (PyNative) result."""
    write_marigold_folder(str(tmp_path / "a"), seed=3)
    write_marigold_folder(str(tmp_path / "b"), seed=4)
    np.save(tmp_path / "rgb.npy", _image())
    outputs = {}
    for name, mode in (("a", "graph"), ("b", "graph"), ("b", "pynative")):
        code = (
            "import numpy as np\n"
            "from depth_ms.models import registry\n"
            f"est = registry.create('marigold', {{'checkpoint': {str(tmp_path / name)!r}, 'steps': 2, "
            f"'compile_cache': {str(tmp_path / 'cache')!r}}}, mode={mode!r})\n"
            f"np.save('{name}_{mode}.npy', est.engine.run(np.load('rgb.npy')).depth)\n"
        )
        (tmp_path / "run.py").write_text(code)  # the cache hashes the entry script: it must be a file
        out = _run_script(tmp_path / "run.py", tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        outputs[name, mode] = np.load(tmp_path / f"{name}_{mode}.npy")
    assert any((tmp_path / "cache").rglob("*")), "nothing was cached"
    np.testing.assert_allclose(outputs["b", "graph"], outputs["b", "pynative"], atol=1e-5)
    assert not np.allclose(outputs["a", "graph"], outputs["b", "graph"], atol=1e-3)


def test_compile_cache_never_serves_another_architecture(tmp_path):
    """MindSpore's cache numbers graphs by compile order under one entry script and not by input shape: a
    tiny-VAE run after a full-VAE run, another input size, and the first again must each give their own
    PyNative result."""
    write_marigold_folder(str(tmp_path / "a"), seed=3)
    write_taesd_folder(str(tmp_path / "taesd"))
    runs = [("full", "", (30, 44)), ("tiny", str(tmp_path / "taesd"), (30, 44)), ("full", "", (46, 60)),
            ("full", "", (30, 44))]
    (tmp_path / "run.py").write_text(  # one unchanged entry script for every run, as depth_node is
        "import json\nimport numpy as np\nfrom depth_ms.models import registry\n"
        "run = json.load(open('run.json'))\n"
        "est = registry.create('marigold', run['options'], mode=run['mode'])\n"
        "np.save(run['mode'] + '.npy', est.engine.run(np.load('rgb.npy')).depth)\n")
    for index, (name, tiny, (h, w)) in enumerate(runs):
        np.save(tmp_path / "rgb.npy", _image(h, w))
        for mode in ("graph", "pynative"):
            options = {"checkpoint": str(tmp_path / "a"), "steps": 2, "tiny_vae": tiny,
                       "compile_cache": str(tmp_path / "cache")}
            (tmp_path / "run.json").write_text(json.dumps(dict(options=options, mode=mode)))
            out = _run_script(tmp_path / "run.py", tmp_path)
            assert out.returncode == 0, out.stderr[-3000:]
        graph, eager = np.load(tmp_path / "graph.npy"), np.load(tmp_path / "pynative.npy")
        assert graph.shape == (h, w)
        np.testing.assert_allclose(graph, eager, atol=1e-5, err_msg=f"run {index}: {name} VAE at {w}x{h}")
