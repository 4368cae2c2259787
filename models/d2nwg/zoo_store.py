"""How a zoo is stored: safetensors shards of checkpoints plus one metadata table.

    <zoo>/<family>/shard-<job>.safetensors   tensors "<model_id>/<name>", e.g. "head-task-0-00012-s1-e60/weight"
    <zoo>/<family>/shard-<job>.json          the shard's metadata rows and the hash of the job that made it
    <zoo>/<family>/models.csv                every shard's rows, one table for the zoo

A shard whose json records the same job hash is complete and is not trained
again, so a zoo build can stop and resume.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from . import safetensors

COLUMNS = (
    "model_id", "family", "arch", "task_id", "dataset_ids", "classes", "class_names", "fewshot",
    "seed", "epoch", "train_accuracy", "heldout_accuracy", "train_images", "heldout_images", "wall_s", "shard",
)


def shard_paths(folder: Path, job_id: str) -> tuple[Path, Path]:
    return folder / f"shard-{job_id}.safetensors", folder / f"shard-{job_id}.json"


def shard_done(folder: Path, job_id: str, job_hash: str) -> bool:
    tensors_path, meta_path = shard_paths(folder, job_id)
    if not (tensors_path.exists() and meta_path.exists()):
        return False
    return json.loads(meta_path.read_text())["job_hash"] == job_hash


def write_shard(folder: Path, job_id: str, job_hash: str, rows: list[dict], tensors: dict[str, dict[str, np.ndarray]]) -> None:
    """rows: metadata per model (COLUMNS); tensors: model id → {name → array}."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors_path, meta_path = shard_paths(folder, job_id)
    flat = {f"{model_id}/{name}": array for model_id, named in tensors.items() for name, array in named.items()}
    safetensors.save(tensors_path, flat, {"job_id": job_id, "job_hash": job_hash})
    for row in rows:
        row["shard"] = tensors_path.name
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"job_id": job_id, "job_hash": job_hash, "rows": rows}) + "\n")
    tmp.replace(meta_path)


def write_table(folder: Path) -> list[dict]:
    """Gathers every shard's rows into models.csv; returns the rows."""
    rows = []
    for meta_path in sorted(folder.glob("shard-*.json")):
        rows.extend(json.loads(meta_path.read_text())["rows"])
    with open(folder / "models.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, tuple)) else v for k, v in row.items()})
    return rows


def read_table(folder: Path) -> list[dict]:
    with open(folder / "models.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("dataset_ids", "classes", "class_names"):
            row[key] = json.loads(row[key])
        for key in ("seed", "epoch", "train_images", "heldout_images"):
            row[key] = int(row[key])
        for key in ("train_accuracy", "heldout_accuracy", "wall_s"):
            row[key] = float(row[key])
        row["fewshot"] = row["fewshot"] == "True"
    return rows


def load_checkpoint(folder: Path, row: dict) -> dict[str, np.ndarray]:
    tensors, _ = safetensors.load(folder / row["shard"])
    prefix = f"{row['model_id']}/"
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}
