"""MiDaS v2.1 small on MindSpore vs the official PyTorch MidasNet_small (fixture), key mapping, convert.py,
checkpoint errors and input-size checks.

The fixture (test/fixtures/midas_small, made by tools/make_midas_small_fixture.py) holds the official
state-dict keys and shapes, two normalised inputs and the official outputs for the weights of
:func:`seeded_state_dict` (seed in meta.json), which this file rebuilds without torch.
"""
import importlib.util
import json
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "midas_small")
HAS_MS = importlib.util.find_spec("mindspore") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_ms = pytest.mark.skipif(not HAS_MS, reason="mindspore not importable")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch not importable")
REL_TOL = 1e-4
INPUTS = ("64x96", "96x64")


def seeded_state_dict(keys_and_shapes: dict, seed: int) -> dict:
    """Deterministic MiDaS-small-like weights for a state-dict layout (the fixture's weight rule).

    One ``np.random.default_rng(seed)`` drawn from key by key in sorted key order:
    - ``*.num_batches_tracked``: int64 zeros (no draw);
    - 4-D conv weights: N(0, 1) * sqrt(2 / fan_in), fan_in = C_in/groups * kh * kw;
    - BatchNorm (a key whose prefix also has ``running_mean``): weight U(0.5, 1.5), bias N(0, 0.1),
      running_mean N(0, 0.1), running_var U(0.5, 1.5);
    - other 1-D tensors (conv biases): N(0, 0.05).
    All float tensors are float32.
    """
    rng = np.random.default_rng(seed)
    keys = set(keys_and_shapes)
    out = {}
    for key in sorted(keys):
        shape = tuple(keys_and_shapes[key])
        prefix, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            out[key] = np.zeros(shape, np.int64)
            continue
        if len(shape) == 4:
            values = rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
        elif prefix + ".running_mean" in keys:
            if leaf in ("weight", "running_var"):
                values = rng.uniform(0.5, 1.5, shape)
            else:  # bias, running_mean
                values = rng.normal(0.0, 0.1, shape)
        else:
            values = rng.normal(0.0, 0.05, shape)
        out[key] = values.astype(np.float32)
    return out


def fixture_keys() -> dict:
    with open(os.path.join(FIXTURE, "keys.json")) as f:
        return {k: tuple(s) for k, s in json.load(f)["keys"]}


def fixture_meta() -> dict:
    with open(os.path.join(FIXTURE, "meta.json")) as f:
        return json.load(f)


def rel_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def ms_env():
    from depth_ms.models import mindspore_device

    mindspore_device.configure("cpu")
    import mindspore as ms

    from depth_ms.models.midas import small_net

    return ms, small_net


@pytest.fixture(scope="module")
def seeded(ms_env):
    """(network with the fixture's seeded weights, the weights)."""
    _, small_net = ms_env
    state = seeded_state_dict(fixture_keys(), fixture_meta()["seed"])
    return small_net.load_state(small_net.MidasSmall(), state, "seeded weights"), state


# ------------------------------------------------------------------------------------ names and shapes


@needs_ms
def test_parameter_names_and_shapes_are_the_official_keys(ms_env):
    _, small_net = ms_env
    official = fixture_keys()
    counters = [k for k in official if k.endswith(".num_batches_tracked")]
    net = small_net.MidasSmall()
    ours = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    assert len(ours) == len(dict(net.parameters_dict())) == len(list(net.get_parameters()))
    assert {k: v for k, v in official.items() if k not in counters} == ours
    # the only official keys without a parameter: one counter per BatchNorm (4 tensors each)
    n_bn = sum(1 for k in ours if k.endswith(".running_var"))
    assert len(counters) == n_bn and {c.rsplit(".", 1)[0] + ".running_var" for c in counters} <= ours.keys()
    assert len(official) == len(ours) + n_bn


# ------------------------------------------------------------------------------------------- fidelity


@needs_ms
def test_matches_official_pytorch_output(ms_env, seeded):
    ms, _ = ms_env
    net, _ = seeded
    for size in INPUTS:
        x = np.load(os.path.join(FIXTURE, f"input_{size}.npy"))  # (1, 3, h, w)
        ref = np.load(os.path.join(FIXTURE, f"output_{size}.npy"))  # (1, h, w)
        got = net(ms.Tensor(x)).asnumpy()
        assert got.shape == ref.shape and got.dtype == np.float32
        assert rel_diff(got, ref) <= REL_TOL, size


@needs_ms
def test_matches_official_output_in_graph_mode(ms_env, seeded):
    ms, _ = ms_env
    net, _ = seeded
    forward = ms.jit(net.construct)
    for size in INPUTS:
        x = np.load(os.path.join(FIXTURE, f"input_{size}.npy"))
        ref = np.load(os.path.join(FIXTURE, f"output_{size}.npy"))
        assert rel_diff(forward(ms.Tensor(x)).asnumpy(), ref) <= REL_TOL, size


