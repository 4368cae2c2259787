"""The committed parity traces are what the factory's one sampler records, and the release checkpoints load.

`release/<family>/trace.json` is replayed by the engine's tests; here it is
recorded again from the committed checkpoints by `record_trace`, which runs
the generator's sampler (`ddim.sample_guided`, the loop every evaluation uses)
with a record hook, and compared with the committed file.
"""

import json
import pickletools
import zipfile

import numpy as np
import pytest

from d2nwg.checkpoint import MODEL_PARTS
from d2nwg.cnn_generator import CnnGenerator
from d2nwg.config import RELEASE_DIR
from d2nwg.ddim import GuidedStep
from d2nwg.export_cnn import record_trace as record_cnn_trace
from d2nwg.export_head import record_trace as record_head_trace
from d2nwg.generation import SamplingSettings
from d2nwg.onnx_export import FixtureCondition, fixture_support
from d2nwg.residual_head import ResidualGenerator

TOLERANCE = 1e-5  # far inside the engine's 1e-4; on the machine that recorded them the traces agree bit for bit


def committed(family: str) -> dict:
    return json.loads((RELEASE_DIR / family / "trace.json").read_text())


@pytest.fixture(scope="module")
def head() -> ResidualGenerator:
    return ResidualGenerator.load(RELEASE_DIR / "head" / "generator.pt")


@pytest.fixture(scope="module")
def cnn() -> CnnGenerator:
    return CnnGenerator.load(RELEASE_DIR / "cnn")


def assert_close(recorded, expected, where: str = "") -> None:
    """Same keys, same lists, numbers within TOLERANCE."""
    if isinstance(expected, dict):
        assert sorted(recorded) == sorted(expected), where
        for key in expected:
            assert_close(recorded[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list) and expected and isinstance(expected[0], (dict, list)):
        assert len(recorded) == len(expected), where
        for i, (r, e) in enumerate(zip(recorded, expected)):
            assert_close(r, e, f"{where}[{i}]")
    elif isinstance(expected, list):
        assert len(recorded) == len(expected), where
        np.testing.assert_allclose(np.array(recorded, float), np.array(expected, float), rtol=0, atol=TOLERANCE, err_msg=where)
    else:
        assert recorded == expected, where


def test_the_head_trace_is_what_the_sampler_records(head):
    trace = committed("head")
    assert len(trace["steps"]) == trace["settings"]["steps"] >= 2
    assert_close(record_head_trace(head, SamplingSettings(**trace["settings"])), trace)


def test_the_cnn_trace_is_what_the_sampler_records(cnn):
    trace = committed("cnn")
    assert len(trace["steps"]) == trace["settings"]["steps"] >= 2
    recorded, _ = record_cnn_trace(cnn, trace["arch"], SamplingSettings(**trace["settings"]))
    assert_close(recorded, trace)


def test_the_recorded_cnn_steps_are_the_run_the_sampler_returns(cnn):
    """The hook only watches: the run it records ends where an unrecorded run of the same settings ends."""
    trace = committed("cnn")
    settings = SamplingSettings(**trace["settings"])
    fixture = FixtureCondition.encode(cnn.encoder)
    args = (trace["arch"], fixture.class_tokens, fixture.dataset_token, settings)
    x_T = cnn.initial_noise(trace["arch"], settings.samples, len(fixture.support), settings.seed)[0]
    steps: list[GuidedStep] = []
    recorded = cnn.sample_latents(*args, record=steps.append)
    np.testing.assert_array_equal(cnn.sample_latents(*args), recorded)
    np.testing.assert_array_equal(steps[0].sample, x_T * settings.temperature)
    for before, after in zip(steps, steps[1:]):
        np.testing.assert_array_equal(after.sample, before.prev_sample)
    np.testing.assert_array_equal((steps[-1].prev_sample / cnn.latent_scale).astype(np.float32), recorded)
    for step, row in zip(steps, trace["steps"]):
        assert row["t"] == step.t
        np.testing.assert_allclose(row["prev_sample"], step.prev_sample.ravel(), rtol=0, atol=TOLERANCE)


def test_the_recorded_head_steps_are_the_heads_the_generator_returns(head):
    """The hook only watches: recorded or not, the same settings give the same heads, and the steps chain
    from x_T × temperature to the coordinates the heads decode from."""
    trace = committed("head")
    settings = SamplingSettings(**trace["settings"])
    support = fixture_support(head.stats.eigenvectors.shape[1])
    steps: list[GuidedStep] = []
    recorded = head.generate_batch([support], settings, [settings.seed], record=steps.append)
    plain = head.generate_batch([support], settings, [settings.seed])
    for a, b in zip(recorded, plain):
        np.testing.assert_array_equal(a, b)
    x_T = head.initial_noise(settings.samples, len(support), settings.seed)[0]
    np.testing.assert_array_equal(steps[0].sample, x_T * settings.temperature)
    for before, after in zip(steps, steps[1:]):
        np.testing.assert_array_equal(after.sample, before.prev_sample)
    weight, bias = head.heads(steps[-1].prev_sample, head.support(support))
    np.testing.assert_allclose(weight, recorded[0][0], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(bias, recorded[1][0], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("path", [f"cnn/{part}.pt" for part in MODEL_PARTS] + ["head/generator.pt"])
def test_release_checkpoints_name_no_factory_module(path):
    """Each checkpoint pickles plain dicts, arrays and tensors only, so moving a d2nwg class cannot break
    loading."""
    with zipfile.ZipFile(RELEASE_DIR / path) as archive:
        pickle = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    names = [arg for _, arg, _ in pickletools.genops(pickle) if isinstance(arg, str)]  # globals' names among them
    assert any("_rebuild_tensor" in n for n in names), path
    assert not [n for n in names if "d2nwg" in n], path
