"""The committed runtime slice is what the seeded factory code produces."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from d2nwg import export_slice
from d2nwg.config import RELEASE_DIR, apply_overrides
from d2nwg.hashing import sha256_file

SLICE_DIR = RELEASE_DIR / "slice"


def committed_manifest() -> dict:
    return json.loads((SLICE_DIR / "manifest.json").read_text())


def test_committed_graph_matches_manifest_hash_and_is_valid_onnx():
    manifest = committed_manifest()
    graph_path = SLICE_DIR / manifest["graph"]["file"]
    assert sha256_file(graph_path) == manifest["graph"]["sha256"]
    assert graph_path.stat().st_size == manifest["graph"]["bytes"]
    model = onnx.load(str(graph_path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["y"]
    assert model.opset_import[0].version >= 17


def test_committed_weights_and_trace_rebuild_from_seed():
    manifest = committed_manifest()
    config = apply_overrides(export_slice.SliceConfig(), manifest["config"])
    model, x, y = export_slice.build(config)
    graph = onnx.load(str(SLICE_DIR / manifest["graph"]["file"])).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for name, param in model.state_dict().items():
        np.testing.assert_array_equal(initializers[name], param.numpy())
    trace = json.loads((SLICE_DIR / manifest["trace_file"]).read_text())
    np.testing.assert_allclose(np.array(trace["input"]["data"]), x.flatten().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(np.array(trace["output"]["data"]), y.flatten().numpy(), rtol=0, atol=1e-7)


def test_recorded_output_is_a_probability_distribution_per_row():
    trace = json.loads((SLICE_DIR / committed_manifest()["trace_file"]).read_text())
    rows = np.array(trace["output"]["data"]).reshape(trace["output"]["shape"])
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-6)
    assert len(set(rows.argmax(axis=1))) > 1, "a degenerate slice would not exercise the runtime"


def test_export_writes_all_files(tmp_path):
    manifest = export_slice.export(export_slice.SliceConfig(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "mlp.onnx", "trace.json"]
    assert manifest["graph"]["bytes"] == (tmp_path / "mlp.onnx").stat().st_size


def test_unknown_override_key_is_an_error():
    with pytest.raises(KeyError, match="hiden"):
        apply_overrides(export_slice.SliceConfig(), {"hiden": 3})
