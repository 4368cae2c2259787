"""The head family for the stages: linear heads on backbone features, one row per class.

Its generator is `residual_head.py` (a closed-form reference head from the support plus a DDIM model
over the residual in a per-class basis); its other modules: `evaluate_head.py`, `export_head.py`.
Settings: `configs/residual/` (training) and `configs/evaluation/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import evaluate_head, export_head, residual_head
from ..baselines import normalise
from ..config import DATA_DIR, cache_dir, load_config
from ..features import built_datasets, load_features

CHECKPOINT = "generator.pt"


def load(folder: Path) -> residual_head.ResidualGenerator:
    return residual_head.ResidualGenerator.load(folder / CHECKPOINT)


export = export_head.export


def training_config(config_name: str | None) -> residual_head.ResidualConfig:
    config = load_config(residual_head.ResidualConfig(), "residual", config_name)
    if len(config.runs) != 1:
        raise ValueError(f"a release generator is one run; the config names {list(config.runs)}")
    return config


def train(config_name: str | None, folder: Path) -> str:
    summary = residual_head.train(training_config(config_name), folder)
    (run, result), = summary["runs"].items()
    return f"trained {run} in {summary['timings']['total_s']:.0f} s; last mse {result['history'][-1]['mse']:.4f}"


def evaluate(config_name: str | None, folder: Path) -> list[dict]:
    training = training_config(config_name)
    config = load_config(evaluate_head.EvaluationConfig(), "evaluation", config_name)
    table = DATA_DIR / "baselines.json" if config_name is None else cache_dir() / training.data_name / "baselines.json"
    metrics = evaluate_head.run(config, folder, training.data_name, training.zoo_name, 0, table)
    return metrics["targets"]


def measure(generator: residual_head.ResidualGenerator, folder: Path, tasks: int, config_name: str | None) -> dict:
    """Generated-head accuracy on unseen datasets at 20 shots (the evaluation's first draw of every
    `len / tasks`-th dataset)."""
    config = evaluate_head.EvaluationConfig(samples=5)
    data_root = cache_dir() / json.loads((folder / "training.json").read_text())["config"]["data_name"]
    unseen = [d for d, partition in built_datasets(data_root) if partition == "unseen"]
    values = []
    for dataset_id in unseen[:: max(1, len(unseen) // tasks)]:
        data = load_features(dataset_id, data_root)
        x = normalise(data.features).astype(np.float32)
        for support, _ in evaluate_head.support_draws(data, 20, 1, config.seed):
            query = np.flatnonzero(~data.is_train)
            w, b = generator.generate_batch([evaluate_head.per_class(x, data, support)], evaluate_head.settings(config, 0), [0])
            values.append(float(evaluate_head.accuracies(w[0], b[0], x[query], data.labels[query]).mean()))
    return {"unseen_20_shot": float(np.mean(values)), "datasets": len(values)}
