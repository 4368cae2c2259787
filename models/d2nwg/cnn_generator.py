"""The cnn family's generator: every weight of a small CNN from a dataset's images.

The parts (trained by `train_cnn.py`), and sampling:
  - the β-VAE over CNN tokens (`cnn_tokens.py`): an affine encoder and
    decoder per position id, started from each position's whitened PCA,
    plus a small shared MLP correction told the position by an embedding;
  - the dataset encoder (`set_encoder.py`, on backbone features) and the
    denoiser (`denoiser.py`) with the architecture token and position ids;
    class rows are conditioned on their class token, body chunks on the
    dataset token;
  - `CnnGenerator`: x_T = Mulberry32(seed) normals as [S, T, L], DDIM by
    `ddim.sample_guided`, latents / latent_scale → decoder → named tensors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .checkpoint import load_checkpoint, load_models
from .cnn_tokens import CHUNK, LAYOUTS, POSITIONS, CnnCorpus, CnnNorm
from .cnn_zoo import body_features, class_mean_layer, with_class_means
from .refine import RefineSpec, choose_lambda, refine_head
from .networks import get_arch
from .ddim import EpsFunction, GuidedStep, NoiseSchedule, sample_guided
from .generation import SamplingSettings, encode_condition, rows_of
from .rng import Mulberry32
from .layers import mlp


# ---- VAE ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CnnVaeConfig:
    latent_dim: int = 128
    hidden_dim: int = 256
    position_dim: int = 32
    positions: int = POSITIONS
    chunk: int = CHUNK
    beta: float = 1e-4
    input_noise: float = 1e-3
    latent_noise: float = 5e-2


class PositionLinear(nn.Module):
    """An affine map per position id: x [..., T, d_in], ids [T] → [..., T, d_out]."""

    def __init__(self, positions: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(positions, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(positions, d_out))

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        # Token position as the batch axis of one matmul: [T, N, d_in] @ [T, d_in, d_out]. (A broadcast
        # x[..., T, 1, d_in] @ W[T, d_in, d_out] would copy W once per model: measured 30× slower.)
        tokens, d_in = x.shape[-2], x.shape[-1]
        lead = x.shape[:-2]
        by_token = x.reshape(-1, tokens, d_in).transpose(0, 1) @ self.weight[position_ids]
        return by_token.transpose(0, 1).reshape(*lead, tokens, -1) + self.bias[position_ids]


class CnnTokenDecoder(nn.Module):
    """latents [..., T, L], position ids [T] → tokens [..., T, CHUNK]: a linear decoder per position
    (started from the zoo's principal components) plus a shared MLP correction told the position by
    an embedding. Exported alone as the decoder graph."""

    def __init__(self, config: CnnVaeConfig):
        super().__init__()
        self.linear = PositionLinear(config.positions, config.latent_dim, config.chunk)
        self.position = nn.Embedding(config.positions, config.position_dim)
        self.correction = mlp([config.latent_dim + config.position_dim, config.hidden_dim, config.chunk])
        nn.init.zeros_(self.correction[-1].weight)
        nn.init.zeros_(self.correction[-1].bias)

    def forward(self, latent: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        embedding = self.position(position_ids).expand(*latent.shape[:-1], -1)
        return self.linear(latent, position_ids) + self.correction(torch.cat([latent, embedding], dim=-1))


class CnnVae(nn.Module):
    """β-VAE over CNN tokens. Why per-position linear maps: the zoo's chunks are high-dimensional
    (per position, 128 principal components of 256 keep 0.99 / 0.98 of cnn-s / cnn-w held-out
    accuracy, 64 only 0.88 / 0.83), and one MLP shared by 50 positions reconstructed worse than
    PCA (measured: 73% of the variance at latent 128). So encoder and decoder start as each
    position's whitened PCA and are then trained as a VAE."""

    def __init__(self, config: CnnVaeConfig):
        super().__init__()
        self.config = config
        self.encoder = PositionLinear(config.positions, config.chunk, config.latent_dim)
        self.log_var = nn.Parameter(torch.full((config.positions, config.latent_dim), -4.0))
        self.decoder = CnnTokenDecoder(config)

    @torch.no_grad()
    def init_pca(self, samples: dict[int, np.ndarray]) -> None:
        """samples: position id → tokens [N, CHUNK] seen at that position."""
        k = self.config.latent_dim
        for position, x in samples.items():
            x = x.astype(np.float64)
            mean = x.mean(0)
            _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
            scale = np.maximum(singular[:k], 1e-3 * singular[0]) / np.sqrt(len(x))  # padding-only directions stay finite
            basis = vt[:k]  # [k, CHUNK]
            if len(basis) < k:  # fewer zoo tokens than latent dimensions (tiny configurations): unused dimensions
                basis = np.concatenate([basis, np.zeros((k - len(basis), x.shape[1]))])
                scale = np.concatenate([scale, np.ones(k - len(scale))])
            self.encoder.weight[position] = torch.from_numpy((basis.T / scale).astype(np.float32))
            self.encoder.bias[position] = torch.from_numpy((-(mean @ basis.T) / scale).astype(np.float32))
            self.decoder.linear.weight[position] = torch.from_numpy((basis * scale[:, None]).astype(np.float32))
            self.decoder.linear.bias[position] = torch.from_numpy(mean.astype(np.float32))

    def encode(self, tokens: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(tokens, position_ids), self.log_var[position_ids].expand(*tokens.shape[:-1], -1)

    def loss(self, tokens: torch.Tensor, position_ids: torch.Tensor, value_mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        c = self.config
        noisy = tokens + c.input_noise * torch.randn_like(tokens) * value_mask  # padding stays exactly 0
        mean, log_var = self.encode(noisy, position_ids)
        latent = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean) + c.latent_noise * torch.randn_like(mean)
        recon = self.decoder(latent, position_ids)
        reconstruction = ((recon - tokens).pow(2) * value_mask).sum(-1).mean()
        kl = (-0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(-1)).mean()
        return reconstruction + c.beta * kl, {"reconstruction": float(reconstruction), "kl": float(kl)}


def model_positions(corpus: CnnCorpus, m: int) -> np.ndarray:
    return LAYOUTS[corpus.model_arch[m]].position_ids(10)



# ---- Denoiser conditions ---------------------------------------------------------------------------


def token_conditions(arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor) -> torch.Tensor:
    """[B, C, d], [B, d] → the condition of every token [B, body + C, d]: body chunks get the dataset
    token, class rows their class token."""
    body = dataset_token[:, None, :].expand(-1, LAYOUTS[arch].body_tokens, -1)
    return torch.cat([body, class_tokens], dim=1)


def denoiser_positions(arch: str, classes: int, batch: int) -> torch.Tensor:
    layout = LAYOUTS[arch]
    ids = np.concatenate([[layout.arch_position], layout.position_ids(classes)])
    return torch.from_numpy(ids)[None].expand(batch, -1)


# ---- Generation ---------------------------------------------------------------------------------------


class CnnGenerator:
    def __init__(self, checkpoint: dict):
        self.checkpoint = checkpoint
        self.vae, self.encoder, self.denoiser = load_models(checkpoint, lambda c: CnnVae(CnnVaeConfig(**c)))
        base = checkpoint["vae"].get("base")
        self.norm = CnnNorm({a: {n: tuple(v) for n, v in s.items()} for a, s in checkpoint["norm"].items()},
                            None if base is None else {a: {n: t.numpy() for n, t in b.items()} for a, b in base.items()})
        self.latent_scale = float(checkpoint["latent_scale"])
        self.schedule = NoiseSchedule(**checkpoint["schedule"])

    @staticmethod
    def load(folder: Path) -> "CnnGenerator":
        return CnnGenerator(load_checkpoint(folder))

    def condition(self, support: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class its support features [K_c, D] → class tokens [C, d], dataset token [d]."""
        return encode_condition(self.encoder, support)

    @torch.no_grad()
    def initial_noise(self, arch: str, samples: int, classes: int, seed: int) -> tuple[np.ndarray, Mulberry32]:
        rng = Mulberry32(seed)
        tokens = LAYOUTS[arch].body_tokens + classes
        return rng.normals(samples * tokens * self.denoiser.config.latent_dim).reshape(samples, tokens, -1), rng

    def eps_function(self, arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor, samples: int) -> EpsFunction:
        """The denoiser as `sample_guided` calls it, for `samples` CNNs of `arch` conditioned on one dataset's
        class tokens [C, d] and dataset token [d]."""
        conditions = token_conditions(arch, class_tokens[None], dataset_token[None]).expand(samples, -1, -1)
        dataset_tokens = dataset_token[None].expand(samples, -1)

        @torch.no_grad()
        def eps(x: np.ndarray, t: int, condition_scale: np.ndarray) -> np.ndarray:
            rows, tokens = x.shape[0], x.shape[1]
            return self.denoiser(torch.from_numpy(x.astype(np.float32)), torch.full((rows,), float(t)),
                                 rows_of(conditions, rows), rows_of(dataset_tokens, rows), torch.ones(rows, tokens),
                                 torch.from_numpy(condition_scale), denoiser_positions(arch, class_tokens.shape[0], rows)
                                 ).double().numpy()

        return eps

    def denoise(self, arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor, x: np.ndarray,
                t: int) -> np.ndarray:
        """The conditional ε̂ [S, T, L] (float64) for scaled latents x [S, T, L] at timestep t."""
        return self.eps_function(arch, class_tokens, dataset_token, len(x))(x, t, np.ones(len(x), np.float32))

    @torch.no_grad()
    def sample_latents(self, arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor,
                       settings: SamplingSettings, noise: np.ndarray | None = None,
                       record: Callable[[GuidedStep], None] | None = None) -> np.ndarray:
        """DDIM from x_T = Mulberry32(seed).normals(S·T·L) as [S, T, L] (or `noise`) to latents [S, T, L]
        (unscaled: ready for the decoder); `record` sees every step (the export's parity trace)."""
        x, rng = self.initial_noise(arch, settings.samples, class_tokens.shape[0], settings.seed)
        if noise is not None:
            x = noise.astype(np.float64)
        x = x * settings.temperature
        eps = self.eps_function(arch, class_tokens, dataset_token, len(x))
        x = sample_guided(self.schedule, x, eps, settings.steps, settings.eta, settings.guidance, rng, record)
        return (x / self.latent_scale).astype(np.float32)

    @torch.no_grad()
    def decode(self, arch: str, latents: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Latents [S, T, L] → S CNNs as named tensors."""
        classes = latents.shape[1] - LAYOUTS[arch].body_tokens
        positions = torch.from_numpy(LAYOUTS[arch].position_ids(classes))
        tokens = self.vae.decoder(torch.from_numpy(latents), positions).numpy()
        return [self.norm.to_params(arch, t) for t in tokens]

    @property
    def shared_start(self) -> bool:
        """Whether the body tokens are changes from a base CNN (a shared-start zoo, issue 14)."""
        return self.norm.base is not None

    def generate(self, arch: str, support: list[np.ndarray], settings: SamplingSettings,
                 images: list[np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
        """S CNNs for a dataset given per class its support features [K_c, D]. With `images` (per class
        its support images [K_c, 1, 28, 28]), each CNN's last layer is the class means of its own body's
        penultimate features on them (`cnn_zoo.class_mean_layer`) instead of the decoded class rows."""
        if arch not in LAYOUTS:
            raise KeyError(f"unknown CNN architecture {arch!r}; choose one of {sorted(LAYOUTS)}")
        class_tokens, dataset_token = self.condition(support)
        nets = self.decode(arch, self.sample_latents(arch, class_tokens, dataset_token, settings))
        return nets if images is None else [with_support_means(arch, net, images) for net in nets]


# The last-layer refine (issue 14, the head family's MAP problem on the CNN's penultimate features):
# λ by 3-fold cross-validation over the grid from 3 images a class, each fold's prior the class means of
# its own training images, ties by validation loss; with 1–2 images a class the class means stay (λ 100).
LAST_LAYER_REFINE = RefineSpec({1: 100.0, 2: 100.0}, lambda_grid=(100.0, 10.0, 1.0, 0.1, 0.01, 0.001), cv_min_images=3,
                               cv_prior="fold_reference", cv_score="accuracy_then_loss")


def refined_last_layer(arch: str, params: dict[str, np.ndarray], images: list[np.ndarray],
                       spec: RefineSpec = LAST_LAYER_REFINE) -> tuple[dict[str, np.ndarray], float]:
    """`params` with its last layer refined toward the support (refine.py's MAP problem, the layer as prior
    mean) on its body's penultimate features of per-class images; and the λ the rule chose."""
    net = get_arch(arch)
    last = net.dense[-1].name
    x = np.concatenate(images).astype(np.float32)
    y = np.concatenate([np.full(len(im), c) for c, im in enumerate(images)])
    body = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in params.items()}
    features = body_features(net, body, x).double().numpy()
    prior = (np.asarray(params[f"{last}.weight"], np.float64), np.asarray(params[f"{last}.bias"], np.float64))

    def fold_prior(rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, b = class_mean_layer(torch.from_numpy(rows), labels, len(images))
        return w.double().numpy(), b.double().numpy()

    lam = choose_lambda([prior], features, y, spec, fold_prior)
    weight, bias = refine_head(prior[0], prior[1], features, y, lam, gtol=1e-6)
    return {**params, f"{last}.weight": weight.astype(np.float32), f"{last}.bias": bias.astype(np.float32)}, lam


def with_support_means(arch: str, params: dict[str, np.ndarray], images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """`params` with the last layer from class means of its body's features on per-class images."""
    x = np.concatenate(images).astype(np.float32)
    y = np.concatenate([np.full(len(im), c) for c, im in enumerate(images)])
    body = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in params.items()}
    return {k: v.numpy() for k, v in with_class_means(get_arch(arch), body, x, y, len(images)).items()}
