"""The head family's training corpus: zoo heads as per-class tokens, beside the images of their classes.

A head `weight [C, D]`, `bias [C]` becomes C tokens `[weight[i], bias[i]]`
([C, D + 1]): token i belongs to class i, so any class count works and the
row for class i can be generated from class i's images. Tokens are
normalised with one mean and standard deviation per tensor (weight, bias),
computed over the zoo and written into the manifest.

Support sets are drawn from the train split of each class (the zoo's heads
were trained on train images only); every draw picks one shot count for the
whole task, so the generator learns from 1-shot to many-shot conditions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import safetensors, zoo_store
from .features import draw_support, seen_class_features


@dataclasses.dataclass(frozen=True)
class TokenNorm:
    weight_mean: float
    weight_std: float
    bias_mean: float
    bias_std: float

    @staticmethod
    def fit(weights: np.ndarray, biases: np.ndarray) -> "TokenNorm":
        return TokenNorm(float(weights.mean()), float(weights.std()), float(biases.mean()), float(biases.std()))

    def to_tokens(self, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """weight [..., C, D], bias [..., C] → tokens [..., C, D + 1]."""
        w = (weight - self.weight_mean) / self.weight_std
        b = (bias - self.bias_mean) / self.bias_std
        return np.concatenate([w, b[..., None]], axis=-1).astype(np.float32)

    def to_head(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens [..., C, D + 1] → (weight [..., C, D], bias [..., C])."""
        weight = tokens[..., :-1] * self.weight_std + self.weight_mean
        bias = tokens[..., -1] * self.bias_std + self.bias_mean
        return weight.astype(np.float32), bias.astype(np.float32)


@dataclasses.dataclass
class HeadCorpus:
    """Every zoo head as tokens, and the unit-norm features of every seen image, indexed by class."""

    features: np.ndarray  # [N, D] unit-norm backbone features of all seen images
    class_train: dict[str, np.ndarray]  # class key "dataset#index" → indices into features (train split)
    class_test: dict[str, np.ndarray]  # same, test split
    task_ids: list[str]
    task_classes: list[list[str]]  # per task: class keys in head-row order
    head_task: np.ndarray  # [H] task index of each head
    head_rows: list[dict]  # zoo table rows, one per head
    tokens: list[np.ndarray]  # per head: [C, D + 1] normalised tokens
    norm: TokenNorm

    @property
    def token_dim(self) -> int:
        return self.tokens[0].shape[1]

    def draw_support(self, task: int, shots: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Per class of the task: indices of `shots` train images (fewer when the class has fewer)."""
        return draw_support(self.class_train, self.task_classes[task], shots, rng)

    def heldout(self, task: int) -> tuple[np.ndarray, np.ndarray]:
        """The task's test images: (features [N, D], labels [N] in head-row order)."""
        idx = [self.class_test[key] for key in self.task_classes[task]]
        labels = np.concatenate([np.full(len(i), c) for c, i in enumerate(idx)])
        return self.features[np.concatenate(idx)], labels


def load_head_corpus(zoo_dir: Path, data_root: Path, max_heads: int = 0) -> HeadCorpus:
    rows = zoo_store.read_table(zoo_dir)
    if max_heads:
        rows = rows[:max_heads]
    features, class_train, class_test = seen_class_features(sorted({d for row in rows for d in row["dataset_ids"]}),
                                                            data_root)
    task_index: dict[str, int] = {}
    task_classes: list[list[str]] = []
    head_task, weights, biases = [], [], []
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], []).append(row)
    ordered = []
    for shard, shard_rows in by_shard.items():
        tensors, _ = safetensors.load(zoo_dir / shard)
        for row in shard_rows:
            weights.append(tensors[f"{row['model_id']}/weight"])
            biases.append(tensors[f"{row['model_id']}/bias"])
            if row["task_id"] not in task_index:
                task_index[row["task_id"]] = len(task_classes)
                task_classes.append(list(row["classes"]))
            head_task.append(task_index[row["task_id"]])
            ordered.append(row)
    norm = TokenNorm.fit(np.concatenate([w.ravel() for w in weights]), np.concatenate(biases))
    return HeadCorpus(
        features=features,
        class_train=class_train,
        class_test=class_test,
        task_ids=list(task_index),
        task_classes=task_classes,
        head_task=np.array(head_task),
        head_rows=ordered,
        tokens=[norm.to_tokens(w, b) for w, b in zip(weights, biases)],
        norm=norm,
    )
