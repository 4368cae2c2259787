"""The latent map of the head release: the generator's training targets projected to 2-D, for the page.

The page draws each generated sample's latents (one per class row) among the
latents the generator was trained on, so a visitor sees whether a sample lies
on a training target (a copy) or somewhere new. The generator's training
targets are, per zoo task it trained on, the reference head of the task's
whole train split; each class row is written in the generator's coordinates
(its residual over the reference head of one k-shot draw of the task's
classes, k cycling over the training bank's shot counts, in the basis of that draw, divided by the generator's per-coordinate
scale), and the 2-D PCA of those latents is written, with training latents for
the page to project and compare against:

    /usr/bin/python3 -m d2nwg latent-map [--tasks N] [--seed S]

reads release/head/generator.pt and the head zoo in the cache, and writes
release/head/latent_map.json: the PCA (mean, two components), up to `--tokens`
training latents (rounded to 2 decimals; the page projects them and measures
each sample's distance to the nearest), and the median distance from a
training latent to its nearest other one, as the scale for "close" (the JSON
keeps the key `nearest_zoo_distance_median`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .config import RELEASE_DIR, cache_dir
from .head_tokens import load_head_corpus
from .residual_head import ResidualGenerator, encode_residual, full_reference


def training_latents(generator: ResidualGenerator, zoo_dir: Path, data_root: Path, tasks: int, seed: int
                     ) -> tuple[np.ndarray, list[str]]:
    """Latents [N, L] of the generator's training targets for `tasks` zoo tasks drawn at random from those
    it trained on, one per class row, and their task ids: each task's full-train-split reference head as a
    residual over the reference of a k-shot draw, in that draw's basis (the generator's own units, what
    DDIM ends in), k cycling over the training bank's shot counts."""
    corpus = load_head_corpus(zoo_dir, data_root)
    rng = np.random.default_rng(seed)
    trained = len(corpus.task_ids) - generator.config.validation_tasks
    picked = sorted(rng.choice(trained, size=min(tasks, trained), replace=False))
    out, ids = [], []
    shots = generator.config.shots
    for i, task in enumerate(picked):
        weight, bias = full_reference(corpus, int(task), generator.stats, generator.config, generator.reference_scale)
        draw = corpus.draw_support(int(task), shots[i % len(shots)], rng)
        support = generator.support([corpus.features[j] for j in draw])
        out.append(encode_residual(weight, bias, support, generator.residual_scale))
        ids.extend([corpus.task_ids[task]] * len(weight))
    return np.concatenate(out), ids


def build_map(latents: np.ndarray, tokens: int, seed: int, decimals: int = 3) -> dict:
    """PCA of all `latents`; `tokens` of them kept (a seeded draw) with their nearest-neighbour scale."""
    centre = latents.mean(0)
    _, singular, vt = np.linalg.svd(latents - centre, full_matrices=False)
    components = vt[:2]
    # float64 before rounding, so that the JSON holds 3 decimals, not float32's expansions
    drawn = np.sort(np.random.default_rng(seed).choice(len(latents), size=min(tokens, len(latents)), replace=False))
    kept = latents.astype(np.float64)[drawn].round(decimals)
    # Nearest other kept latent, in the full space (the page measures a sample against the same set).
    squared = (kept ** 2).sum(1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * kept @ kept.T, 0))
    np.fill_diagonal(distances, np.inf)
    explained = singular ** 2 / (singular ** 2).sum()
    return {
        "mean": [round(float(v), 6) for v in centre],
        "components": [[round(float(v), 6) for v in row] for row in components],
        "explained_variance": [round(float(v), 4) for v in explained[:2]],
        "latents": [[float(v) for v in row] for row in kept],
        "nearest_zoo_distance_median": round(float(np.median(distances.min(1))), 4),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg latent-map", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="training tasks whose targets are drawn")
    parser.add_argument("--tokens", type=int, default=1000, help="latents kept in the file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", type=Path, default=RELEASE_DIR / "head")
    parser.add_argument("--out", type=Path, default=None, help="default: <generator>/latent_map.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = ResidualGenerator.load(args.generator / "generator.pt")
    zoo_dir = cache_dir() / "zoo" / "heads"
    latents, ids = training_latents(generator, zoo_dir, cache_dir() / "data", args.tasks, args.seed)
    table = (zoo_dir / "models.csv").read_bytes() if (zoo_dir / "models.csv").exists() else b""
    result = {
        "description": __doc__.splitlines()[0],
        "rebuild_command": (f"cd models && /usr/bin/python3 -m d2nwg latent-map --tasks {args.tasks} "
                            f"--tokens {args.tokens} --seed {args.seed}"),
        "inputs": {"zoo_table_sha256": hashlib.sha256(table).hexdigest(), "tasks": args.tasks,
                   "encoded_tokens": len(ids), "seed": args.seed},
        **build_map(latents, args.tokens, args.seed, decimals=2),
    }
    out = args.out or args.generator / "latent_map.json"
    text = (json.dumps(result, separators=(",", ":")) + "\n").encode()
    out.write_bytes(text)
    manifest_path = args.generator / "manifest.json"
    if args.out is None and manifest_path.exists():
        # The page finds the map through the manifest (null until this stage has run).
        manifest = json.loads(manifest_path.read_text())
        manifest["latent_map"] = {"file": out.name, "sha256": hashlib.sha256(text).hexdigest(), "bytes": len(text)}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("latents", "mean", "components")}))
    return 0
