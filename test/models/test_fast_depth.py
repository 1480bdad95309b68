"""MiDaS small / DPT / DPT-Hybrid / Depth Anything estimators: preprocessing and end-to-end parity with
transformers (PyTorch) on tiny random-weight models, bad inputs, registry, grey/RGBA conversion."""
import importlib.util
import json
import os

import numpy as np
import pytest

from depth_ms.core.image_ops import BadInputError, canonical_rgb
from depth_ms.core.types import DepthKind, Frame
from depth_ms.models import registry
from depth_ms.models.base import EstimatorError
from depth_ms.models.midas import preprocess as pp

HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "PIL"))
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch + transformers + Pillow not importable")
HAS_MS = all(importlib.util.find_spec(m) is not None for m in ("mindspore", "mindone"))
needs_ms = pytest.mark.skipif(not HAS_MS, reason="mindspore + mindone not importable")
REL_TOL = 1e-4

from tiny_configs import TINY, hf_processor, write_tiny_folder  # noqa: E402


def image(h, w, seed=0, channels=3):
    """A smooth uint8 image with texture (random noise alone makes resampling differences look tiny)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0 - c) for c in range(channels)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def rel_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


# ------------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize("h,w,res,mult,expected", [
    (480, 848, 384, 32, (384, 672)),  # fit height (closer to 1 than 384/848)
    (480, 848, 518, 14, (518, 910)),
    (37, 53, 64, 32, (32, 64)),  # both scales > 1: the smaller change (width, 1.21) wins: 44.8 -> 32
    (2, 1000, 384, 32, (32, 384)),  # HF would round the short side to 0; ours keeps one stride
])
def test_target_size_hf_rule(h, w, res, mult, expected):
    prep = pp.Preprocessing(height=res, width=res, multiple_of=mult)
    assert pp.target_size(h, w, prep) == expected


def test_target_size_midas_rules():
    upper = pp.Preprocessing(height=256, width=256, rule="upper_bound")
    assert pp.target_size(480, 640, upper) == (192, 256)  # both sides <= 256
    lower = pp.Preprocessing(height=518, width=518, multiple_of=14, rule="lower_bound")
    assert pp.target_size(480, 640, lower) == (518, 686)  # both sides >= 518 (690.7 rounds to 686)
    squash = pp.Preprocessing(height=64, width=64, keep_aspect=False)
    assert pp.target_size(37, 53, squash) == (64, 64)


@needs_torch
@pytest.mark.parametrize("model", list(TINY))
@pytest.mark.parametrize("h,w", [(37, 53), (120, 90), (480, 848)])
def test_preprocess_matches_dpt_image_processor(model, h, w):
    _, res, stride, mean, std = TINY[model]
    if (h, w) == (480, 848):
        res = 384 if stride == 32 else 518
    rgb = image(h, w)
    ref = hf_processor(res, stride, mean, std)(images=rgb, return_tensors="np")["pixel_values"]
    got = pp.preprocess(rgb, pp.Preprocessing(height=res, width=res, multiple_of=stride, mean=mean, std=std))
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@needs_torch
def test_opencv_bicubic_is_not_pillow_bicubic():
    """Why Pillow: OpenCV's cubic (a=-0.75, no antialias) moves pixels by grey levels, far beyond 1e-4."""
    import cv2

    rgb = image(480, 848)
    pil = pp.resize_image(rgb, 384, 672, "bicubic").astype(np.float64)
    ocv = cv2.resize(rgb, (672, 384), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    assert np.abs(pil - ocv).max() > 10


@needs_torch
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("src,dst", [((12, 20), (37, 53)), ((64, 96), (37, 53)), ((384, 672), (480, 848))])
def test_upsample_matches_torch_interpolate(mode, src, dst):
    import torch

    pred = np.random.default_rng(1).standard_normal(src).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(pred)[None, None], size=dst, mode=mode,
                                          align_corners=False)[0, 0].numpy()
    got = pp.upsample_prediction(pred, *dst, mode)
    assert got.shape == dst
    np.testing.assert_allclose(got, ref, rtol=0, atol=5e-6)  # float32 coordinates as torch (else ~7e-5)


