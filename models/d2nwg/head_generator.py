"""Generating classifier heads from a trained checkpoint: support images → encoder → DDIM → VAE decoder.

The sampling loop is `ddim.sample_guided`, the one the TypeScript engine
replays: x_T is `Mulberry32(seed).normals(S·C·L)` reshaped to [S, C, L] (sample,
class, latent), and η > 0 draws its noise from the same stream afterwards.
Classifier-free guidance runs the denoiser on the conditional and the
unconditional batch together: ε = ε_∅ + g (ε_c − ε_∅).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import load_checkpoint, load_models
from .ddim import EpsFunction, GuidedStep, NoiseSchedule, sample_guided
from .features import unit_rows
from .generation import SamplingSettings, encode_condition, rows_of
from .head_tokens import TokenNorm, support_basis
from .rng import Mulberry32
from .weight_vae import VaeConfig, WeightVae


class HeadGenerator:
    def __init__(self, checkpoint: dict):
        self.checkpoint = checkpoint
        self.vae, self.encoder, self.denoiser = load_models(checkpoint, lambda c: WeightVae(VaeConfig(**c)))
        self.norm = TokenNorm(**checkpoint["token_norm"])
        self.latent_scale = float(checkpoint["latent_scale"])
        self.schedule = NoiseSchedule(**checkpoint["schedule"])

    @staticmethod
    def load(folder: Path) -> "HeadGenerator":
        return HeadGenerator(load_checkpoint(folder))

    def condition(self, support: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class, its support features [K_c, D] (any K_c ≥ 1) → class tokens [C, d], dataset token [d]."""
        return encode_condition(self.encoder, support)

    def initial_noise(self, samples: int, classes: int, seed: int) -> tuple[np.ndarray, Mulberry32]:
        rng = Mulberry32(seed)
        latent = self.denoiser.config.latent_dim
        return rng.normals(samples * classes * latent).reshape(samples, classes, latent), rng

    def eps_function(self, class_tokens: torch.Tensor, dataset_tokens: torch.Tensor) -> EpsFunction:
        """The denoiser as `sample_guided` calls it, for heads conditioned on class tokens [B, C, d] and
        dataset tokens [B, d]."""

        @torch.no_grad()
        def eps(x: np.ndarray, t: int, condition_scale: np.ndarray) -> np.ndarray:
            rows, tokens = x.shape[0], x.shape[1]
            return self.denoiser(torch.from_numpy(x.astype(np.float32)), torch.full((rows,), float(t)),
                                 rows_of(class_tokens, rows), rows_of(dataset_tokens, rows), torch.ones(rows, tokens),
                                 torch.from_numpy(condition_scale)).double().numpy()

        return eps

    @torch.no_grad()
    def sample_latents(
        self, class_tokens: torch.Tensor, dataset_token: torch.Tensor, settings: SamplingSettings,
        noise: np.ndarray | None = None, record: Callable[[GuidedStep], None] | None = None,
    ) -> np.ndarray:
        """DDIM from x_T (or `noise`) to latents [S, C, L] (unscaled: ready for the VAE decoder);
        `record` sees every step (the export's parity trace)."""
        x, rng = self.initial_noise(settings.samples, class_tokens.shape[0], settings.seed)
        if noise is not None:
            x = noise.astype(np.float64)
        x = x * settings.temperature
        s = len(x)
        eps = self.eps_function(class_tokens[None].expand(s, -1, -1), dataset_token[None].expand(s, -1))
        x = sample_guided(self.schedule, x, eps, settings.steps, settings.eta, settings.guidance, rng, record)
        return (x / self.latent_scale).astype(np.float32)

    @staticmethod
    def basis(support: list[np.ndarray]) -> np.ndarray:
        """The decoder's support directions [C, 2, D] from per-class features."""
        return support_basis(np.stack([unit_rows(s).mean(0) for s in support]))

    @torch.no_grad()
    def decode(self, latents: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latents [S, C, L] and support directions [C, 2, D] → heads: weight [S, C, D], bias [S, C]
        (for unit-norm features)."""
        b = torch.from_numpy(basis)[None].expand(latents.shape[0], -1, -1, -1)
        tokens = self.vae.decoder(torch.from_numpy(latents), b).numpy()
        return self.norm.to_head(tokens)

    def generate(self, support: list[np.ndarray], settings: SamplingSettings) -> tuple[np.ndarray, np.ndarray]:
        class_tokens, dataset_token = self.condition(support)
        return self.decode(self.sample_latents(class_tokens, dataset_token, settings), self.basis(support))

    @torch.no_grad()
    def generate_batch(self, supports: list[list[np.ndarray]], settings: SamplingSettings, seeds: list[int],
                       chunk: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """`generate` for many datasets of the same class count at once, dataset b with seed seeds[b]:
        weight [B, S, C, D], bias [B, S, C]. Equal to B separate calls (up to float rounding); one
        denoiser call per step serves every dataset, which is what makes evaluation affordable."""
        classes = len(supports[0])
        if any(len(s) != classes for s in supports):
            raise ValueError("generate_batch needs datasets with the same class count")
        weights, biases = [], []
        per_chunk = max(1, chunk // settings.samples)
        for start in range(0, len(supports), per_chunk):
            part, part_seeds = supports[start : start + per_chunk], seeds[start : start + per_chunk]
            w, b = self._generate_chunk(part, settings, part_seeds)
            weights.append(w)
            biases.append(b)
        return np.concatenate(weights), np.concatenate(biases)

    @staticmethod
    def token_conditions(class_tokens: torch.Tensor, dataset_tokens: torch.Tensor) -> torch.Tensor:
        """The condition of each latent token [B, N, d]: a head row's is its class token (the ablation
        of whole-model flattening overrides this with one token per head)."""
        return class_tokens

    def _generate_chunk(self, supports: list[list[np.ndarray]], settings: SamplingSettings, seeds: list[int]):
        n, s, classes = len(supports), settings.samples, len(supports[0])
        images = max(len(x) for support in supports for x in support)
        dim = supports[0][0].shape[1]
        features = np.zeros((n, classes, images, dim), np.float32)
        mask = np.zeros((n, classes, images), np.float32)
        for b, support in enumerate(supports):
            for c, x in enumerate(support):
                features[b, c, : len(x)] = unit_rows(x)
                mask[b, c, : len(x)] = 1.0
        class_tokens, dataset_tokens = self.encoder(torch.from_numpy(features), torch.from_numpy(mask), torch.ones(n, classes))
        class_tokens = self.token_conditions(class_tokens, dataset_tokens)
        tokens = class_tokens.shape[1]  # latent tokens per head: one per class row
        starts = [self.initial_noise(s, tokens, seed) for seed in seeds]
        x = np.concatenate([noise for noise, _ in starts]) * settings.temperature  # [n·s, C, L]
        rngs = [rng for _, rng in starts]
        cls = class_tokens.repeat_interleave(s, dim=0)
        ds = dataset_tokens.repeat_interleave(s, dim=0)
        # Each dataset draws its η noise from its own stream, as a separate call would.
        x = sample_guided(self.schedule, x, self.eps_function(cls, ds), settings.steps, settings.eta, settings.guidance,
                          rngs)
        latents = (x / self.latent_scale).astype(np.float32).reshape(n, s, tokens, -1)
        weights, biases = zip(*(self.decode(latents[b], self.basis(supports[b])) for b in range(n)))
        return np.stack(weights), np.stack(biases)
