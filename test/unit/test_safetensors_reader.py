"""The streaming .safetensors reader against the safetensors library's own writer."""
import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from depth_ms.models.safetensors_reader import SafetensorsError, iter_tensors, read_header


def test_reads_what_safetensors_wrote(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"b.weight": rng.standard_normal((3, 4, 2, 2)).astype(np.float32),
               "a.half": rng.standard_normal(5).astype(np.float16), "c.index": np.arange(6, dtype=np.int64),
               "d.scalar": np.array(2.5, np.float32), "e.empty": np.zeros((0, 3), np.float32)}
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"format": "pt"})
    got = dict(iter_tensors(str(tmp_path / "m.safetensors")))
    assert set(got) == set(tensors)
    for name, value in tensors.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        np.testing.assert_array_equal(got[name], value)
    assert got["b.weight"].flags.writeable and got["b.weight"].flags.owndata  # a fresh buffer, not a map


def _write_raw(path, header, payload):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)


def test_bfloat16_becomes_float32(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 2.0 ** 100], np.float32)
    upper = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact for these values
    _write_raw(tmp_path / "bf.safetensors", {"x": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}},
               upper.tobytes())
    (name, array), = iter_tensors(str(tmp_path / "bf.safetensors"))
    assert name == "x" and array.dtype == np.float32
    np.testing.assert_array_equal(array, values)


def test_bad_files_are_named(tmp_path):
    save_file({"w": np.ones((64, 64), np.float32)}, str(tmp_path / "ok.safetensors"))
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(SafetensorsError, match="cut.safetensors: truncated in tensor w"):
        list(iter_tensors(str(tmp_path / "cut.safetensors")))
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(SafetensorsError, match="tiny.safetensors: too short"):
        read_header(str(tmp_path / "tiny.safetensors"))
    _write_raw(tmp_path / "shape.safetensors", {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(SafetensorsError, match="tensor w is 8 bytes"):
        list(iter_tensors(str(tmp_path / "shape.safetensors")))
    _write_raw(tmp_path / "c64.safetensors", {"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(SafetensorsError, match="unsupported dtype C64"):
        list(iter_tensors(str(tmp_path / "c64.safetensors")))