def test_grey_and_rgba_conversion():
    grey = image(20, 30, channels=1)[:, :, 0]
    np.testing.assert_array_equal(canonical_rgb(grey), np.repeat(grey[:, :, None], 3, 2))
    np.testing.assert_array_equal(canonical_rgb(grey[:, :, None]), np.repeat(grey[:, :, None], 3, 2))
    rgba = image(20, 30, channels=4)
    np.testing.assert_array_equal(canonical_rgb(rgba), rgba[:, :, :3])
    for bad in (np.zeros((20, 30, 3), np.float32), np.zeros((20, 30, 2), np.uint8), np.zeros((2, 3, 4, 3),
                                                                                             np.uint8)):
        with pytest.raises(BadInputError):
            canonical_rgb(bad)


def test_processor_config_fields_are_read():
    base = pp.Preprocessing()
    prep = pp.from_hf_processor_config({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2,
                                        "size": 384}, base)
    assert prep.mean == pp.HALF and prep.std == pp.HALF and prep.resample == "bilinear"
    assert pp.hf_processor_size({"size": 384}) == (384, 384)
    assert pp.hf_processor_size({"size": {"height": 518, "width": 518}}) == (518, 518)
    with pytest.raises(ValueError, match="resample=0"):
        pp.from_hf_processor_config({"resample": 0}, base)


# ------------------------------------------------------------------------------------ tiny checkpoints


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("torch + transformers needed to write the tiny checkpoints")
    root = tmp_path_factory.mktemp("fast_depth")
    return {m: write_tiny_folder(root, m) for m in TINY} | {"root": str(root)}


def _torch_model(folder, model):
    import transformers

    cls = transformers.DepthAnythingForDepthEstimation if model.startswith("depth") else \
        transformers.DPTForDepthEstimation
    return cls.from_pretrained(folder).eval(), transformers.DPTImageProcessor.from_pretrained(folder)


