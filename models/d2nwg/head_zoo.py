"""The head zoo: linear classifier heads on backbone features, for many tasks drawn from seen datasets.

A task is 2–20 classes drawn from the seen datasets of one pool family (plus
a share of 5-way tasks for few-shot use), in random order: row i of a head
belongs to class i of its task. A head is `weight [C, D]`, `bias [C]` applied
to L2-normalised backbone features. For each task, several heads are trained
with different seeds on different random subsets of the task's train images,
and each is saved at several late epochs, so the zoo shows the spread of good
solutions rather than one point. Held-out accuracy is measured on the test
images of the task's classes, which no head of the task was trained on.

Heads are trained a chunk of tasks at a time, all at once: weights of a chunk
are one [T, 20, D] tensor, classes beyond a task's count are masked out, so
one batched matmul serves every head of the chunk.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from .features import DatasetFeatures
from .data.spec import derive_seed

MAX_CLASSES = 20


@dataclasses.dataclass(frozen=True)
class HeadRecipe:
    """How every head of the zoo is trained (one fixed recipe)."""

    epochs: int = 60  # full-batch Adam steps
    learning_rate: float = 0.05
    weight_decay: float = 1e-4
    feature_scale: float = 10.0  # unit-norm features × scale: logits reach useful magnitudes
    train_fraction: float = 0.8  # each seed trains on this random share of the task's train images
    snapshots: tuple[int, ...] = (50, 60)  # epochs at which a head is saved
    seeds_per_task: int = 2


@dataclasses.dataclass(frozen=True)
class Task:
    task_id: str
    family: str
    classes: tuple[tuple[str, int], ...]  # (dataset id, class index) in head-row order
    class_names: tuple[str, ...]
    fewshot: bool


def sample_tasks(
    datasets: list[DatasetFeatures], count: int, fewshot_share: float, seed: int, min_classes: int = 2
) -> list[Task]:
    """`count` tasks; each draws its classes from one family, weighted by the family's class count."""
    rng = np.random.default_rng(seed)
    by_family: dict[str, list[tuple[str, int, str]]] = {}
    for data in datasets:
        for index, name in enumerate(data.classes):
            by_family.setdefault(data.family, []).append((data.dataset_id, index, name))
    families = sorted(by_family)
    weights = np.array([len(by_family[f]) for f in families], dtype=float)
    tasks = []
    for t in range(count):
        family = families[rng.choice(len(families), p=weights / weights.sum())]
        pool = by_family[family]
        fewshot = rng.random() < fewshot_share
        upper = min(MAX_CLASSES, len(pool))
        size = min(5, upper) if fewshot else int(rng.integers(min_classes, upper + 1))
        chosen: list[tuple[str, int]] = []
        names: list[str] = []
        for i in rng.permutation(len(pool)):
            dataset_id, index, name = pool[i]
            if name in names:  # one class per name within a family: (family, name) is a class's identity
                continue
            chosen.append((dataset_id, index))
            names.append(name)
            if len(chosen) == size:
                break
        tasks.append(Task(f"head-task-{seed}-{t:05d}", family, tuple(chosen), tuple(names), fewshot))
    return tasks


def task_split(task: Task, features: dict[str, DatasetFeatures], train: bool) -> tuple[np.ndarray, np.ndarray]:
    """The task's images of one split as (unit-norm features [N, D], labels [N] in task order)."""
    xs, ys = [], []
    for label, (dataset_id, index) in enumerate(task.classes):
        data = features[dataset_id]
        mask = (data.labels == index) & (data.is_train if train else ~data.is_train)
        xs.append(data.features[mask])
        ys.append(np.full(int(mask.sum()), label))
    x = np.concatenate(xs).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x, np.concatenate(ys)


def _pad(arrays: list[np.ndarray], length: int, fill: float = 0.0) -> np.ndarray:
    out = np.full((len(arrays), length) + arrays[0].shape[1:], fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def train_heads(
    tasks: list[Task], features: dict[str, DatasetFeatures], recipe: HeadRecipe, seed: int
) -> list[dict]:
    """Trains every (task, seed) head of the chunk at once; returns one record per saved snapshot."""
    started = time.monotonic()
    runs = [(task, s) for task in tasks for s in range(recipe.seeds_per_task)]
    xs, ys, held = [], [], []
    for task, s in runs:
        x, y = task_split(task, features, train=True)
        rng = np.random.default_rng(derive_seed(seed, task.task_id, s))
        keep = rng.permutation(len(y))[: max(len(task.classes), int(round(recipe.train_fraction * len(y))))]
        xs.append(x[keep] * recipe.feature_scale)
        ys.append(y[keep])
        held.append(task_split(task, features, train=False))
    count = np.array([len(y) for y in ys])
    classes = np.array([len(task.classes) for task, _ in runs])
    x = torch.from_numpy(_pad(xs, count.max()))  # [R, N, D]
    y = torch.from_numpy(_pad([y.astype(np.int64) for y in ys], count.max()))  # [R, N]
    sample_mask = torch.from_numpy(np.arange(count.max())[None, :] < count[:, None]).float()
    class_mask = torch.from_numpy(np.arange(MAX_CLASSES)[None, :] < classes[:, None])  # [R, 20]
    generator = torch.Generator().manual_seed(derive_seed(seed, "init", runs[0][0].task_id) % 2**63)
    dim = x.shape[-1]
    weight = (torch.randn(len(runs), MAX_CLASSES, dim, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(len(runs), MAX_CLASSES, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    snapshots = {}
    for epoch in range(1, recipe.epochs + 1):
        logits = torch.einsum("rnd,rcd->rnc", x, weight) + bias[:, None, :]
        logits = logits.masked_fill(~class_mask[:, None, :], -1e9)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [R, N]
        loss = ((loss * sample_mask).sum(1) / sample_mask.sum(1)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if epoch in recipe.snapshots:
            snapshots[epoch] = (weight.detach().clone(), bias.detach().clone())
    wall_s = (time.monotonic() - started) / len(runs)
    records = []
    for r, (task, s) in enumerate(runs):
        c = len(task.classes)
        for epoch, (w_all, b_all) in snapshots.items():
            # Stored for unit-norm features: the training scale is folded into the weights.
            w = (w_all[r, :c] * recipe.feature_scale).numpy()
            b = b_all[r, :c].numpy()
            x_train, y_train = xs[r] / recipe.feature_scale, ys[r]
            x_held, y_held = held[r]
            records.append({
                "model_id": f"{task.task_id}-s{s}-e{epoch}",
                "task": task,
                "seed": s,
                "epoch": epoch,
                "weight": w.astype(np.float32),
                "bias": b.astype(np.float32),
                "train_accuracy": float(((x_train @ w.T + b).argmax(1) == y_train).mean()),
                "heldout_accuracy": float(((x_held @ w.T + b).argmax(1) == y_held).mean()),
                "train_images": int(len(y_train)),
                "heldout_images": int(len(y_held)),
                "wall_s": wall_s,
            })
    return records
