"""Write a built dataset as class folders, the layout the page and `d2nwg generate` take.

`support/<class>/…` gets `--shots` train images per class (a seeded draw) and
`query/<class>/…` up to `--query` test images per class, so the report's
numbers for a pool can be checked from the command line:

    /usr/bin/python3 -m d2nwg class-folder --dataset fashion-mnist --shots 20 --query 50 --out DIR
    npx d2nwg generate --data DIR/support --out DIR/heads
    npx d2nwg evaluate --support DIR/support --query DIR/query --weights DIR/heads

Class folder names are the class index (zero-padded) and name, so their
sorted order is the dataset's class order.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import numpy as np

from .config import cache_dir
from .data import store


def folder_name(index: int, name: str) -> str:
    return f"{index:02d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_')[:40]}"


def write(dataset_id: str, data_root: Path, out: Path, shots: int, query: int, seed: int) -> dict:
    index = store.read_index(data_root, dataset_id)
    if index is None:
        raise FileNotFoundError(f"{dataset_id} is not built under {data_root}")
    rng = np.random.default_rng(seed)
    source = store.dataset_dir(data_root, dataset_id)
    counts = {"support": 0, "query": 0}
    for c, cls in enumerate(index["classes"]):
        folder = folder_name(c, cls["name"])
        for split, part, limit in (("train", "support", shots), ("test", "query", query)):
            files = [e["file"] for e in index["images"] if e["class_index"] == c and e["split"] == split]
            chosen = rng.choice(len(files), size=min(limit, len(files)), replace=False) if files else []
            (out / part / folder).mkdir(parents=True, exist_ok=True)
            for i in sorted(chosen):
                shutil.copyfile(source / files[i], out / part / folder / Path(files[i]).name)
                counts[part] += 1
    return {"dataset": dataset_id, "classes": len(index["classes"]), **counts}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg class-folder", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset id, e.g. fashion-mnist or glyph-digits/tibetan")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--query", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="built datasets (default: <cache>/data)")
    args = parser.parse_args(argv)
    print(write(args.dataset, args.data or cache_dir() / "data", args.out, args.shots, args.query, args.seed))
    return 0
