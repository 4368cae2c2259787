"""What sampling means for either family's generator: its settings, the condition, the denoiser's rows.

Sampling is `ddim.sample_guided`; a family's generator supplies x_T (from the
shared Mulberry32 source, so the engine draws the same) and an ε function
that runs its denoiser on the rows the sampler asks for.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .features import unit_rows
from .set_encoder import SetEncoder


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    samples: int = 10
    steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0  # 1: plain conditional sampling; > 1 pushes further from the unconditional model
    seed: int = 0
    temperature: float = 1.0  # x_T is scaled by this: < 1 trades diversity for samples nearer the mode


@torch.no_grad()
def encode_condition(encoder: SetEncoder, support: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """One dataset through the encoder: per class its features [K_c, D] (any K_c ≥ 1, unit-normalised
    here) → class tokens [C, d], dataset token [d]."""
    classes, images = len(support), max(len(s) for s in support)
    features = np.zeros((1, classes, images, support[0].shape[1]), dtype=np.float32)
    image_mask = np.zeros((1, classes, images), dtype=np.float32)
    for c, s in enumerate(support):
        features[0, c, : len(s)] = unit_rows(s)
        image_mask[0, c, : len(s)] = 1.0
    class_tokens, dataset_token = encoder(torch.from_numpy(features), torch.from_numpy(image_mask), torch.ones(1, classes))
    return class_tokens[0], dataset_token[0]


def rows_of(condition: torch.Tensor, rows: int) -> torch.Tensor:
    """A condition [B, ...] for the `rows` the sampler asks ε of: B, or 2B under guidance (row r is
    conditioned like row r mod B)."""
    return condition if rows == len(condition) else torch.cat([condition] * (rows // len(condition)))
