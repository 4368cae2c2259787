"""Commit a small reference subset of the zoos, for tests and for the page's "pretrained" comparisons.

CNNs: for every seen glyph-digits dataset, the final-epoch checkpoint of seed 0
of each architecture, with that dataset's 28×28 test images (uint8), so a test
can measure them again without the cache. Heads: the final-epoch seed-0 heads
of the first `heads_per_family` tasks of each pool family.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg zoo-reference [--zoo DIR] [--out DIR]

Writes `cnns.safetensors`, `cnn-test-images.safetensors`, `heads.safetensors`
and `reference.json` into `release/zoo/reference/` (default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import safetensors, zoo_store
from .cnn_zoo import load_dataset_28
from .config import RELEASE_DIR, cache_dir

HEADS_PER_FAMILY = 2


def choose_cnns(rows: list[dict]) -> list[dict]:
    last = max(r["epoch"] for r in rows)
    return sorted(
        (r for r in rows if r["family"] == "glyph-digits" and r["seed"] == 0 and r["epoch"] == last),
        key=lambda r: (r["dataset_ids"][0], r["arch"]),
    )


def choose_heads(rows: list[dict]) -> list[dict]:
    last = max(r["epoch"] for r in rows)
    chosen = []
    for family in sorted({r["family"] for r in rows}):
        tasks = sorted({r["task_id"] for r in rows if r["family"] == family and not r["fewshot"]})[:HEADS_PER_FAMILY]
        chosen += [r for r in rows if r["task_id"] in tasks and r["seed"] == 0 and r["epoch"] == last]
    return chosen


def write_reference(zoo_dir: Path, data_root: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cnn_rows = choose_cnns(zoo_store.read_table(zoo_dir / "cnns"))
    head_rows = choose_heads(zoo_store.read_table(zoo_dir / "heads"))
    cnn_tensors, images = {}, {}
    for row in cnn_rows:
        for name, value in zoo_store.load_checkpoint(zoo_dir / "cnns", row).items():
            cnn_tensors[f"{row['model_id']}/{name}"] = value
        dataset_id = row["dataset_ids"][0]
        if dataset_id not in images:
            _, _, x_test, y_test = load_dataset_28(dataset_id, data_root)
            images[f"{dataset_id}/x"] = np.round(x_test[:, 0] * 255).astype(np.uint8)
            images[f"{dataset_id}/y"] = y_test.astype(np.int64)
    head_tensors = {
        f"{row['model_id']}/{name}": value
        for row in head_rows
        for name, value in zoo_store.load_checkpoint(zoo_dir / "heads", row).items()
    }
    safetensors.save(out / "cnns.safetensors", cnn_tensors)
    safetensors.save(out / "cnn-test-images.safetensors", images)
    safetensors.save(out / "heads.safetensors", head_tensors)
    reference = {
        "description": "A few zoo checkpoints with their metadata rows; see d2nwg/zoo_reference.py.",
        "rebuild_command": "cd models && /usr/bin/python3 -m d2nwg zoo-reference",
        "cnns": cnn_rows,
        "heads": head_rows,
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    return {"cnns": len(cnn_rows), "heads": len(head_rows), "datasets": len(images) // 2}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg zoo-reference", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=cache_dir() / "zoo")
    parser.add_argument("--data", type=Path, default=cache_dir() / "data")
    parser.add_argument("--out", type=Path, default=RELEASE_DIR / "zoo" / "reference")
    args = parser.parse_args(argv)
    print(json.dumps(write_reference(args.zoo, args.data, args.out)))
    return 0
