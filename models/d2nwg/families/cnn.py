"""The cnn family for the stages: every weight of a small CNN (`cnn-s`, `cnn-w`) on 28×28 grayscale.

Its modules: `networks.py` (the CNNs), `cnn_tokens.py` (the zoo as tokens),
`train_cnn.py`, `cnn_generator.py` (the VAE and sampling), `evaluate_cnn.py`,
`export_cnn.py`. Settings: `configs/cnn-generator/` and `configs/cnn-evaluation/`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .. import evaluate_cnn, export_cnn, train_cnn
from ..cnn_generator import CnnGenerator
from ..cnn_tokens import CnnCorpus, load_cnn_corpus
from ..config import cache_dir, load_config
from ..generation import SamplingSettings
from ..networks import predict

load = CnnGenerator.load
export = export_cnn.export


def train(config_name: str | None, folder: Path) -> str:
    config = load_config(train_cnn.CnnGeneratorConfig(), "cnn-generator", config_name)
    result = train_cnn.run(config, folder)
    return f"trained in {result['timings']['total_s']:.0f} s; reconstruction {result['reconstruction']}"


def evaluate(config_name: str | None, folder: Path) -> list[dict]:
    config = load_config(evaluate_cnn.CnnEvaluationConfig(), "cnn-evaluation", config_name)
    return evaluate_cnn.run(config, folder)["targets"]


def measure(generator: CnnGenerator, folder: Path, tasks: int, config_name: str | None) -> dict:
    """What generated CNNs are good for in this release: a fine-tuning start. Per arch, the mean
    accuracy after one epoch of the zoo recipe from generated weights on unseen datasets (the
    evaluation's draws and seeds, so fp32 and a variant differ only by the weight map), and the
    zero-shot accuracy on seen zoo tasks (chance in release 0.1.0, listed for completeness)."""
    config = json.loads((folder / "training.json").read_text())["config"]
    data_root = cache_dir() / config["data_name"]
    corpus = load_cnn_corpus(cache_dir() / config["zoo_name"] / "cnns", data_root, config["max_models"], tuple(config["archs"]))
    rng = np.random.default_rng(0)
    out = {}
    for arch in config["archs"]:
        values = []
        for t in range(0, len(corpus.task_ids), max(1, len(corpus.task_ids) // tasks)):
            x, y = corpus.images(t, data_root)[2:]
            support = [corpus.features[i] for i in corpus.draw_support(t, 20, rng)]
            nets = generator.generate(arch, support, SamplingSettings(samples=5, steps=50, seed=t))
            values.append(float(np.mean([(predict(arch, p, x).argmax(-1) == y).mean() for p in nets])))
        out[f"seen_{arch}"] = float(np.mean(values))
    evaluation = dataclasses.replace(load_config(evaluate_cnn.CnnEvaluationConfig(), "cnn-evaluation", config_name),
                                     finetune_epochs=1)
    finetuned = evaluate_cnn.unseen_section(generator, corpus, evaluation, data_root)
    for arch, summary in finetuned["archs"].items():
        out[f"unseen_finetune_epoch1_{arch}"] = float(summary["generated"]["mean"][1])
        out[f"unseen_finetune_epoch1_{arch}_per_dataset"] = [float(c[1]) for c in summary["generated"]["per_dataset"]]
    out["weights"] = generated_weights(generator, corpus, config["archs"])
    return out


def generated_weights(generator: CnnGenerator, corpus: CnnCorpus, archs: list[str]) -> dict[str, np.ndarray]:
    """Per arch, one generated CNN's flat weights (first task, seed 0): the noise-free comparison of a
    variant with fp32."""
    support = [corpus.features[i] for i in corpus.draw_support(0, 20, np.random.default_rng(0))]
    out = {}
    for arch in archs:
        net = generator.generate(arch, support, SamplingSettings(samples=1, steps=50, seed=0))[0]
        out[arch] = np.concatenate([v.ravel() for _, v in sorted(net.items())])
    return out
