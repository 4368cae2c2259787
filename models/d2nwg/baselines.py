"""Few-shot baselines on the unseen pools: nearest class mean and logistic regression on backbone features.

For every unseen dataset and every shot count k, `splits` random splits draw k
support images per class from the dataset's train split; the queries are all
of its test images, so support and queries never overlap. Features are
L2-normalised. Nearest class mean classifies by cosine to the support means.
Logistic regression chooses C by stratified cross-validation on the support
set (k ≥ 2); at k = 1 there is nothing to cross-validate, so C is the value
that scored best on seen datasets' held-out images (seen data only, never
unseen). Reported: mean ± standard deviation over splits.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg baselines [--config NAME] [--workers N]

Writes `data/baselines.json` and `data/BASELINES.md` (with `--config NAME`,
into `<cache>/data-NAME/` instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .config import DATA_DIR, as_dict, cache_dir, load_config
from .features import DatasetFeatures, built_datasets, load_features


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    seed: int = 0
    shots: tuple[int, ...] = (1, 5, 20)
    splits: int = 20
    c_grid: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    cv_folds: int = 3
    one_shot_calibration_datasets: int = 12  # seen datasets used to pick C at k = 1
    data_name: str = "data"  # cache folder of the datasets: data, or data-<config> for small configs


def stable_seed(*parts: object) -> int:
    """A seed from names and numbers that is the same in every process (unlike hash())."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def normalise(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def draw_support(labels: np.ndarray, train_indices: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray | None:
    """k train indices per class, or None when a class has fewer than k train images."""
    chosen = []
    for cls in np.unique(labels):
        pool = train_indices[labels[train_indices] == cls]
        if len(pool) < shots:
            return None
        chosen.append(rng.choice(pool, size=shots, replace=False))
    return np.concatenate(chosen)


def nearest_class_mean(x_support, y_support, x_query) -> np.ndarray:
    classes = np.unique(y_support)
    means = normalise(np.stack([x_support[y_support == c].mean(axis=0) for c in classes]))
    return classes[(x_query @ means.T).argmax(axis=1)]


def row_space(x: np.ndarray) -> np.ndarray:
    """An orthonormal basis [r, D] of the span of the rows of x.

    The L2-regularised logistic-regression weights lie in the span of the
    training features (representer theorem; the penalty is rotation-invariant),
    so fitting on x @ basis.T gives the same decision function in r ≤ N
    dimensions instead of D: several times fewer flops when N ≪ D = 1792.
    """
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return vt[s > s[0] * 1e-6]


