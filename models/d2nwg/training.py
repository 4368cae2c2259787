"""Training steps both families share: support batches through the encoder, the condition bank, splits.

A corpus here is either family's (`HeadCorpus`, `CnnCorpus`): what these use
of it is `features`, `task_ids`, `task_classes` and `draw_support`.
"""

from __future__ import annotations

import numpy as np
import torch

from .set_encoder import SetEncoder


def cosine_lr(optimizer: torch.optim.Optimizer, peak: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps, pct_start=0.05)


def split_by_task(model_task: np.ndarray, tasks: int, validation_tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """(training models, validation models): models of the last `validation_tasks` tasks are held out."""
    is_held = np.asarray(model_task) >= tasks - validation_tasks
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def support_batch(corpus, tasks: list[int], rng: np.random.Generator, shots: tuple[int, ...]) -> dict:
    """Packed support images of several tasks, with the scatter indices to pad them to [B, C, K]."""
    draws = [corpus.draw_support(t, int(rng.choice(shots)), rng) for t in tasks]
    classes = max(len(d) for d in draws)
    images = max(len(i) for d in draws for i in d)
    flat, where = [], []
    for b, draw in enumerate(draws):
        for c, idx in enumerate(draw):
            flat.append(idx)
            where.extend((b, c, k) for k in range(len(idx)))
    index = np.concatenate(flat)
    where_t = torch.tensor(where)
    image_mask = torch.zeros(len(tasks), classes, images)
    image_mask[where_t[:, 0], where_t[:, 1], where_t[:, 2]] = 1.0
    class_mask = (image_mask.sum(-1) > 0).float()
    return {"features": torch.from_numpy(corpus.features[index]), "where": where_t, "image_mask": image_mask,
            "class_mask": class_mask, "shape": (len(tasks), classes, images)}


def encode_support(encoder: SetEncoder, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, k = batch["shape"]
    where = batch["where"]
    projected = torch.zeros(b, c, k, encoder.config.dim)
    projected = projected.index_put((where[:, 0], where[:, 1], where[:, 2]), encoder.project(batch["features"]))
    sums = torch.zeros(b, c, batch["features"].shape[1]).index_put(
        (where[:, 0], where[:, 1]), batch["features"], accumulate=True)
    mean = sums / batch["image_mask"].sum(-1, keepdim=True).clamp(min=1.0)
    return encoder.from_projected(projected, mean, batch["image_mask"], batch["class_mask"])


def pad_rows(arrays: list[np.ndarray], length: int) -> torch.Tensor:
    out = np.zeros((len(arrays), length, arrays[0].shape[-1]), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return torch.from_numpy(out)


@torch.no_grad()
def condition_bank(encoder: SetEncoder, corpus, config, rng: np.random.Generator
                   ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Per task, `config.bank_draws` support draws (shot counts from `config.shots`) through the frozen
    encoder: class tokens [C, d], dataset token [d]."""
    class_bank: list[list[np.ndarray]] = [[] for _ in corpus.task_ids]
    dataset_bank: list[list[np.ndarray]] = [[] for _ in corpus.task_ids]
    tasks = list(range(len(corpus.task_ids)))
    for _ in range(config.bank_draws):
        for start in range(0, len(tasks), 64):
            chunk = tasks[start : start + 64]
            class_tokens, dataset_tokens = encode_support(encoder, support_batch(corpus, chunk, rng, config.shots))
            for i, t in enumerate(chunk):
                class_bank[t].append(class_tokens[i, : len(corpus.task_classes[t])].numpy())
                dataset_bank[t].append(dataset_tokens[i].numpy())
    return class_bank, dataset_bank
