"""The dataset encoder (D2NWG §3.2): per-class image features → class tokens and one dataset token.

Blocks from the Set Transformer (Lee et al., ICML 2019), pre-LayerNorm:
    MAB(X, Y) = H + FF(LN(H)),  H = X + Attention(LN(X), LN(Y))          (multihead attention block)
    SAB(X)    = MAB(X, X)                                                 (self-attention)
    ISAB(X)   = MAB(X, MAB(I, X)),  I learned inducing points            (linear in |X|)
    PMA(X)    = MAB(S, X),  S learned seeds                               (pooling by attention)

Intra-class: the images of one class → ISAB → PMA → one class embedding,
plus a linear map of the class's mean feature (the strongest single summary
of a class; the attention path refines it). Inter-class: SAB layers over the
class embeddings let each class token see the others, so a class row can be
discriminative; PMA over them gives the dataset token. No positional
encodings anywhere: permuting the classes permutes the class tokens.

Masks: `image_mask [B, C, K]` marks real images (classes may have different
counts), `class_mask [B, C]` marks real classes.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

NEG = -1e9  # masked attention logit (finite, so an all-masked row stays finite)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    feature_dim: int = 1792
    dim: int = 256
    heads: int = 4
    inducing_points: int = 8  # 0: a per-image feed-forward instead of an ISAB
    inter_layers: int = 2
    latent_dim: int = 64  # of the VAE latents the class tokens are aligned with


class Attention(nn.Module):
    """Multihead attention written with matmuls, so the exported graph is plain ONNX ops."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x [..., Nq, dim] attends to y [..., Nk, dim]; key_mask [..., Nk] (1 = real)."""
        *lead, nq, dim = x.shape
        nk = y.shape[-2]
        h, hd = self.heads, dim // self.heads
        q = self.q(x).reshape(*lead, nq, h, hd).transpose(-2, -3)  # [..., h, Nq, hd]
        k, v = self.kv(y).reshape(*lead, nk, 2, h, hd).unbind(-3)
        k, v = k.transpose(-2, -3), v.transpose(-2, -3)  # [..., h, Nk, hd]
        logits = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [..., h, Nq, Nk]
        if key_mask is not None:
            logits = logits + (1.0 - key_mask.unsqueeze(-2).unsqueeze(-2)) * NEG
        out = logits.softmax(-1) @ v  # [..., h, Nq, hd]
        return self.out(out.transpose(-2, -3).reshape(*lead, nq, dim))


class Mab(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_x, self.norm_y, self.norm_h = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        h = x + self.attention(self.norm_x(x), self.norm_y(y), key_mask)
        return h + self.ff(self.norm_h(h))


class Isab(nn.Module):
    def __init__(self, dim: int, heads: int, points: int):
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(points, dim) * 0.02)
        self.to_points, self.from_points = Mab(dim, heads), Mab(dim, heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        points = self.inducing.expand(*x.shape[:-2], *self.inducing.shape)
        h = self.to_points(points, x, mask)
        return self.from_points(x, h, None)


class RowFeedForward(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + self.ff(self.norm(x))


class Pma(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.seed = nn.Parameter(torch.randn(1, dim) * 0.02)
        self.mab = Mab(dim, heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # [..., N, dim] → [..., dim]
        return self.mab(self.seed.expand(*x.shape[:-2], 1, x.shape[-1]), x, mask).squeeze(-2)


class SetEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.project = nn.Linear(config.feature_dim, d)
        self.mean_skip = nn.Linear(config.feature_dim, d)
        # ISAB lets a class's images attend to each other before pooling; with no inducing points a
        # per-image feed-forward (the Set Transformer's rFF encoder) is used instead: far cheaper per image.
        self.intra = Isab(d, config.heads, config.inducing_points) if config.inducing_points else RowFeedForward(d)
        self.intra_pool = Pma(d, config.heads)
        self.inter = nn.ModuleList([Mab(d, config.heads) for _ in range(config.inter_layers)])
        self.dataset_pool = Pma(d, config.heads)
        self.norm = nn.LayerNorm(d)
        # Alignment heads (§3.2): class token and VAE latent mapped into one space for the contrastive loss.
        self.align_class = nn.Linear(d, d)
        self.align_latent = nn.Sequential(nn.Linear(config.latent_dim, d), nn.GELU(), nn.Linear(d, d))

    def forward(
        self, features: torch.Tensor, image_mask: torch.Tensor, class_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, C, K, F] (unit-norm) → class tokens [B, C, dim], dataset token [B, dim]."""
        count = image_mask.sum(-1, keepdim=True).clamp(min=1.0)  # [B, C, 1]
        mean = (features * image_mask.unsqueeze(-1)).sum(-2) / count
        return self.from_projected(self.project(features), mean, image_mask, class_mask)

    def from_projected(
        self, projected: torch.Tensor, mean: torch.Tensor, image_mask: torch.Tensor, class_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of forward(), from projected images [B, C, K, dim] and class mean features [B, C, F].

        Training projects only the real images (packed) and scatters them, instead of padding first.
        """
        mean = mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        x = self.intra(projected, image_mask)
        classes = self.intra_pool(x, image_mask) + self.mean_skip(mean)  # [B, C, dim]
        for block in self.inter:
            classes = block(classes, classes, class_mask)
        classes = self.norm(classes)
        return classes, self.dataset_pool(classes, class_mask)

    def alignment_loss(
        self, class_tokens: torch.Tensor, latents: torch.Tensor, class_mask: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        """Symmetric InfoNCE (CLIP) between every real class token and its row's VAE latent in the batch."""
        keep = class_mask.bool()
        a = nn.functional.normalize(self.align_class(class_tokens[keep]), dim=-1)
        b = nn.functional.normalize(self.align_latent(latents[keep]), dim=-1)
        logits = a @ b.T / temperature
        target = torch.arange(len(a))
        return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
