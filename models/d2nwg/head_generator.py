"""Generating classifier heads from a trained checkpoint: support images → encoder → DDIM → VAE decoder.

The sampling loop lives here, apart from training, and uses the shared
scheduler (`ddim.py`) and noise source (`rng.py`) that the TypeScript engine
replays: x_T is `Mulberry32(seed).normals(S·C·L)` reshaped to [S, C, L] (sample,
class, latent), and η > 0 draws its noise from the same stream afterwards.
Classifier-free guidance runs the denoiser on the conditional and the
unconditional batch together: ε = ε_∅ + g (ε_c − ε_∅).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from .ddim import NoiseSchedule, ddim_step, timesteps
from .denoiser import Denoiser, DenoiserConfig
from .head_tokens import TokenNorm, support_basis, unit_rows
from .rng import Mulberry32
from .set_encoder import EncoderConfig, SetEncoder
from .weight_vae import VaeConfig, WeightVae


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    samples: int = 10
    steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0  # 1: plain conditional sampling; > 1 pushes further from the unconditional model
    seed: int = 0
    temperature: float = 1.0  # x_T is scaled by this: < 1 trades diversity for samples nearer the mode


MODEL_PARTS = ("vae", "encoder", "denoiser")


def save_checkpoint(checkpoint: dict, folder: Path) -> list[Path]:
    """Writes one `<part>.pt` per model (its config and weights) and `generator.json` (everything else:
    training config, token normalisation, latent scale, schedule); one file per model keeps each small."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in MODEL_PARTS:
        paths.append(folder / f"{part}.pt")
        torch.save(checkpoint[part], paths[-1])
    rest = {k: v for k, v in checkpoint.items() if k not in MODEL_PARTS}
    paths.append(folder / "generator.json")
    paths[-1].write_text(json.dumps(rest, indent=1) + "\n")
    return paths


def load_checkpoint(folder: Path) -> dict:
    checkpoint = json.loads((folder / "generator.json").read_text())
    for part in MODEL_PARTS:
        checkpoint[part] = torch.load(folder / f"{part}.pt", map_location="cpu")
    return checkpoint


def load_models(checkpoint: dict, make_vae) -> tuple:
    """(vae, encoder, denoiser) rebuilt from a checkpoint's configs and weights, in eval mode;
    `make_vae(config dict)` builds the family's VAE."""
    vae = make_vae(checkpoint["vae"]["config"])
    encoder = SetEncoder(EncoderConfig(**checkpoint["encoder"]["config"]))
    denoiser = Denoiser(DenoiserConfig(**checkpoint["denoiser"]["config"]))
    for model, part in ((vae, "vae"), (encoder, "encoder"), (denoiser, "denoiser")):
        model.load_state_dict(checkpoint[part]["state"])
        model.eval()
    return vae, encoder, denoiser


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

    @torch.no_grad()
    def sample_latents(
        self, class_tokens: torch.Tensor, dataset_token: torch.Tensor, settings: SamplingSettings,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """DDIM from x_T to latents [S, C, L] (unscaled: ready for the VAE decoder)."""
        classes = class_tokens.shape[0]
        x, rng = self.initial_noise(settings.samples, classes, settings.seed)
        if noise is not None:
            x = noise.astype(np.float64)
        x = x * settings.temperature
        s = settings.samples
        guided = settings.guidance != 1.0
        cls = class_tokens[None].expand(s, -1, -1)
        ds = dataset_token[None].expand(s, -1)
        scale = torch.ones(s)
        if guided:
            cls, ds, scale = torch.cat([cls, cls]), torch.cat([ds, ds]), torch.cat([scale, torch.zeros(s)])
        mask = torch.ones(cls.shape[0], classes)
        for t in timesteps(self.schedule, settings.steps):
            latents = torch.from_numpy(x.astype(np.float32))
            if guided:
                latents = torch.cat([latents, latents])
            eps = self.denoiser(latents, torch.full((cls.shape[0],), float(t)), cls, ds, mask, scale).double().numpy()
            if guided:
                eps = eps[s:] + settings.guidance * (eps[:s] - eps[s:])
            x, _ = ddim_step(self.schedule, settings.steps, eps, int(t), x, settings.eta, rng)
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
        rows = n * s
        scale = torch.ones(rows)
        guided = settings.guidance != 1.0
        if guided:
            cls, ds, scale = torch.cat([cls, cls]), torch.cat([ds, ds]), torch.cat([scale, torch.zeros(rows)])
        mask_tokens = torch.ones(cls.shape[0], tokens)
        for t in timesteps(self.schedule, settings.steps):
            latents = torch.from_numpy(x.astype(np.float32))
            if guided:
                latents = torch.cat([latents, latents])
            eps = self.denoiser(latents, torch.full((cls.shape[0],), float(t)), cls, ds, mask_tokens, scale).double().numpy()
            if guided:
                eps = eps[rows:] + settings.guidance * (eps[:rows] - eps[rows:])
            if settings.eta == 0.0:
                x, _ = ddim_step(self.schedule, settings.steps, eps, int(t), x, 0.0, None)
            else:  # each dataset draws its η noise from its own stream, as a separate call would
                x = np.concatenate([ddim_step(self.schedule, settings.steps, eps[b * s : (b + 1) * s], int(t),
                                              x[b * s : (b + 1) * s], settings.eta, rngs[b])[0] for b in range(n)])
        latents = (x / self.latent_scale).astype(np.float32).reshape(n, s, tokens, -1)
        weights, biases = zip(*(self.decode(latents[b], self.basis(supports[b])) for b in range(n)))
        return np.stack(weights), np.stack(biases)
