"""The few-shot episode protocol on unseen datasets: which images support and query each episode.

For every unseen dataset and shots k in SHOTS: EPISODES episodes, N-way with N
all of the dataset's classes (episode label c is the dataset's class c), k
support images per class drawn from its train images and QUERIES query images
per class from its test images (all of them where a class has fewer). A
(dataset, k) where a class has fewer than k train images is skipped and listed.
Beside them, the literature's 5-way slices: SLICE_EPISODES episodes each of
5-way 1-shot and 5-way 5-shot over the unseen datasets with at least 5 classes
(dataset uniformly at random, then 5 of its classes, in random order).

Every episode draws from its own generator, seeded by
`stable_seed(SEED, dataset, k, episode)` (slices: `stable_seed(SEED, slice
name, episode)`), so an episode does not depend on how many others are drawn.
The index arrays are regenerated, never stored; `data/episodes.json` keeps the
rule, the seed, the episode counts and the sha256 of every (dataset, k)'s
arrays (`episodes_sha256`), which `tests/test_episodes.py` checks where the
data cache exists.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg.episodes [--check]

writes `data/episodes.json` from the datasets in `<cache>/data/` (`--check`:
compares instead, and exits 1 on a difference).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from .baselines import stable_seed
from .config import DATA_DIR, cache_dir
from .features import built_datasets

SEED = 0
SHOTS = (1, 5, 20)
EPISODES = 100
QUERIES = 15  # per class
SLICES = {"5-way 1-shot": (5, 1), "5-way 5-shot": (5, 5)}  # name: (ways, shots)
SLICE_EPISODES = 600
RULE = (f"Per unseen dataset and shots k in {list(SHOTS)}: {EPISODES} episodes, every class of the dataset, k support "
        f"images per class from its train images, {QUERIES} queries per class from its test images (all where a class "
        "has fewer); skipped where a class has fewer than k train images. Slices: "
        f"{SLICE_EPISODES} episodes each of 5-way 1-shot and 5-way 5-shot over unseen datasets with at least 5 classes "
        "(dataset uniformly, then 5 classes). Episode e draws from default_rng(stable_seed(seed, dataset, k, e)) "
        "(slices: stable_seed(seed, slice, e)): per class in episode order, rng.choice of its train images (k, no "
        "replacement), then rng.choice of its test images; classes of a slice episode: rng.integers for the dataset, "
        "rng.choice(classes, 5, replace=False).")


@dataclasses.dataclass(frozen=True)
class DatasetIndex:
    """What the protocol needs of a dataset: labels and split of its images, in index.json order."""

    dataset_id: str
    classes: int
    labels: np.ndarray  # [N] int64
    is_train: np.ndarray  # [N] bool


@dataclasses.dataclass(frozen=True)
class Episode:
    dataset_id: str
    classes: np.ndarray  # [ways]: the dataset's class of each episode label
    support: np.ndarray  # [ways · shots] image indices, class by class (label = position // shots)
    query: np.ndarray  # image indices
    query_labels: np.ndarray  # episode labels of the queries

    @property
    def ways(self) -> int:
        return len(self.classes)

    @property
    def support_labels(self) -> np.ndarray:
        return np.repeat(np.arange(self.ways), len(self.support) // self.ways)


def read_index(dataset_id: str, data_root: Path) -> DatasetIndex:
    index = json.loads(data_root.joinpath(*dataset_id.split("/"), "index.json").read_text())
    return DatasetIndex(dataset_id, len(index["classes"]),
                        np.array([image["class_index"] for image in index["images"]], dtype=np.int64),
                        np.array([image["split"] == "train" for image in index["images"]]))


def draw(index: DatasetIndex, classes: np.ndarray, shots: int, queries: int, rng: np.random.Generator) -> Episode:
    support, query, query_labels = [], [], []
    for label, c in enumerate(classes):
        members = index.labels == c
        train, test = np.flatnonzero(members & index.is_train), np.flatnonzero(members & ~index.is_train)
        support.append(rng.choice(train, size=shots, replace=False))
        picked = rng.choice(test, size=min(queries, len(test)), replace=False)
        query.append(picked)
        query_labels.append(np.full(len(picked), label))
    return Episode(index.dataset_id, np.asarray(classes, dtype=np.int64), np.concatenate(support),
                   np.concatenate(query), np.concatenate(query_labels))


def skip_reason(index: DatasetIndex, shots: int) -> str | None:
    train = np.bincount(index.labels[index.is_train], minlength=index.classes)
    test = np.bincount(index.labels[~index.is_train], minlength=index.classes)
    if train.min() < shots:
        return f"a class has {train.min()} train images, fewer than {shots}"
    if test.min() == 0:
        return "a class has no test images"
    return None


def dataset_episodes(index: DatasetIndex, shots: int, episodes: int = EPISODES, queries: int = QUERIES,
                     seed: int = SEED) -> list[Episode]:
    """The N-way episodes of one dataset at `shots` ([] when it is skipped: `skip_reason`)."""
    if skip_reason(index, shots):
        return []
    classes = np.arange(index.classes)
    return [draw(index, classes, shots, queries, np.random.default_rng(stable_seed(seed, index.dataset_id, shots, e)))
            for e in range(episodes)]


def slice_episodes(indexes: list[DatasetIndex], name: str, episodes: int = SLICE_EPISODES, queries: int = QUERIES,
                   seed: int = SEED) -> list[Episode]:
    """A 5-way slice: each episode a dataset (uniformly among those with ≥ ways classes that no shot
    count skips) and `ways` of its classes."""
    ways, shots = SLICES[name]
    eligible = [i for i in indexes if i.classes >= ways and skip_reason(i, shots) is None]
    if not eligible:
        return []
    out = []
    for e in range(episodes):
        rng = np.random.default_rng(stable_seed(seed, name, e))
        index = eligible[rng.integers(len(eligible))]
        out.append(draw(index, rng.choice(index.classes, size=ways, replace=False), shots, queries, rng))
    return out


def episodes_sha256(episodes: list[Episode]) -> str:
    """sha256 over every episode's arrays in order: sizes, classes, support, query, query labels (int64 LE)."""
    digest = hashlib.sha256()
    for ep in episodes:
        digest.update(ep.dataset_id.encode() + b"\0")
        parts = [np.array([ep.ways, len(ep.support), len(ep.query)]), ep.classes, ep.support, ep.query, ep.query_labels]
        for part in parts:
            digest.update(np.ascontiguousarray(part, dtype="<i8").tobytes())
    return digest.hexdigest()


