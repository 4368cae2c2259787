"""The committed reference checkpoints still score what the zoo recorded for them."""

import json

import numpy as np
import pytest

from d2nwg import safetensors
from d2nwg.config import DATA_DIR, RELEASE_DIR
from d2nwg.networks import predict

REFERENCE = RELEASE_DIR / "zoo" / "reference"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((REFERENCE / "reference.json").read_text())


def checkpoint(tensors: dict, model_id: str) -> dict:
    return {name.split("/", 1)[1]: value for name, value in tensors.items() if name.startswith(model_id + "/")}


def test_reference_cnns_reproduce_their_recorded_held_out_accuracy(reference):
    tensors, _ = safetensors.load(REFERENCE / "cnns.safetensors")
    images, _ = safetensors.load(REFERENCE / "cnn-test-images.safetensors")
    assert {r["arch"] for r in reference["cnns"]} == {"cnn-s", "cnn-w"}
    for row in reference["cnns"]:
        dataset_id = row["dataset_ids"][0]
        x = images[f"{dataset_id}/x"].astype(np.float32)[:, None] / 255
        y = images[f"{dataset_id}/y"]
        accuracy = (predict(row["arch"], checkpoint(tensors, row["model_id"]), x).argmax(1) == y).mean()
        assert accuracy == pytest.approx(row["heldout_accuracy"], abs=1 / len(y)), row["model_id"]
        assert accuracy > 0.5, row["model_id"]


def test_reference_heads_have_one_row_per_class(reference):
    tensors, _ = safetensors.load(REFERENCE / "heads.safetensors")
    assert reference["heads"]
    for row in reference["heads"]:
        head = checkpoint(tensors, row["model_id"])
        assert head["weight"].shape == (len(row["classes"]), 1792)
        assert head["bias"].shape == (len(row["classes"]),)


def test_reference_models_come_from_seen_datasets_only(reference):
    registry = json.loads((DATA_DIR / "registry.json").read_text())
    seen = {d["id"] for d in registry["datasets"] if d["partition"] == "seen"}
    for row in reference["cnns"] + reference["heads"]:
        assert set(row["dataset_ids"]) <= seen, row["model_id"]
