"""The ε-prediction denoiser (D2NWG §3.3): a transformer over the latent tokens of one network.

Input tokens: each latent token z_i (one head row, or one CNN chunk) mapped to
the model width, plus its condition token through a light adapter (the
encoder itself stays frozen while the denoiser trains, as in the paper's
second stage), plus the timestep embedding; a leading token carries the
dataset token. The cnn family passes `position_ids` ([B, 1 + N]): a learned
embedding per id is added to each token, the leading token's id naming the
architecture (the architecture token) and each CNN chunk's id its layer and
place; all class rows of an arch share one id. Head rows add none, so in
both families permuting classes permutes the output.

Classifier-free guidance (Ho & Salimans 2022): `condition_scale` s ∈ [0, 1]
blends each condition with a learned null embedding, s = 0 being the
unconditional model. Training drops conditions (s = 0) with probability
`condition_dropout`; sampling evaluates s = 1 and s = 0 and mixes
ε = ε_∅ + g (ε_c − ε_∅). The switch is an input, so one exported graph serves both.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .set_encoder import Attention


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    latent_dim: int = 64
    condition_dim: int = 256
    dim: int = 256
    heads: int = 4
    layers: int = 4
    positions: int = 0  # > 0: learned embeddings for position ids (cnn chunks and architecture tokens)
    condition_dropout: float = 0.1


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of float timesteps t [B] → [B, dim] (Vaswani et al. 2017, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attention(h, h, mask)
        return x + self.ff(self.norm2(x))


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.latent_in = nn.Linear(config.latent_dim, d)
        self.class_adapter = nn.Sequential(nn.Linear(config.condition_dim, d), nn.GELU(), nn.Linear(d, d))
        self.dataset_adapter = nn.Sequential(nn.Linear(config.condition_dim, d), nn.GELU(), nn.Linear(d, d))
        self.null_class = nn.Parameter(torch.zeros(d))
        self.null_dataset = nn.Parameter(torch.zeros(d))
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.position = nn.Parameter(torch.zeros(config.positions, d)) if config.positions else None
        self.blocks = nn.ModuleList([Block(d, config.heads) for _ in range(config.layers)])
        self.norm = nn.LayerNorm(d)
        self.latent_out = nn.Linear(d, config.latent_dim)
        nn.init.zeros_(self.latent_out.weight)
        nn.init.zeros_(self.latent_out.bias)

    def forward(
        self,
        latents: torch.Tensor,  # [B, N, latent_dim] noisy latents x_t
        timestep: torch.Tensor,  # [B] float
        class_tokens: torch.Tensor,  # [B, N, condition_dim]: the condition of each latent token
        dataset_token: torch.Tensor,  # [B, condition_dim]
        token_mask: torch.Tensor,  # [B, N] 1 = real token
        condition_scale: torch.Tensor,  # [B] 1 = conditional, 0 = unconditional
        position_ids: torch.Tensor | None = None,  # [B, 1 + N] int64, when config.positions > 0
    ) -> torch.Tensor:  # ε̂ [B, N, latent_dim]
        s = condition_scale[:, None, None]
        cls = s * self.class_adapter(class_tokens) + (1 - s) * self.null_class
        ds = s[:, 0] * self.dataset_adapter(dataset_token) + (1 - s[:, 0]) * self.null_dataset
        time = self.time(timestep_embedding(timestep, self.config.dim))[:, None, :]
        x = self.latent_in(latents) + cls + time
        x = torch.cat([(ds[:, None, :] + time), x], dim=1)
        if self.position is not None:
            if position_ids is None:
                raise ValueError("this denoiser was trained with position ids; pass position_ids")
            x = x + self.position[position_ids]
        mask = torch.cat([torch.ones_like(token_mask[:, :1]), token_mask], dim=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.latent_out(self.norm(x[:, 1:]))
