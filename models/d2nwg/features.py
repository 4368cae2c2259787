"""Backbone features of built datasets, read from the cache the Node command writes.

The features are computed by the TypeScript engine (`npm run features`), the
same code the page runs, and stored per dataset as
`<cache>/features/<data name>/<backbone id>/<dataset id>/features.npy` ([N, D]
float32, rows in the order of the dataset's index.json images) beside
`meta.json`, where <data name> is the datasets' folder (`data`, `data-tiny`).

Usage (from `models/`), to (re)compute the cache for built datasets:

    /usr/bin/python3 -m d2nwg features [--data DIR] [--only PREFIX]

which runs `npm run features` at the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .config import RELEASE_DIR, REPO_DIR, cache_dir


def features_root_for(data_root: Path) -> Path:
    """Where the features of the datasets under data_root live (before the backbone id)."""
    return data_root.parent / "features" / data_root.name


def built_datasets(data_root: Path) -> list[tuple[str, str]]:
    """(dataset id, partition) of every built dataset under data_root, sorted by path."""
    found = []
    for index_path in sorted(data_root.rglob("index.json")):
        index = json.loads(index_path.read_text())
        found.append((index["dataset_id"], index["partition"]))
    return found


def backbone_id() -> str:
    return json.loads((RELEASE_DIR / "backbone" / "backbone.json").read_text())["id"]


@dataclasses.dataclass(frozen=True)
class DatasetFeatures:
    dataset_id: str
    family: str
    partition: str
    classes: list[str]
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int64, index into classes
    is_train: np.ndarray  # [N] bool: the dataset's train split (else test)
    files: list[str]

    def split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        mask = self.is_train if train else ~self.is_train
        return self.features[mask], self.labels[mask]


class StaleFeatures(RuntimeError):
    pass


def load_features(dataset_id: str, data_root: Path, features_root: Path | None = None) -> DatasetFeatures:
    """The cached features of one dataset; raises StaleFeatures when they were not made from its images."""
    dataset_dir = data_root.joinpath(*dataset_id.split("/"))
    index = json.loads((dataset_dir / "index.json").read_text())
    root = (features_root or features_root_for(data_root)) / backbone_id()
    folder = root.joinpath(*dataset_id.split("/"))
    if not (folder / "meta.json").exists():
        raise StaleFeatures(f"no features for {dataset_id}: run `npm run features` (or `python3 -m d2nwg features`)")
    meta = json.loads((folder / "meta.json").read_text())
    if meta["key"]["dataset_content_hash"] != index["content_hash"]:
        raise StaleFeatures(f"features of {dataset_id} were made from other images: run `npm run features` again")
    files = [image["file"] for image in index["images"]]
    if meta["files"] != files:
        raise StaleFeatures(f"features of {dataset_id} list other files than its index.json")
    features = np.load(folder / "features.npy")
    if features.shape != (len(files), meta["feature_dim"]):
        raise StaleFeatures(f"features of {dataset_id} have shape {features.shape}, expected {(len(files), meta['feature_dim'])}")
    return DatasetFeatures(
        dataset_id=dataset_id,
        family=index["family"],
        partition=index["partition"],
        classes=[c["name"] for c in index["classes"]],
        features=features,
        labels=np.array([image["class_index"] for image in index["images"]], dtype=np.int64),
        is_train=np.array([image["split"] == "train" for image in index["images"]]),
        files=files,
    )


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row (last axis) scaled to unit L2 norm, as float32: the form every generator reads features in."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def seen_class_features(dataset_ids: list[str], data_root: Path) -> tuple[np.ndarray, dict, dict]:
    """Unit-norm features [N, D] of every image of the (seen) datasets, and per class key "dataset#index"
    the indices of its train and its test images: what a zoo's models were trained and tested on."""
    blocks, class_train, class_test, offset = [], {}, {}, 0
    for dataset_id in dataset_ids:
        data = load_features(dataset_id, data_root)
        if data.partition != "seen":
            raise ValueError(f"a zoo model uses unseen dataset {dataset_id}")
        blocks.append(unit_rows(data.features))
        for index in range(len(data.classes)):
            members = np.flatnonzero(data.labels == index)
            class_train[f"{dataset_id}#{index}"] = offset + members[data.is_train[members]]
            class_test[f"{dataset_id}#{index}"] = offset + members[~data.is_train[members]]
        offset += len(data.labels)
    return np.concatenate(blocks), class_train, class_test


def draw_support(class_train: dict[str, np.ndarray], classes: list[str], shots: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Per class key of `classes`: indices of `shots` of its train images (fewer when the class has fewer)."""
    return [rng.choice(class_train[key], size=min(shots, len(class_train[key])), replace=False) for key in classes]

def compute(data_root: Path, features_root: Path, only: str = "") -> None:
    """Runs the Node feature extractor over every dataset under data_root (resumable)."""
    command = ["npm", "run", "--silent", "features", "--", "--data", str(data_root), "--out", str(features_root)]
    if only:
        command += ["--only", only]
    subprocess.run(command, cwd=REPO_DIR, check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg features", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=cache_dir() / "data")
    parser.add_argument("--out", type=Path, default=None, help="default: <cache>/features/<name of --data>")
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    try:
        compute(args.data, args.out or features_root_for(args.data), args.only)
    except subprocess.CalledProcessError as error:
        print(f"feature extraction failed (exit {error.returncode})", file=sys.stderr)
        return 1
    return 0