@needs_ms
def test_conv2d_path_matches(ms_env, seeded):
    """Without the native kernels (MindSpore Conv2D everywhere) the output is the same."""
    ms, small_net = ms_env
    net, state = seeded
    plain = small_net.load_state(small_net.MidasSmall(), state, "seeded weights", native=False)
    assert not plain.pretrained.channels_last and all(b.nhwc is None for b in plain.pretrained.blocks())
    assert all(c.native_op is None for _, c in plain.cells_and_names() if isinstance(c, small_net.Conv2d))
    x = np.load(os.path.join(FIXTURE, "input_96x64.npy"))
    ref = np.load(os.path.join(FIXTURE, "output_96x64.npy"))
    got = plain(ms.Tensor(x)).asnumpy()
    assert rel_diff(got, ref) <= REL_TOL
    assert rel_diff(got, net(ms.Tensor(x)).asnumpy()) <= 5e-5  # float32 summation order only


@needs_ms
@pytest.mark.skipif(os.environ.get("DEPTH_MS_NATIVE_KERNELS") == "0", reason="native kernels disabled")
def test_native_kernels_are_used_when_built(ms_env, seeded):
    _, small_net = ms_env
    net, _ = seeded
    from depth_ms.models import native_library

    assert native_library.native_library() is not None
    # encoder: every block channels last on the NHWC kernels (24 depthwise convs, 47 1x1 convs)
    blocks = net.pretrained.blocks()
    assert net.pretrained.channels_last and len(blocks) == 24 and all(b.nhwc is not None for b in blocks)
    assert sum(len(b.nhwc) for b in blocks) == 24 + 47
    # decoder: all but the head's last 1x1 (one output channel) on the NCHW kernels
    convs = {name: c for name, c in net.scratch.cells_and_names() if isinstance(c, small_net.Conv2d)}
    assert {name for name, c in convs.items() if c.native_op is None} == {"output_conv.4"}


@needs_ms
def test_unfolded_batchnorm_path_matches(ms_env, seeded):
    """The named-parameter path (BatchNorm as its own op) gives the folded path's output."""
    ms, small_net = ms_env
    _, state = seeded
    plain = small_net.MidasSmall()
    for name, p in small_net.state_names(plain).items():
        p.set_data(ms.Tensor(state[name]))
    plain.set_train(False)
    x = np.load(os.path.join(FIXTURE, "input_64x96.npy"))
    ref = np.load(os.path.join(FIXTURE, "output_64x96.npy"))
    assert rel_diff(plain(ms.Tensor(x)).asnumpy(), ref) <= REL_TOL


# --------------------------------------------------------------------------------------- convert.py