class LogisticHead:
    """Logistic regression fitted in the row space of its training features."""

    def __init__(self, c: float, warm_start: bool = False):
        self.model = LogisticRegression(C=c, max_iter=500, warm_start=warm_start)
        self.basis: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, c: float | None = None) -> "LogisticHead":
        if self.basis is None:
            self.basis = row_space(x)
        if c is not None:
            self.model.set_params(C=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(x @ self.basis.T, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x @ self.basis.T)


def fit_logistic(x, y, c: float) -> LogisticHead:
    return LogisticHead(c).fit(x, y)


def choose_c(x, y, config: BaselineConfig, seed: int) -> float:
    """C with the best mean validation accuracy over stratified folds of the support set.

    Within a fold the grid is fitted in ascending order, each fit warm-started
    from the previous solution (a regularisation path): same optimum, fewer
    L-BFGS iterations.
    """
    folds = min(config.cv_folds, int(np.bincount(y).min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % (2**32))
    grid = sorted(config.c_grid)
    scores = np.zeros(len(grid))
    for train, val in splitter.split(x, y):
        model = LogisticHead(grid[0], warm_start=True)
        for i, c in enumerate(grid):
            model.fit(x[train], y[train], c)
            scores[i] += (model.predict(x[val]) == y[val]).mean()
    return grid[int(np.argmax(scores))]  # ties: the first, i.e. the strongest regularisation


def one_shot_c(seen: list[DatasetFeatures], config: BaselineConfig) -> float:
    """The C with the best mean held-out accuracy on 1-shot splits of seen datasets."""
    scores = np.zeros(len(config.c_grid))
    for data in seen:
        rng = np.random.default_rng(stable_seed(config.seed, "one-shot-c", data.dataset_id))
        x = normalise(data.features)
        support = draw_support(data.labels, np.flatnonzero(data.is_train), 1, rng)
        if support is None:
            continue
        query = np.flatnonzero(~data.is_train)
        for i, c in enumerate(config.c_grid):
            model = fit_logistic(x[support], data.labels[support], c)
            scores[i] += (model.predict(x[query]) == data.labels[query]).mean()
    return config.c_grid[int(np.argmax(scores))]


def evaluate_dataset(data: DatasetFeatures, config: BaselineConfig, c_one_shot: float) -> dict:
    x = normalise(data.features)
    train = np.flatnonzero(data.is_train)
    query = np.flatnonzero(~data.is_train)
    result = {"dataset_id": data.dataset_id, "family": data.family, "classes": len(data.classes),
              "queries": int(len(query)), "shots": {}}
    for shots in config.shots:
        ncm, logistic, chosen = [], [], []
        for split in range(config.splits):
            rng = np.random.default_rng(stable_seed(config.seed, data.dataset_id, shots, split))
            support = draw_support(data.labels, train, shots, rng)
            if support is None:
                break
            xs, ys = x[support], data.labels[support]
            ncm.append(float((nearest_class_mean(xs, ys, x[query]) == data.labels[query]).mean()))
            c = c_one_shot if shots == 1 else choose_c(xs, ys, config, stable_seed(config.seed, "cv", split))
            chosen.append(c)
            logistic.append(float((fit_logistic(xs, ys, c).predict(x[query]) == data.labels[query]).mean()))
        if not ncm:
            result["shots"][str(shots)] = {"skipped": f"a class has fewer than {shots} train images"}
            continue
        result["shots"][str(shots)] = {
            "splits": len(ncm),
            "ncm": {"mean": float(np.mean(ncm)), "std": float(np.std(ncm))},
            "logistic": {"mean": float(np.mean(logistic)), "std": float(np.std(logistic))},
            "logistic_c": {str(c): chosen.count(c) for c in sorted(set(chosen))},
        }
    return result


def markdown(results: list[dict], config: BaselineConfig, c_one_shot: float, wall_s: float, cached: int) -> str:
    lines = [
        "# Few-shot baselines on unseen datasets",
        "",
        "Backbone features (L2-normalised); queries are each dataset's test images, disjoint from the",
        f"support drawn from its train images. Mean ± standard deviation over {config.splits} random",
        "splits per dataset and shot count. NCM: nearest class mean (cosine). LR: logistic regression,",
        f"C by {config.cv_folds}-fold cross-validation on the support set over {list(config.c_grid)};",
        f"at 1 shot C = {c_one_shot:g}, chosen on seen datasets' held-out images.",
        "",
        f"Rebuild: `cd models && /usr/bin/python3 -m d2nwg baselines` (this run: {wall_s:.0f} s on 2 cores for "
        f"{len(results) - cached} datasets; {cached} were read from the cache of an earlier, interrupted run).",
        "",
        "| dataset | classes | queries | shots | NCM | LR |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for shots, s in r["shots"].items():
            if "skipped" in s:
                lines.append(f"| {r['dataset_id']} | {r['classes']} | {r['queries']} | {shots} | skipped: {s['skipped']} | |")
                continue
            lines.append(
                f"| {r['dataset_id']} | {r['classes']} | {r['queries']} | {shots} "
                f"| {s['ncm']['mean']:.3f} ± {s['ncm']['std']:.3f} | {s['logistic']['mean']:.3f} ± {s['logistic']['std']:.3f} |"
            )
    lines += ["", "## Mean over datasets, per family", "", "| family | datasets | shots | NCM | LR |", "|---|---|---|---|---|"]
    for family in sorted({r["family"] for r in results}):
        for shots in map(str, config.shots):
            rows = [r["shots"][shots] for r in results if r["family"] == family and "ncm" in r["shots"].get(shots, {})]
            if rows:
                ncm = np.mean([s["ncm"]["mean"] for s in rows])
                lr = np.mean([s["logistic"]["mean"] for s in rows])
                lines.append(f"| {family} | {len(rows)} | {shots} | {ncm:.3f} | {lr:.3f} |")
    return "\n".join(lines) + "\n"


def _evaluate(job: tuple[str, str, BaselineConfig, float]) -> dict:
    """One dataset's results, cached in <cache>/baselines/<data name>/ by config, C and features, so a
    long run that stops resumes where it was."""
    dataset_id, data_root, config, c_one_shot = job
    data = load_features(dataset_id, Path(data_root))
    features_sha = hashlib.sha256(data.features.tobytes()).hexdigest()
    key = hashlib.sha256(json.dumps([as_dict(config), c_one_shot, features_sha], default=str).encode()).hexdigest()
    path = cache_dir() / "baselines" / Path(data_root).name / f"{dataset_id.replace('/', '--')}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached["key"] == key:
            return {**cached["result"], "from_cache": True}
    result = evaluate_dataset(data, config, c_one_shot)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "result": result}) + "\n")
    return {**result, "from_cache": False}


def run(config: BaselineConfig, data_root: Path, out_dir: Path, workers: int = 2) -> list[dict]:
    started = time.monotonic()
    datasets = built_datasets(data_root)
    seen_ids = [d for d, p in datasets if p == "seen"]
    calibration = np.random.default_rng(config.seed).permutation(len(seen_ids))[: config.one_shot_calibration_datasets]
    seen = [load_features(seen_ids[i], data_root) for i in sorted(calibration)]
    c_one_shot = one_shot_c(seen, config)
    unseen = [d for d, p in datasets if p == "unseen"]
    jobs = [(d, str(data_root), config, c_one_shot) for d in unseen]
    with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
        results = pool.map(_evaluate, jobs)
    cached = sum(r.pop("from_cache") for r in results)
    wall_s = time.monotonic() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "baselines.json").write_text(json.dumps(
        {"config": as_dict(config), "one_shot_c": c_one_shot, "wall_s": round(wall_s, 1), "datasets_from_cache": cached,
         "results": results}, indent=1) + "\n")
    (out_dir / "BASELINES.md").write_text(markdown(results, config, c_one_shot, wall_s, cached))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="override file under configs/baselines/")
    parser.add_argument("--workers", type=int, default=2, help="processes evaluating datasets in parallel")
    args = parser.parse_args(argv)
    config = load_config(BaselineConfig(), "baselines", args.config)
    out_dir = DATA_DIR if args.config is None else cache_dir() / config.data_name
    results = run(config, cache_dir() / config.data_name, out_dir, args.workers)
    print(f"baselines for {len(results)} unseen datasets written to {out_dir}")
    return 0
