import json
import struct

import numpy as np
import pytest

from d2nwg import safetensors


def test_round_trip_keeps_names_shapes_values_and_metadata(tmp_path):
    tensors = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.array([1.5, -2], np.float32)}
    safetensors.save(tmp_path / "m.safetensors", tensors, {"seed": 3})
    back, metadata = safetensors.load(tmp_path / "m.safetensors")
    assert metadata == {"seed": "3"}
    for name, value in tensors.items():
        np.testing.assert_array_equal(back[name], value)


def test_layout_is_the_published_format():
    blob = safetensors.encode({"b": np.zeros(2, np.float32), "a": np.ones((1, 1), np.float32)})
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    assert (8 + length) % 8 == 0
    assert header["a"] == {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}
    assert header["b"] == {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}
    assert len(blob) == 8 + length + 12


def test_unsupported_dtype_is_named():
    with pytest.raises(TypeError, match="complex"):
        safetensors.encode({"z": np.zeros(1, np.complex64)})