@needs_ms
@needs_torch
def test_convert_round_trip(ms_env, seeded, tmp_path):
    import torch

    from depth_ms.models.midas import convert

    ms, small_net = ms_env
    net, state = seeded
    pt = tmp_path / "midas_v21_small_256.pt"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, pt)
    out = tmp_path / "midas_v21_small_256.safetensors"
    assert convert.main([str(pt), str(out)]) == 0
    loaded = small_net.load_midas_small(str(out))
    x = ms.Tensor(np.load(os.path.join(FIXTURE, "input_96x64.npy")))
    np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())
    # wrapped as a training checkpoint ({'model', 'optimizer'}) converts to the same tensors
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}, "optimizer": {}}, wrapped)
    convert.convert(str(wrapped), str(tmp_path / "wrapped.safetensors"))
    from safetensors.numpy import load_file

    a, b = load_file(str(out)), load_file(str(tmp_path / "wrapped.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@needs_ms
@needs_torch
def test_convert_refuses_another_variant(ms_env, tmp_path):
    import torch

    from depth_ms.models.base import EstimatorError
    from depth_ms.models.midas import convert

    pt = tmp_path / "dpt_large_384.pt"
    torch.save({k: torch.zeros(s) for k, s in dpt_large_like().items()}, pt)
    with pytest.raises(EstimatorError, match="dpt_large_384"):
        convert.convert(str(pt), str(tmp_path / "x.safetensors"))
    assert not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------------------------ checkpoint errors


def dpt_large_like() -> dict:
    """Key layout of MiDaS v3.0 dpt_large_384 (ViT-L/16: 24 blocks of width 1024), tiny subset."""
    keys = {"pretrained.model.cls_token": (1, 1, 1024), "pretrained.model.pos_embed": (1, 577, 1024),
            "pretrained.model.patch_embed.proj.weight": (1024, 3, 16, 16),
            "scratch.refinenet1.resConfUnit1.conv1.weight": (256, 256, 3, 3)}
    for i in range(24):
        keys[f"pretrained.model.blocks.{i}.norm1.weight"] = (1024,)
    return keys


def midas_384_like() -> dict:
    """Key layout of midas_v21_384 (MidasNet, ResNeXt-101 WSL backbone, features 256), tiny subset."""
    return {"pretrained.layer1.0.weight": (64, 3, 7, 7), "pretrained.layer1.1.running_mean": (64,),
            "pretrained.layer1.4.0.conv1.weight": (256, 64, 1, 1),
            "pretrained.layer2.0.downsample.0.weight": (512, 256, 1, 1),
            "scratch.layer1_rn.weight": (256, 256, 3, 3), "scratch.output_conv.0.weight": (128, 256, 3, 3)}


def save_zeros(path, keys_and_shapes: dict) -> str:
    from safetensors.numpy import save_file

    save_file({k: np.zeros(s, np.float32) for k, s in keys_and_shapes.items()}, str(path))
    return str(path)


@needs_ms
def test_missing_file_is_named(ms_env, tmp_path):
    from depth_ms.models.base import EstimatorError

    _, small_net = ms_env
    path = str(tmp_path / "nowhere" / "midas_v21_small_256.safetensors")
    with pytest.raises(EstimatorError, match="MiDaS v2.1 small weights not found: .*nowhere"):
        small_net.load_midas_small(path)


@needs_ms
def test_missing_unexpected_and_misshaped_keys_are_named(ms_env, seeded, tmp_path):
    from safetensors.numpy import save_file

    from depth_ms.models.base import EstimatorError

    _, small_net = ms_env
    _, state = seeded
    state = {k: v for k, v in state.items() if v.dtype == np.float32}
    broken = dict(state)
    del broken["scratch.refinenet2.resConfUnit1.conv2.bias"]
    path = str(tmp_path / "missing.safetensors")
    save_file(broken, path)
    with pytest.raises(EstimatorError, match=r"1 missing keys: scratch\.refinenet2\.resConfUnit1\.conv2\.bias"):
        small_net.load_midas_small(path)

    broken = dict(state, **{"scratch.extra.weight": np.zeros(3, np.float32)})
    save_file(broken, path)
    with pytest.raises(EstimatorError, match=r"unexpected keys: scratch\.extra\.weight"):
        small_net.load_midas_small(path)

    broken = dict(state, **{"pretrained.layer2.0.0.bn1.running_var": np.ones(7, np.float32)})
    save_file(broken, path)
    with pytest.raises(EstimatorError) as err:
        small_net.load_midas_small(path)
    assert "missing.safetensors" in str(err.value)
    assert "1 shape mismatches: pretrained.layer2.0.0.bn1.running_var (7,) (expected (192,))" in str(err.value)


@needs_ms
@pytest.mark.parametrize("layout, variant", [
    (dpt_large_like(), "dpt_large_384"),
    (midas_384_like(), "midas_v21_384"),
    ({"dpt.embeddings.cls_token": (1, 1, 8), "head.head.0.weight": (4, 8, 3, 3)}, "Hugging Face DPT"),
    ({"pretrained.model.blocks.0.attn.relative_position_bias_table": ((2 * 32 - 1) ** 2 + 3, 16),
      "pretrained.model.blocks.23.norm1.weight": (1024,)}, "dpt_beit_large_512"),
    ({"pretrained.model.layers.0.blocks.0.attn.cpb_mlp.0.weight": (512, 2),
      "pretrained.model.patch_embed.proj.weight": (96, 3, 4, 4)}, "dpt_swin2_tiny_256"),
    ({"pretrained.model.patch_embed.backbone.stem.conv.weight": (64, 3, 7, 7),
      "pretrained.model.blocks.0.norm1.weight": (768,)}, "dpt_hybrid_384"),
])
def test_another_variant_is_named(ms_env, tmp_path, layout, variant):
    from depth_ms.models.base import EstimatorError

    _, small_net = ms_env
    path = save_zeros(tmp_path / "other.safetensors", layout)
    with pytest.raises(EstimatorError, match=f"other.safetensors is not MiDaS v2.1 small.*{variant}"):
        small_net.load_midas_small(path)


def test_detect_variant_of_official_layout():
    from depth_ms.models.midas.state_keys import detect_variant

    assert detect_variant(fixture_keys()) == "midas_v21_small_256"
    assert detect_variant({"foo.weight": (3,)}).startswith("unknown")


# ---------------------------------------------------------------------------------------- input sizes


@needs_ms
@pytest.mark.parametrize("height, width", [(16, 64), (64, 16), (48, 64), (64, 100)])
def test_sizes_not_multiple_of_32_are_refused(ms_env, height, width):
    ms, small_net = ms_env
    net = small_net.build_midas_small()
    with pytest.raises(ValueError, match=f"multiples of 32.*{height}x{width}"):
        net(ms.Tensor(np.zeros((1, 3, height, width), np.float32)))


@needs_ms
def test_smallest_size_and_batch(ms_env, seeded):
    ms, _ = ms_env
    net, _ = seeded
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 64)).astype(np.float32)
    out = net(ms.Tensor(x)).asnumpy()  # (2, 32, 64)
    assert out.shape == (2, 32, 64) and np.isfinite(out).all()
    np.testing.assert_allclose(out[1], net(ms.Tensor(x[1:])).asnumpy()[0], rtol=1e-5, atol=1e-5 * np.abs(out).max())