def macro_bootstrap(per_dataset: dict[str, dict[str, np.ndarray]], methods: list[str], pairs: list[tuple[str, str]],
                    resamples: int, seed: int) -> dict:
    """Macro-average over datasets of each method's mean over episodes, with a 95% interval from a
    stratified bootstrap (each resample redraws every dataset's episodes with replacement, the same draw
    for every method, so differences are paired), and the paired differences `a − b` likewise."""
    rng = np.random.default_rng(seed)
    boot = {m: np.zeros(resamples) for m in methods}
    for scores in per_dataset.values():
        count = len(scores[methods[0]])
        idx = rng.integers(count, size=(resamples, count))
        for m in methods:
            boot[m] += np.asarray(scores[m])[idx].mean(1)
    datasets = len(per_dataset)
    point = {m: float(np.mean([np.mean(s[m]) for s in per_dataset.values()])) for m in methods}

    def interval(mean: float, draws: np.ndarray) -> dict:
        low, high = np.percentile(draws / datasets, [2.5, 97.5])
        return {"mean": mean, "low": float(low), "high": float(high)}

    return {"datasets": datasets, "resamples": resamples,
            "macro": {m: interval(point[m], boot[m]) for m in methods},
            "pairs": {f"{a} - {b}": interval(point[a] - point[b], boot[a] - boot[b]) for a, b in pairs}}


def episode_intervals(scores: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> dict:
    """Mean over episodes ± 1.96 σ/√n (the few-shot literature's interval), and the same for paired differences."""
    def interval(v: np.ndarray) -> dict:
        v = np.asarray(v, dtype=float)
        return {"mean": float(v.mean()), "ci95": float(1.96 * v.std() / np.sqrt(len(v)))}

    return {"intervals": {m: interval(v) for m, v in scores.items()},
            "pairs": {f"{a} - {b}": interval(np.asarray(scores[a]) - np.asarray(scores[b])) for a, b in pairs}}


def unseen_indexes(data_root: Path) -> list[DatasetIndex]:
    return [read_index(d, data_root) for d, partition in built_datasets(data_root) if partition == "unseen"]


def protocol(indexes: list[DatasetIndex], seed: int = SEED) -> dict:
    """What `data/episodes.json` holds for these datasets."""
    datasets, skipped = {}, []
    for index in indexes:
        row = {}
        for shots in SHOTS:
            reason = skip_reason(index, shots)
            if reason:
                skipped.append({"dataset_id": index.dataset_id, "shots": shots, "reason": reason})
                continue
            episodes = dataset_episodes(index, shots, seed=seed)
            row[str(shots)] = {"episodes": len(episodes), "sha256": episodes_sha256(episodes)}
        datasets[index.dataset_id] = {"classes": index.classes, "shots": row}
    slices = {}
    for name, (ways, shots) in SLICES.items():
        episodes = slice_episodes(indexes, name, seed=seed)
        slices[name] = {"ways": ways, "shots": shots, "episodes": len(episodes),
                        "datasets": sorted({ep.dataset_id for ep in episodes}), "sha256": episodes_sha256(episodes)}
    return {"rule": RULE, "seed": seed, "shots": list(SHOTS), "episodes": EPISODES, "queries_per_class": QUERIES,
            "datasets": datasets, "skipped": skipped, "slices": slices}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg.episodes", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with data/episodes.json instead of writing it")
    args = parser.parse_args(argv)
    fresh = protocol(unseen_indexes(cache_dir() / "data"))
    path = DATA_DIR / "episodes.json"
    if args.check:
        same = json.loads(path.read_text()) == fresh
        print("episodes.json matches the data" if same else "episodes.json differs from the data")
        return 0 if same else 1
    path.write_text(json.dumps(fresh, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
