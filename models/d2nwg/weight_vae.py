"""The β-VAE over weight tokens (D2NWG §3.1): each token (one head row, or one CNN chunk) ↔ one latent.

Encoder and decoder are shared by every token, so a head of any class count is
C independent tokens and the VAE is trivially permutation-equivariant. As in
the paper's anchors, training adds small Gaussian noise to the input tokens
and larger noise to the sampled latents, which makes the decoder tolerant of
the imperfect latents the diffusion model produces.

Loss: ‖x − x̂‖² summed over the token, plus β·KL(q(z|x) ‖ N(0, I)).

Two decoders:
- "plain" (the paper's): latent → MLP → token. For head rows this fails on
  unseen classes, measured: a 64-d latent decoded through a network trained on
  seen rows can only point along directions seen classes used, and a row for
  a new class must point at that class's features. Generated heads scored
  well below nearest-class-mean on unseen datasets.
- "support" (ours, the default): the decoder gets, per token, directions
  computed from the support images (`basis`: the class's unit mean feature μ̂
  and the mean c over classes) and expands them with fixed whitening maps
  W_λ = I − U diag(e / (e + λ)) Uᵀ, where U, e are the top eigenvectors and
  eigenvalues of the within-class feature covariance of the seen datasets
  (a shrunk LDA; measured to beat nearest-class-mean on unseen datasets). The
  latent chooses how to mix them:
      ŵ = Σ_k g_k(z) B_k,   b̂ = b_0(z) + Σ_k h_k(z) (B_k · μ̂),
      B = [μ̂, c, W_λ1 μ̂, W_λ1 c, W_λ2 μ̂, W_λ2 c, v]   (v learned)
  so a decoded row always lies in directions the support defines. The encoder
  sees the token and its projections on B.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class VaeConfig:
    token_dim: int = 1793  # a head row: 1792 weights and the bias
    latent_dim: int = 16
    hidden_dim: int = 256
    beta: float = 1e-4
    input_noise: float = 1e-3  # σ added to normalised tokens while training
    latent_noise: float = 1e-1  # σ added to sampled latents while training
    decoder: str = "support"  # or "plain" (the paper's)
    whitening_rank: int = 128
    shrinkage: tuple[float, ...] = (3e-4, 3e-3)  # λ of each whitening map

    @property
    def feature_dim(self) -> int:
        return self.token_dim - 1

    @property
    def basis_size(self) -> int:
        return 3 + 2 * len(self.shrinkage)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class SupportBasis(nn.Module):
    """basis [..., 2, F] (μ̂, c) → B [..., basis_size, F]."""

    def __init__(self, config: VaeConfig):
        super().__init__()
        self.register_buffer("eigenvectors", torch.zeros(config.whitening_rank, config.feature_dim))  # U [r, F]
        self.register_buffer("shrink", torch.zeros(len(config.shrinkage), config.whitening_rank))  # e / (e + λ)
        self.learned = nn.Parameter(torch.zeros(config.feature_dim))

    def set_whitening(self, eigenvectors: torch.Tensor, eigenvalues: torch.Tensor, shrinkage: tuple[float, ...]) -> None:
        self.eigenvectors.copy_(eigenvectors)
        self.shrink.copy_(torch.stack([eigenvalues / (eigenvalues + lam) for lam in shrinkage]))

    def forward(self, basis: torch.Tensor) -> torch.Tensor:
        vectors = basis  # [..., 2, F]
        coords = vectors @ self.eigenvectors.T  # [..., 2, r]
        whitened = [vectors - (coords * s) @ self.eigenvectors for s in self.shrink]
        learned = self.learned.expand(*basis.shape[:-2], 1, basis.shape[-1])
        return torch.cat([vectors, *whitened, learned], dim=-2)


class WeightVae(nn.Module):
    def __init__(self, config: VaeConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        extra = config.basis_size if config.decoder == "support" else 0
        self.encoder = mlp([config.token_dim + extra, h, h, 2 * config.latent_dim])
        self.decoder = TokenDecoder(config)

    def encode(self, tokens: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [..., token_dim], basis [..., 2, F] → (mean, log variance), each [..., latent_dim]."""
        x = tokens
        if self.config.decoder == "support":
            projections = (self.decoder.basis(basis) @ tokens[..., :-1, None]).squeeze(-1)  # [..., basis_size]
            x = torch.cat([tokens, projections / math.sqrt(self.config.feature_dim)], dim=-1)
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        return mean, log_var.clamp(-12.0, 6.0)

    def forward(self, tokens: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        noisy = tokens + c.input_noise * torch.randn_like(tokens) if self.training else tokens
        mean, log_var = self.encode(noisy, basis)
        latent = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean) if self.training else mean
        if self.training:
            latent = latent + c.latent_noise * torch.randn_like(latent)
        return self.decoder(latent, basis), mean, log_var

    def loss(self, tokens: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        recon, mean, log_var = self(tokens, basis)
        reconstruction = (recon - tokens).pow(2).sum(-1).mean()
        kl = (-0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(-1)).mean()
        total = reconstruction + self.config.beta * kl
        return total, {"reconstruction": float(reconstruction), "kl": float(kl)}


class TokenDecoder(nn.Module):
    """latent [..., latent_dim], basis [..., 2, F] → token [..., token_dim]; exported alone as the VAE
    decoder graph. The plain decoder ignores the basis."""

    def __init__(self, config: VaeConfig):
        super().__init__()
        h = config.hidden_dim
        self.config = config
        if config.decoder == "support":
            self.basis = SupportBasis(config)
            self.net = mlp([config.latent_dim, h, h, 2 * config.basis_size + 1])
            self.coefficient_scale = math.sqrt(config.feature_dim)  # unit basis vectors, token rows of norm ~√F
        elif config.decoder == "plain":
            self.net = mlp([config.latent_dim, h, h, config.token_dim])
        else:
            raise ValueError(f"unknown decoder {config.decoder!r}; choose 'support' or 'plain'")

    def forward(self, latent: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        out = self.net(latent)
        if self.config.decoder == "plain":
            return out
        n = self.config.basis_size
        vectors = self.basis(basis)  # [..., n, F]
        g, h, b0 = out[..., :n], out[..., n : 2 * n], out[..., 2 * n :]
        weight = (g.unsqueeze(-1) * vectors).sum(-2) * self.coefficient_scale
        on_mean = (vectors @ basis[..., 0, :, None]).squeeze(-1)  # B_k · μ̂  [..., n]
        bias = b0 + (h * on_mean).sum(-1, keepdim=True)
        return torch.cat([weight, bias], dim=-1)