def _torch_dpt_any_size(net, pixel_values, hybrid):
    """transformers' DPT forward with the token grid given to the neck (the library assumes square grids)."""
    h, w = pixel_values.shape[2:]
    if hybrid:  # the hybrid embeddings check the input against config.image_size
        net.dpt.embeddings.image_size = (h, w)
    out = net.dpt(pixel_values, output_hidden_states=True, return_dict=True)
    idx = net.config.backbone_out_indices
    if hybrid:
        feats = list(out.intermediate_activations) + [out.hidden_states[i + 1] for i in idx[2:]]
    else:
        feats = [out.hidden_states[i + 1] for i in idx]
    p = net.config.patch_size
    return net.head(net.neck(feats, h // p, w // p))  # (1, h, w)


def _torch_reference(folder, model, rgb):
    """transformers: processor -> model -> post_process_depth_estimation to the input size (HF docs)."""
    import torch
    from transformers.modeling_outputs import DepthEstimatorOutput

    net, processor = _torch_model(folder, model)
    inputs = processor(images=rgb, return_tensors="pt")
    with torch.no_grad():
        if model.startswith("depth"):
            outputs = net(**inputs)
        else:
            outputs = DepthEstimatorOutput(predicted_depth=_torch_dpt_any_size(
                net, inputs["pixel_values"], model == "dpt_hybrid"))
    post = processor.post_process_depth_estimation(outputs, target_sizes=[rgb.shape[:2]])
    return post[0]["predicted_depth"].numpy()


@needs_torch
@pytest.mark.parametrize("model", ["dpt_large", "dpt_hybrid"])
def test_any_size_dpt_forward_equals_library_forward_on_square_inputs(folders, model):
    import torch

    net, _ = _torch_model(folders[model], model)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_array_equal(_torch_dpt_any_size(net, x, model == "dpt_hybrid").numpy(),
                                      net(x).predicted_depth.numpy())


@needs_torch
@needs_ms
@pytest.mark.parametrize("model", list(TINY))
@pytest.mark.parametrize("h,w", [(37, 53), (90, 120)])
def test_estimator_matches_transformers(folders, model, h, w):
    rgb = image(h, w, seed=3)
    ref = _torch_reference(folders[model], model, rgb)
    est = registry.create(model, {"weights": folders[model]})
    pred = est.predict(Frame(rgb=rgb, stamp=0.0))
    assert pred.kind == DepthKind.AFFINE_DISPARITY and not est.needs_ground_truth
    assert pred.depth.shape == (h, w) == ref.shape and pred.depth.dtype == np.float32
    diff = rel_diff(pred.depth, ref)
    print(f"{model} {w}x{h}: max rel diff {diff:.2e}")
    assert diff <= REL_TOL


@needs_torch
@needs_ms
@pytest.mark.parametrize("model", list(TINY))
def test_graph_mode_matches_pynative(folders, model, tmp_path, monkeypatch):
    """ms.jit compiles all three (Depth Anything through our Dinov2 composition) and changes nothing."""
    monkeypatch.chdir(tmp_path)  # a failed compile writes analyze_fail.ir under the cwd
    rgb = image(70, 100, seed=4)
    eager = registry.create(model, {"weights": folders[model]}).predict(Frame(rgb=rgb, stamp=0.0)).depth
    graph = registry.create(model, {"weights": folders[model]}, mode="graph")
    assert graph.graph
    got = graph.predict(Frame(rgb=rgb, stamp=0.0))
    assert got.extras["graph"] and rel_diff(got.depth, eager) <= 1e-5
    # a second size recompiles, the first is still right
    assert graph.predict(Frame(rgb=image(40, 40), stamp=0.0)).depth.shape == (40, 40)
    assert rel_diff(graph.predict(Frame(rgb=rgb, stamp=0.0)).depth, eager) <= 1e-5


@needs_torch
@needs_ms
def test_depth_anything_backbone_composition_equals_mindone_forward(folders):
    """Our compilable Dinov2 path gives mindone's DepthAnythingForDepthEstimation output (float32 rounding)."""
    from depth_ms.models import mindspore_device

    mindspore_device.configure("cpu")
    import mindspore as ms
    import mindone.transformers as mt
    from mindspore import mint

    from depth_ms.models.midas.hf_models import depth_anything_forward

    net = mt.DepthAnythingForDepthEstimation.from_pretrained(folders["depth_anything_v2_small"])
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(7).standard_normal((1, 3, 42, 28)).astype(np.float32))
    ours, library = depth_anything_forward(net, x, 14, mint).asnumpy(), net(x)[0].asnumpy()
    # the same operations except the attention scaling, applied to q instead of the scores
    np.testing.assert_allclose(ours, library, rtol=0, atol=1e-5 * np.abs(library).max())


@needs_torch
@needs_ms
def test_grey_rgba_and_tiny_images_through_the_estimator(folders):
    est = registry.create("dpt_hybrid", {"weights": folders["dpt_hybrid"]})
    rgb = image(40, 50, seed=5)
    ref = est.predict(Frame(rgb=rgb, stamp=0.0)).depth
    rgba = np.concatenate([rgb, np.full((40, 50, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(est.predict(Frame(rgb=rgba, stamp=0.0)).depth, ref)
    grey = rgb[:, :, 1]
    np.testing.assert_array_equal(est.predict(Frame(rgb=grey, stamp=0.0)).depth,
                                  est.predict(Frame(rgb=np.repeat(grey[:, :, None], 3, 2), stamp=0.0)).depth)
    for h, w in ((1, 1), (3, 5), (2, 300)):  # smaller than the stride: upscaled to at least one stride
        pred = est.predict(Frame(rgb=image(h, w), stamp=0.0))
        assert pred.depth.shape == (h, w) and np.isfinite(pred.depth).all()
        assert min(pred.extras["resolution"]) >= 32
    with pytest.raises(BadInputError, match="uint8"):
        est.predict(Frame(rgb=rgb.astype(np.float32), stamp=0.0))
    assert est.warm_up(64, 48) > 0
    est.reset()


@needs_torch
@needs_ms
def test_folder_without_processor_uses_model_defaults(folders, tmp_path):
    """No preprocessor_config.json: DPT falls back to MiDaS v3's mean = std = 0.5, bicubic, 384."""
    import shutil

    folder = str(tmp_path / "dpt")
    shutil.copytree(folders["dpt_large"], folder)
    os.remove(os.path.join(folder, "preprocessor_config.json"))
    est = registry.create("dpt_large", {"weights": folder})
    assert est.prep.mean == pp.HALF and est.prep.height == 384 and est.prep.resample == "bicubic"
    with_file = registry.create("dpt_large", {"weights": folders["dpt_large"], "resolution": 96})
    assert with_file.prep.height == 96


# ----------------------------------------------------------------------------------------- bad inputs


@needs_torch
def test_wrong_variant_and_missing_files_are_named(folders, tmp_path):
    from depth_ms.models.midas import hf_models

    with pytest.raises(EstimatorError, match="model_type 'depth_anything'"):
        hf_models.check_folder(folders["depth_anything_v2_small"], "dpt_hybrid")
    with pytest.raises(EstimatorError, match="model_type 'dpt'"):
        hf_models.check_folder(folders["dpt_large"], "depth_anything_v2_small")
    with pytest.raises(EstimatorError, match="is_hybrid=True.*'dpt_hybrid'"):
        hf_models.check_folder(folders["dpt_hybrid"], "dpt_large")
    with pytest.raises(EstimatorError, match="is_hybrid=False.*'dpt_large'"):
        hf_models.check_folder(folders["dpt_large"], "dpt_hybrid")
    weights_file = os.path.join(folders["dpt_large"], "model.safetensors")
    with pytest.raises(EstimatorError, match="expects a Hugging Face folder.*model.safetensors"):
        registry.create("dpt_large", {"weights": weights_file})
    missing = str(tmp_path / "nowhere")
    with pytest.raises(EstimatorError, match="not found: .*nowhere"):
        registry.create("depth_anything_v2_small", {"weights": missing})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EstimatorError, match="config.json is missing"):
        hf_models.check_folder(str(empty), "dpt_large")
    (empty / "config.json").write_text(json.dumps({"model_type": "dpt"}))
    with pytest.raises(EstimatorError, match="model.safetensors is missing"):
        hf_models.check_folder(str(empty), "dpt_large")
    (empty / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(EstimatorError, match="only pytorch_model.bin.*convert"):
        hf_models.check_folder(str(empty), "dpt_large")


def test_unknown_options_and_bad_values_are_rejected(tmp_path):
    from depth_ms.core.config import ConfigError

    with pytest.raises(ConfigError, match="'resolutoin'"):
        registry.create("dpt_large", {"resolutoin": 384})
    from depth_ms.models.midas.estimator import FastDepthOptions, build_preprocessing

    with pytest.raises(EstimatorError, match="resize rule 'nearest'"):
        build_preprocessing("dpt_large", FastDepthOptions(resize_rule="nearest"))


def test_default_weights_location_is_named(tmp_path, monkeypatch):
    from depth_ms.models import weights

    monkeypatch.setenv("DEPTH_MS_WEIGHTS", str(tmp_path))
    with pytest.raises(EstimatorError, match="Depth-Anything-V2-Small-hf"):
        registry.create("depth_anything_v2_small", {})
    # midas falls back to the shipped sim-trained model; without that too, both places are named
    monkeypatch.setattr(weights, "SHIPPED_DIR", str(tmp_path / "no_shipped"))
    with pytest.raises(EstimatorError, match="midas_v21_small_256.safetensors nor the shipped model .*no_shipped"):
        registry.create("midas", {})


# ----------------------------------------------------------------------------------------- MiDaS small


@needs_ms
def test_midas_small_estimator_runs_the_official_transform(tmp_path):
    """Random-weight MiDaS small through the estimator == manual transform + network + bicubic upsample."""
    import cv2

    from depth_ms.models import mindspore_device

    mindspore_device.configure("cpu")
    import mindspore as ms

    from depth_ms.models.midas import small_net
    from depth_ms.models.midas.estimator import FastDepthOptions, RelativeDepthEstimator, build_preprocessing

    net = small_net.build_midas_small()
    net.set_train(False)
    prep = build_preprocessing("midas", FastDepthOptions())
    est = RelativeDepthEstimator("midas", lambda x: net(ms.Tensor(x)).asnumpy()[0], prep)
    rgb = image(120, 160, seed=6)
    got = est.predict(Frame(rgb=rgb, stamp=0.0))
    # official MiDaS transform by hand: upper_bound 256, multiple of 32, cv2 cubic on [0, 1] floats
    x = cv2.resize(rgb.astype(np.float32) / 255.0, (256, 192), interpolation=cv2.INTER_CUBIC)
    x = ((x - np.float32(pp.IMAGENET_MEAN)) / np.float32(pp.IMAGENET_STD)).transpose(2, 0, 1)[None]
    pred = net(ms.Tensor(np.ascontiguousarray(x, np.float32))).asnumpy()[0]  # (192, 256)
    ref = pp.upsample_prediction(pred, 120, 160, "bicubic")
    assert got.extras["resolution"] == (256, 192) and got.depth.shape == (120, 160)
    assert rel_diff(got.depth, ref) <= 1e-5
