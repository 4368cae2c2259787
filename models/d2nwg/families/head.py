"""The head family for the stages: linear heads on backbone features, one row per class.

Its modules: `head_tokens.py` (the zoo as tokens), `train_head.py`,
`head_generator.py` (sampling), `evaluate_head.py`, `export_head.py`, and the
head-only stage `ablate_generator.py`. Settings: `configs/generator/` and
`configs/evaluation/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import evaluate_head, export_head, train_head
from ..baselines import normalise
from ..config import DATA_DIR, cache_dir, load_config
from ..features import built_datasets, load_features
from ..head_generator import HeadGenerator

load = HeadGenerator.load
export = export_head.export


def train(config_name: str | None, folder: Path) -> str:
    config = load_config(train_head.GeneratorConfig(), "generator", config_name)
    summary = train_head.run(config, folder)
    return (f"trained in {summary['timings']['total_s']:.0f} s; "
            f"reconstruction ratio {summary['reconstruction']['ratio']:.4f}")


def evaluate(config_name: str | None, folder: Path) -> list[dict]:
    training = load_config(train_head.GeneratorConfig(), "generator", config_name)
    config = load_config(evaluate_head.EvaluationConfig(), "evaluation", config_name)
    table = DATA_DIR / "baselines.json" if config_name is None else cache_dir() / training.data_name / "baselines.json"
    metrics = evaluate_head.run(config, folder, training.data_name, training.zoo_name, training.max_heads, table)
    return metrics["targets"]


def measure(generator: HeadGenerator, folder: Path, tasks: int, config_name: str | None) -> dict:
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
            w, b = generator.generate(evaluate_head.per_class(x, data, support), evaluate_head.settings(config, 0))
            values.append(float(evaluate_head.accuracies(w, b, x[query], data.labels[query]).mean()))
    return {"unseen_20_shot": float(np.mean(values)), "datasets": len(values)}
