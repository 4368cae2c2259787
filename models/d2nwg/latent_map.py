"""The latent map of the head release: zoo heads' latents projected to 2-D, for the page.

The page draws each generated sample's latents (one per class row) among the
zoo's, so a visitor sees whether a sample lies on a zoo checkpoint (a copy) or
somewhere new. Every token of a subset of zoo heads is encoded by the release's
VAE (the posterior mean, with the support directions of one 20-shot draw of its
task's classes: the decoder's input), and the 2-D PCA of those latents is
written, with zoo latents for the page to project and compare against:

    /usr/bin/python3 -m d2nwg latent-map [--heads N] [--seed S]

reads release/head/{vae,encoder,denoiser}.pt and the head zoo in the cache,
and writes release/head/latent_map.json: the PCA (mean, two components), up to
`--tokens` zoo latents (rounded to 3 decimals; the page projects them and
measures each sample's distance to the nearest), and the median distance from a
zoo latent to its nearest other zoo latent, as the scale for "close".
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .config import RELEASE_DIR, cache_dir
from .head_generator import HeadGenerator
from .head_tokens import load_head_corpus


def zoo_latents(generator: HeadGenerator, zoo_dir: Path, data_root: Path, heads: int, seed: int
                ) -> tuple[np.ndarray, list[str]]:
    """Latents [N, L] of every token of `heads` zoo heads drawn at random, and their head ids."""
    corpus = load_head_corpus(zoo_dir, data_root)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(corpus.tokens), size=min(heads, len(corpus.tokens)), replace=False))
    out, ids = [], []
    with torch.no_grad():
        for h in picked:
            task = int(corpus.head_task[h])
            weight, bias = corpus.norm.to_head(corpus.tokens[h])
            tokens = generator.norm.to_tokens(weight, bias).astype(np.float32)
            support = [corpus.features[i] for i in corpus.draw_support(task, 20, rng)]
            basis = torch.from_numpy(generator.basis(support))[None]
            mean, _ = generator.vae.encode(torch.from_numpy(tokens)[None], basis)
            out.append(mean[0].numpy())
            ids.extend([corpus.head_rows[h]["model_id"]] * len(tokens))
    return np.concatenate(out), ids


def build_map(latents: np.ndarray, tokens: int, seed: int) -> dict:
    """PCA of all `latents`; `tokens` of them kept (a seeded draw) with their nearest-neighbour scale."""
    centre = latents.mean(0)
    _, singular, vt = np.linalg.svd(latents - centre, full_matrices=False)
    components = vt[:2]
    # float64 before rounding, so that the JSON holds 3 decimals, not float32's expansions
    drawn = np.sort(np.random.default_rng(seed).choice(len(latents), size=min(tokens, len(latents)), replace=False))
    kept = latents.astype(np.float64)[drawn].round(3)
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
    parser.add_argument("--heads", type=int, default=300, help="zoo heads whose tokens are drawn")
    parser.add_argument("--tokens", type=int, default=1000, help="zoo latents kept in the file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", type=Path, default=RELEASE_DIR / "head")
    parser.add_argument("--out", type=Path, default=None, help="default: <generator>/latent_map.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = HeadGenerator.load(args.generator)
    zoo_dir = cache_dir() / "zoo" / "heads"
    latents, ids = zoo_latents(generator, zoo_dir, cache_dir() / "data", args.heads, args.seed)
    table = (zoo_dir / "models.csv").read_bytes() if (zoo_dir / "models.csv").exists() else b""
    result = {
        "description": __doc__.splitlines()[0],
        "rebuild_command": (f"cd models && /usr/bin/python3 -m d2nwg latent-map --heads {args.heads} "
                            f"--tokens {args.tokens} --seed {args.seed}"),
        "inputs": {"zoo_table_sha256": hashlib.sha256(table).hexdigest(), "heads": args.heads,
                   "encoded_tokens": len(ids), "seed": args.seed},
        **build_map(latents, args.tokens, args.seed),
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
