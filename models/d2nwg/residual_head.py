"""A residual head generator (prototype for issue 13, part 2): a closed-form reference head from the
support, and a diffusion model over the residual between a target head and that reference.
Measured in release/head/RESIDUAL_PROTOTYPE.md; not a release stage.

A support is, per class c, its images X_c [k_c, F] (unit-norm backbone features). From it:

  reference   R_c = s · A (μ_c − m),   r_c = −½ s (μ_c − m)ᵀ A (μ_c + m)   (a shrunk LDA head)
              μ_c the class mean, m the mean of class means, A = I − U diag(e / (e + λ)) Uᵀ the shrunk
              inverse of the seen datasets' within-class covariance (top-r eigenpairs U, e), s one scale
              fitted to the zoo (least squares of zoo rows on the reference's rows).
  basis       Q_c [g + K, F]: the top g within-class eigenvectors of the seen data (`global_rank`), then
              the orthonormalised (Gram–Schmidt, in `basis` order, orthogonal to those g) directions of
              the support: "lda" A(μ_c − m), "ncm" μ_c − m, "mean" μ_c, "centre" m, "diag" (μ_c − m)/d²
              (d² the seen within-class variance per coordinate; 0 where d² is 0), "sign" sign(μ_c − m), "pc1", "pc2" the
              top principal directions of the class's own support images (absent below 2 or 3 images),
              "nearest" μ_n − μ_c (n: the class whose mean is nearest). A direction that depends on those
              before it is dropped (a zero row), so Q_c is a function of the support alone.
  residual    a_c = [Q_c (W_c − R_c) / σ_w, (b_c − r_c) / σ_b]   [g + K + 1]   (σ: per coordinate, over
              the training rows): `encode_residual`; `decode_residual` inverts it on span(Q_c).

Two training targets (`runs`): "zoo", the task's zoo heads (the issue's suggestion), and "full", the
reference computed from the task's whole train split (the images its zoo heads were trained on): what
the k-shot reference would be with every image. Measured before training: the zoo heads' projection
onto this basis scores below the reference alone from 5 shots on, the full-split reference's above it.

The denoiser (`ResidualDenoiser`) is a per-class-row MLP over a_c, conditioned on a set encoder over the
class's individual support images (each image as its coordinates in Q_c, its distance to the class
mean and its margins under the class means and under the reference head), class statistics (the
basis's Gram–Schmidt factors, the other classes' means in Q_c), and the shot count. It predicts x₀ or
ε; sampling is DDIM (`ddim.sample_guided`, the factory's sampling loop); x_T = 0 gives the
deterministic path ("latent 0").

Usage (from `models/`, D2NWG_CACHE set):

    /usr/bin/python3 -m d2nwg.residual_head train   [--config NAME]   # <cache>/residual-<name>/*.pt, training.json
    /usr/bin/python3 -m d2nwg.residual_head measure [--config NAME]   # <cache>/residual-<name>/measure.json, table.md

`NAME` is a file under configs/residual/ (default: `prototype`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import as_dict, cache_dir, from_dict, load_config
from .layers import mlp

log = logging.getLogger("d2nwg.residual_head")

BASIS_DIRECTIONS = ("lda", "ncm", "mean", "centre", "diag", "sign", "pc1", "pc2", "nearest")


@dataclasses.dataclass(frozen=True)
class ResidualConfig:
    seed: int = 0
    data_name: str = "data"
    zoo_name: str = "zoo"
    validation_tasks: int = 100  # the last zoo tasks: the release generator's held-out tasks too
    # Reference and basis
    whitening_rank: int = 128
    shrinkage: float = 3e-4  # λ of the reference's A
    basis: tuple[str, ...] = ("lda", "mean", "centre", "diag", "sign", "pc1", "pc2", "nearest")
    global_rank: int = 32  # > 0: the basis starts with the top within-class eigenvectors of the seen data
    # Training bank: per training task, one support draw per shot count
    shots: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    bank_draws: int = 1
    # Denoisers: one per "target:prediction" (target "full": the full-split reference; "zoo": the zoo
    # heads; prediction "x0" or "eps"), all trained on one bank
    # (the release: one run, "full:eps", saved as generator.pt)
    runs: tuple[str, ...] = ("full:eps",)
    hidden: int = 192
    image_hidden: int = 64
    blocks: int = 3
    steps: int = 16000
    batch: int = 256
    lr: float = 1e-3
    train_steps: int = 1000  # diffusion timesteps T
    beta_schedule: str = "linear"
    # Measurement
    measure_shots: tuple[int, ...] = (1, 5, 20)
    measure_draws: int = 2  # support draws per held-out task and shot count
    measure_tasks: int = 0  # 0: every held-out task
    samples: int = 8  # sampled heads per support
    sampling_steps: int = 50
    refine_lambda: float = 0.01
    unseen_datasets: int = 12
    unseen_splits: int = 3
    bootstrap: int = 2000


# ---- reference head and basis -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SeenStatistics:
    """What the reference and the basis use of the seen datasets: the within-class covariance's top
    eigenpairs and its diagonal."""

    eigenvectors: np.ndarray  # U [r, F]
    eigenvalues: np.ndarray  # e [r]
    variance: np.ndarray  # d² [F]: diagonal of the within-class covariance

    def whiten(self, v: np.ndarray, lam: float) -> np.ndarray:
        """A v for v [..., F]: A = I − U diag(e / (e + λ)) Uᵀ (λ (Σ_r + λI)⁻¹ on the top-r space)."""
        shrink = self.eigenvalues / (self.eigenvalues + lam)
        return v - ((v @ self.eigenvectors.T) * shrink) @ self.eigenvectors


def seen_statistics(features: np.ndarray, class_indices: list[np.ndarray], rank: int) -> SeenStatistics:
    """Pooled within-class covariance of unit-norm features (classes with ≥ 2 images)."""
    dim = features.shape[1]
    scatter, count = np.zeros((dim, dim)), 0
    for idx in class_indices:
        if len(idx) > 1:
            x = features[idx].astype(np.float64)
            x -= x.mean(0)
            scatter += x.T @ x
            count += len(idx)
    covariance = scatter / count
    values, vectors = np.linalg.eigh(covariance)
    top = np.argsort(values)[::-1][:rank]
    return SeenStatistics(vectors[:, top].T.astype(np.float32), values[top].astype(np.float32),
                          np.diag(covariance).astype(np.float32))


def gram_schmidt(vectors: np.ndarray, tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """vectors [C, K, F] → (Q [C, K, F] orthonormal rows, with a zero row where a vector lies within
    `tolerance` (relative) of the span of those before it; factors [C, K, K]: vectorsᵢ · Qⱼ of the
    unit-scaled vectors, the upper triangle of R in vectors = Rᵀ Q)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    q = np.zeros_like(unit)
    for k in range(unit.shape[1]):
        v = unit[:, k]
        for j in range(k):  # modified Gram–Schmidt: twice for accuracy in float32
            v = v - (v * q[:, j]).sum(-1, keepdims=True) * q[:, j]
        for j in range(k):
            v = v - (v * q[:, j]).sum(-1, keepdims=True) * q[:, j]
        norm = np.linalg.norm(v, axis=-1, keepdims=True)
        q[:, k] = np.where(norm > tolerance, v / np.maximum(norm, 1e-12), 0.0)
    factors = np.einsum("ckf,cjf->ckj", unit, q)
    return q.astype(np.float32), factors.astype(np.float32)


def principal_directions(images: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    """Top `count` principal directions [C, count, F] of each class's masked images [C, k, F] (zero
    where a class has too few images), each with its largest-magnitude coordinate positive."""
    out = np.zeros((images.shape[0], count, images.shape[2]), np.float32)
    for c in range(images.shape[0]):
        x = images[c, mask[c]].astype(np.float64)  # float64: no float32 noise in a 2-image class's zero singular value
        if len(x) < 2:
            continue
        x = x - x.mean(0)
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        keep = min(count, int((s > 1e-6 * max(s[0], 1e-12)).sum()))
        # An SVD's signs are arbitrary: fix each direction's largest-magnitude coordinate positive, so
        # another implementation (the engine's) gets the same basis.
        top = vt[:keep]
        signs = np.sign(top[np.arange(keep), np.abs(top).argmax(1)])
        out[c, :keep] = top * signs[:, None]
    return out


@dataclasses.dataclass
class Support:
    """One support's reference head, basis and conditions."""

    weight: np.ndarray  # R [C, F]
    bias: np.ndarray  # r [C]
    basis: np.ndarray  # Q [C, K, F]
    factors: np.ndarray  # [C, K, K]
    image_features: np.ndarray  # [C, kmax, P]
    image_mask: np.ndarray  # [C, kmax] bool
    class_features: np.ndarray  # [C, Qc]
    shots: int


def pad_support(support: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-class images → images [C, kmax, F], mask [C, kmax]."""
    kmax = max(len(x) for x in support)
    images = np.zeros((len(support), kmax, support[0].shape[1]), np.float32)
    mask = np.zeros((len(support), kmax), bool)
    for c, x in enumerate(support):
        images[c, : len(x)] = x
        mask[c, : len(x)] = True
    return images, mask


def reference_head(means: np.ndarray, stats: SeenStatistics, shrinkage: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The shrunk-LDA head (module docstring) from class means [..., C, F]: (R [..., C, F], r [..., C])."""
    centre = means.mean(-2, keepdims=True)
    direction = stats.whiten(means - centre, shrinkage)
    weight = scale * direction
    bias = -0.5 * scale * (direction * (means + centre)).sum(-1)
    return weight.astype(np.float32), bias.astype(np.float32)


def basis_vectors(names: tuple[str, ...], means: np.ndarray, images: np.ndarray, mask: np.ndarray,
                  stats: SeenStatistics, shrinkage: float) -> np.ndarray:
    """The named directions [C, K, F] of one support (module docstring)."""
    centre = means.mean(0, keepdims=True)
    diff = means - centre
    vectors = {}
    if "pc1" in names or "pc2" in names:
        pcs = principal_directions(images, mask, 2)
        vectors["pc1"], vectors["pc2"] = pcs[:, 0], pcs[:, 1]
    if "nearest" in names:
        d2 = ((means[:, None] - means[None]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        vectors["nearest"] = means[d2.argmin(1)] - means if len(means) > 1 else np.zeros_like(means)
    make = {"lda": lambda: stats.whiten(diff, shrinkage), "ncm": lambda: diff, "mean": lambda: means,
            "centre": lambda: np.broadcast_to(centre, means.shape),
            "diag": lambda: np.divide(diff, stats.variance, out=np.zeros_like(diff), where=stats.variance > 0),
            "sign": lambda: np.sign(diff)}
    for name in names:
        if name not in vectors:
            if name not in make:
                raise ValueError(f"unknown basis direction {name!r}; choose from {BASIS_DIRECTIONS}")
            vectors[name] = make[name]()
    return np.stack([vectors[n] for n in names], axis=1).astype(np.float32)


def build_support(support: list[np.ndarray], stats: SeenStatistics, config: ResidualConfig, scale: float) -> Support:
    """Reference, basis and conditions of one support (per-class unit-norm images)."""
    images, mask = pad_support(support)
    counts = mask.sum(1)
    means = (images.sum(1) / counts[:, None]).astype(np.float32)
    weight, bias = reference_head(means, stats, config.shrinkage, scale)
    vectors = basis_vectors(config.basis, means, images, mask, stats, config.shrinkage)
    fixed = stats.eigenvectors[: config.global_rank]  # [g, F]
    q, factors = gram_schmidt(vectors - (vectors @ fixed.T) @ fixed)
    q = np.concatenate([np.broadcast_to(fixed, (len(support),) + fixed.shape), q], 1)
    centre = means.mean(0)
    classes = len(support)
    # Per image: its coordinates in the class's basis, distance to the class mean, margins under the
    # class means (cosine) and under the reference head (in units of the reference scale).
    coords = np.einsum("ckf,cjf->ckj", images - centre, q)  # [C, kmax, K]
    spread = np.linalg.norm(images - means[:, None], axis=-1)[..., None]
    unit_means = means / np.maximum(np.linalg.norm(means, axis=-1, keepdims=True), 1e-12)

    def margin(logits: np.ndarray) -> np.ndarray:  # [C, kmax, C] → own − best other [C, kmax, 1]
        own = np.take_along_axis(logits, np.arange(classes)[:, None, None].repeat(logits.shape[1], 1), -1)
        other = np.where(np.eye(classes, dtype=bool)[:, None, :], -np.inf, logits).max(-1, keepdims=True)
        return np.where(np.isfinite(other), own - other, 0.0)

    cos_margin = margin(images @ unit_means.T)
    ref_margin = margin((images @ weight.T + bias) / scale)
    image_features = np.concatenate([coords * 10, spread, cos_margin * 10, ref_margin * 10], -1) * mask[..., None]
    others = np.einsum("nf,ckf->cnk", means - centre, q)  # other classes' centred means in each basis
    other_mask = ~np.eye(classes, dtype=bool)[..., None]
    if classes > 1:
        other_max = np.where(other_mask, others, -np.inf).max(1)
        other_min = np.where(other_mask, others, np.inf).min(1)
        other_mean = (others * other_mask).sum(1) / (classes - 1)
    else:
        other_max = other_min = other_mean = np.zeros((classes, q.shape[1]), np.float32)
    iu = np.triu_indices(factors.shape[1])
    shots = int(counts.min())
    class_features = np.concatenate([
        factors[:, iu[0], iu[1]], other_max * 10, other_min * 10, other_mean * 10,
        np.linalg.norm(means - centre, axis=-1, keepdims=True) * 10,
        np.broadcast_to([math.log(shots), 1 / shots, math.log(classes)], (classes, 3)),
        np.log(counts)[:, None],
    ], -1)
    return Support(weight, bias, q, factors, image_features.astype(np.float32), mask, class_features.astype(np.float32),
                   shots)


# ---- residual coordinates -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResidualScale:
    """Per-coordinate standard deviations of the residual over the training rows."""

    weight: np.ndarray  # [K]
    bias: float

    def vector(self) -> np.ndarray:
        return np.append(self.weight, self.bias).astype(np.float32)


def encode_residual(weight: np.ndarray, bias: np.ndarray, support: Support, scale: ResidualScale) -> np.ndarray:
    """A head (W [..., C, F], b [..., C]) → residual coordinates [..., C, K + 1] over the support's reference."""
    coeffs = np.einsum("...cf,ckf->...ck", weight - support.weight, support.basis)
    return np.concatenate([coeffs / scale.weight, ((bias - support.bias) / scale.bias)[..., None]], -1).astype(np.float32)


def decode_residual(coords: np.ndarray, support: Support, scale: ResidualScale) -> tuple[np.ndarray, np.ndarray]:
    """Residual coordinates [..., C, K + 1] → the head (W [..., C, F], b [..., C])."""
    weight = support.weight + np.einsum("...ck,ckf->...cf", coords[..., :-1] * scale.weight, support.basis)
    bias = support.bias + coords[..., -1] * scale.bias
    return weight.astype(np.float32), bias.astype(np.float32)


def fit_residual_scale(coords: np.ndarray) -> ResidualScale:
    """σ per coordinate of unnormalised residual coordinates [N, K + 1] (a floor keeps fixed-zero ones finite)."""
    std = np.maximum(coords.reshape(-1, coords.shape[-1]).std(0), 1e-6)
    return ResidualScale(std[:-1].astype(np.float32), float(std[-1]))


UNIT = ResidualScale(np.ones(1, np.float32), 1.0)  # broadcasts: coordinates in the head's own units


# ---- targets and the training bank --------------------------------------------------------------------


def full_reference(corpus, task: int, stats: SeenStatistics, config: ResidualConfig, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference head of the task's whole train split (every image its zoo heads were trained on)."""
    means = np.stack([corpus.features[corpus.class_train[key]].mean(0) for key in corpus.task_classes[task]])
    return reference_head(means, stats, config.shrinkage, scale)


def fit_reference_scale(corpus, tasks: np.ndarray, stats: SeenStatistics, config: ResidualConfig,
                        heads_of: dict[int, list[int]]) -> float:
    """s minimising Σ ‖zoo row − s · A(μ_c − m)‖² over the tasks' zoo heads (means of the full train split)."""
    num = den = 0.0
    for t in tasks:
        direction, _ = full_reference(corpus, int(t), stats, config, 1.0)
        for h in heads_of[int(t)]:
            weight, _ = corpus.norm.to_head(corpus.tokens[h])
            num += float((weight * direction).sum())
            den += float((direction * direction).sum())
    return num / den


@dataclasses.dataclass
class Bank:
    """Training rows (one per class of a support draw): conditions and both targets' raw coordinates."""

    image_features: np.ndarray  # [N, kmax, P] float16
    image_mask: np.ndarray  # [N, kmax] bool
    class_features: np.ndarray  # [N, Qc]
    zoo: np.ndarray  # [N, H, K + 1]: the task's H zoo heads (unit scale)
    full: np.ndarray  # [N, K + 1]: the full-train-split reference (unit scale)


def build_bank(corpus, tasks: np.ndarray, stats: SeenStatistics, config: ResidualConfig, scale: float,
               heads_of: dict[int, list[int]], rng: np.random.Generator) -> Bank:
    kmax = max(config.shots)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("image_features", "image_mask", "class_features", "zoo", "full")}
    for i, t in enumerate(tasks):
        t = int(t)
        heads = [corpus.norm.to_head(corpus.tokens[h]) for h in heads_of[t]]
        zoo_w, zoo_b = np.stack([w for w, _ in heads]), np.stack([b for _, b in heads])
        full_w, full_b = full_reference(corpus, t, stats, config, scale)
        for shots in config.shots:
            for _ in range(config.bank_draws):
                support = build_support([corpus.features[idx] for idx in corpus.draw_support(t, shots, rng)], stats, config, scale)
                c, k, p = support.image_features.shape
                padded = np.zeros((c, kmax, p), np.float16)
                padded[:, :k] = support.image_features
                mask = np.zeros((c, kmax), bool)
                mask[:, :k] = support.image_mask
                rows["image_features"].append(padded)
                rows["image_mask"].append(mask)
                rows["class_features"].append(support.class_features)
                rows["zoo"].append(encode_residual(zoo_w, zoo_b, support, UNIT).transpose(1, 0, 2))
                rows["full"].append(encode_residual(full_w, full_b, support, UNIT))
        if i % 500 == 0:
            log.info("bank: %d / %d tasks", i, len(tasks))
    return Bank(**{k: np.concatenate(v) for k, v in rows.items()})


# ---- the denoiser -------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class PlainLayerNorm(nn.Module):
    """Layer normalisation without scale or shift, written out: torch's own (elementwise_affine=False)
    exports to ONNX without the scale input opset 17 requires."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        return centred / (centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()


@dataclasses.dataclass(frozen=True)
class DenoiserShape:
    coords: int  # K + 1
    image_features: int  # P
    class_features: int  # Qc
    hidden: int = 256
    image_hidden: int = 64
    blocks: int = 3
    prediction: str = "x0"


class ResidualDenoiser(nn.Module):
    """Per class row: x_t [B, K + 1], t [B], condition [B, hidden] → x̂₀ or ε̂ [B, K + 1]. The condition
    (`condition`) is a set encoder over the class's support images (per-image MLP, masked mean and max)
    beside the class statistics; it is computed once per support and reused at every DDIM step."""

    def __init__(self, shape: DenoiserShape):
        super().__init__()
        if shape.prediction not in ("x0", "eps"):
            raise ValueError(f"unknown prediction {shape.prediction!r}; choose 'x0' or 'eps'")
        self.shape = shape
        h, hi = shape.hidden, shape.image_hidden
        self.image_net = mlp([shape.image_features, hi, hi])
        self.condition_net = mlp([shape.class_features + 2 * hi, h, h])
        self.time_net = mlp([h, h, h])
        self.input = nn.Linear(shape.coords, h)
        self.norms = nn.ModuleList(PlainLayerNorm() for _ in range(shape.blocks))
        self.films = nn.ModuleList(nn.Linear(h, 2 * h) for _ in range(shape.blocks))
        self.blocks = nn.ModuleList(mlp([h, 2 * h, h]) for _ in range(shape.blocks))
        self.output = nn.Linear(h, shape.coords)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def condition(self, image_features: torch.Tensor, image_mask: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        """image_features [B, k, P], image_mask [B, k], class_features [B, Qc] → [B, hidden]."""
        per_image = self.image_net(image_features)  # [B, k, hi]
        mask = image_mask[..., None].float()
        mean = (per_image * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        top = per_image.masked_fill(mask == 0, -1e4).amax(1)
        return self.condition_net(torch.cat([class_features, mean, top], -1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        context = condition + self.time_net(timestep_embedding(t, self.shape.hidden))
        h = self.input(x)
        for norm, film, block in zip(self.norms, self.films, self.blocks):
            gamma, beta = film(context).chunk(2, -1)
            h = h + block(norm(h) * (1 + gamma) + beta)
        return self.output(h)


# ---- training -----------------------------------------------------------------------------------------


def train_denoiser(bank: Bank, target: str, prediction: str, scale: ResidualScale, config: ResidualConfig,
                   schedule) -> tuple[ResidualDenoiser, list[dict]]:
    """DDPM training (ddim.py eq. (1)) of a denoiser on the bank's `target` ("zoo": one of the task's zoo
    heads at random per row; "full": the full-split reference), x₀- or ε-prediction."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    model = ResidualDenoiser(DenoiserShape(bank.full.shape[-1], bank.image_features.shape[-1], bank.class_features.shape[-1],
                                           config.hidden, config.image_hidden, config.blocks, prediction))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.05)
    alphas = torch.from_numpy(schedule.alphas_cumprod()).float()
    inverse = 1 / scale.vector()
    history, running = [], []
    for step in range(config.steps):
        pick = rng.integers(0, len(bank.full), size=config.batch)
        if target == "zoo":
            raw = bank.zoo[pick, rng.integers(0, bank.zoo.shape[1], size=len(pick))]
        else:
            raw = bank.full[pick]
        x0 = torch.from_numpy(raw * inverse)
        condition = model.condition(torch.from_numpy(bank.image_features[pick].astype(np.float32)),
                                    torch.from_numpy(bank.image_mask[pick]), torch.from_numpy(bank.class_features[pick]))
        t = torch.from_numpy(rng.integers(0, schedule.train_steps, size=len(pick)))
        noise = torch.randn_like(x0)
        a = alphas[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise  # (1)
        out = model(xt, t, condition)
        loss = (out - (x0 if prediction == "x0" else noise)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        running.append(float(loss))
        if step % 500 == 0 or step == config.steps - 1:
            history.append({"step": step, "mse": float(np.mean(running))})
            log.info("%s %s step %d mse %.4f", target, prediction, step, float(np.mean(running)))
            running = []
    return model.eval(), history


# ---- sampling -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class ResidualGenerator:
    """A trained denoiser with what sampling needs: the reference's statistics and scale, the residual's
    normalisation and the noise schedule."""

    model: ResidualDenoiser
    stats: SeenStatistics
    config: ResidualConfig
    reference_scale: float
    residual_scale: ResidualScale
    schedule: object  # ddim.NoiseSchedule
    target: str

    def support(self, images: list[np.ndarray]) -> Support:
        return build_support(images, self.stats, self.config, self.reference_scale)

    @torch.no_grad()
    def condition(self, support: Support) -> torch.Tensor:
        return self.model.condition(torch.from_numpy(support.image_features), torch.from_numpy(support.image_mask),
                                    torch.from_numpy(support.class_features))

    @torch.no_grad()
    def sample(self, support: Support, x_T: np.ndarray, steps: int) -> np.ndarray:
        """DDIM (η = 0) from x_T [S, C, K + 1] to normalised residual coordinates [S, C, K + 1]."""
        from .ddim import sample_guided

        samples, classes, dim = x_T.shape
        condition = self.condition(support).repeat(samples, 1)  # row s·C + c: class c
        alphas = self.schedule.alphas_cumprod()

        def eps_fn(x: np.ndarray, t: int, condition_scale: np.ndarray) -> np.ndarray:
            xt = torch.from_numpy(x.reshape(-1, dim)).float()
            out = self.model(xt, torch.full((len(xt),), t), condition).double().numpy().reshape(x.shape)
            if self.model.shape.prediction == "eps":
                return out
            a = alphas[t]
            return (x - math.sqrt(a) * out) / math.sqrt(1 - a)  # ε from x̂₀, the inverse of (12)

        return sample_guided(self.schedule, x_T.astype(np.float64), eps_fn, steps, 0.0, 1.0, None)

    def initial_noise(self, samples: int, classes: int, seed: int):
        """x_T [S, C, K + 1] = Mulberry32(seed) normals, row-major (the engine's convention), and the stream
        η > 0 continues from."""
        from .rng import Mulberry32

        rng = Mulberry32(seed)
        return rng.normals(samples * classes * self.model.shape.coords).reshape(samples, classes, -1), rng

    def fold_references(self, x: torch.Tensor, y: np.ndarray, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference head of B supports that share labels: rows x [B, n, F] (unit-norm), labels y [n];
        weight [B, C, F] and bias [B, C] as float64 (cross-validation's prior for a fold, `refine.py`)."""
        hot = torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.int64), classes).to(x.dtype)  # [n, C]
        means = (hot.T @ x / hot.sum(0)[:, None]).numpy().astype(np.float32)  # [B, C, F], as build_support
        weight, bias = reference_head(means, self.stats, self.config.shrinkage, self.reference_scale)
        return torch.from_numpy(weight.astype(np.float64)), torch.from_numpy(bias.astype(np.float64))

    def built(self, supports: list) -> list[Support]:
        """Each support (per class [k_c, F] unit-norm images, or already a `Support`) as a `Support`."""
        return [s if isinstance(s, Support) else self.support(s) for s in supports]

    @torch.no_grad()
    def generate_batch(self, supports: list, settings, seeds: list[int],
                       record=None) -> tuple[np.ndarray, np.ndarray]:
        """Heads for many supports (each per class [k_c, F], unit-norm, or a built `Support`, which a caller
        asking for the same supports again can keep): support b from x_T =
        Mulberry32(seeds[b]) normals × temperature, DDIM with the settings' steps and η → weight
        [B, S, C, F], bias [B, S, C]. Every support in one call must have the same class count. The
        residual model has no unconditional mode, so guidance must be 1. `record` sees every DDIM step
        (the export's parity trace)."""
        from .ddim import sample_guided

        if settings.guidance != 1.0:
            raise ValueError("the residual head generator has no unconditional mode: guidance must be 1")
        built = self.built(supports)
        classes = len(built[0].bias)
        if any(len(b.bias) != classes for b in built):
            raise ValueError("generate_batch needs supports with the same class count")
        starts = [self.initial_noise(settings.samples, classes, seed) for seed in seeds]
        x = np.concatenate([noise for noise, _ in starts]) * settings.temperature  # [B·S, C, K + 1]
        condition = torch.cat([self.condition(b).repeat(settings.samples, 1) for b in built])  # row (b, s, c)
        dim = self.model.shape.coords
        alphas = self.schedule.alphas_cumprod()

        def eps_fn(x: np.ndarray, t: int, condition_scale: np.ndarray) -> np.ndarray:
            out = self.model(torch.from_numpy(x.reshape(-1, dim)).float(), torch.full((x.shape[0] * x.shape[1],), t),
                             condition).double().numpy().reshape(x.shape)
            if self.model.shape.prediction == "eps":
                return out
            a = alphas[t]
            return (x - math.sqrt(a) * out) / math.sqrt(1 - a)  # ε from x̂₀, the inverse of (12)

        coords = sample_guided(self.schedule, x.astype(np.float64), eps_fn, settings.steps, settings.eta, 1.0,
                               [rng for _, rng in starts], record)
        coords = coords.reshape(len(built), settings.samples, classes, dim)
        heads = [self.heads(coords[b], built[b]) for b in range(len(built))]
        return np.stack([w for w, _ in heads]), np.stack([b for _, b in heads])

    def reference_heads(self, supports: list) -> tuple[np.ndarray, np.ndarray]:
        """The closed-form reference head of each support (images or a built `Support`): weight [B, C, F],
        bias [B, C]."""
        built = self.built(supports)
        return np.stack([b.weight for b in built]), np.stack([b.bias for b in built])

    @torch.no_grad()
    def conditional_mean(self, support: Support) -> np.ndarray:
        """x̂₀ at t = T − 1 from x_t = 0: ≈ E[a | support] for an x₀-prediction model ([1, C, K + 1])."""
        condition = self.condition(support)
        t = self.schedule.train_steps - 1
        x = torch.zeros(len(condition), self.model.shape.coords)
        return self.model(x, torch.full((len(x),), t), condition).double().numpy()[None]

    def heads(self, coords: np.ndarray, support: Support) -> tuple[np.ndarray, np.ndarray]:
        return decode_residual(coords, support, self.residual_scale)

    def save(self, path: Path) -> None:
        torch.save({"model": self.model.state_dict(), "shape": dataclasses.asdict(self.model.shape),
                    "config": as_dict(self.config), "reference_scale": self.reference_scale,
                    "residual_scale": {"weight": self.residual_scale.weight.tolist(), "bias": self.residual_scale.bias},
                    "stats": {"eigenvectors": self.stats.eigenvectors, "eigenvalues": self.stats.eigenvalues,
                              "variance": self.stats.variance},
                    "schedule": dataclasses.asdict(self.schedule), "target": self.target}, path)

    @staticmethod
    def load(path: Path) -> "ResidualGenerator":
        from .ddim import NoiseSchedule

        state = torch.load(path, weights_only=False)
        model = ResidualDenoiser(DenoiserShape(**state["shape"]))
        model.load_state_dict(state["model"])
        return ResidualGenerator(model.eval(), SeenStatistics(**state["stats"]), from_dict(ResidualConfig, state["config"]),
                                 state["reference_scale"],
                                 ResidualScale(np.asarray(state["residual_scale"]["weight"], np.float32), state["residual_scale"]["bias"]),
                                 NoiseSchedule(**state["schedule"]), state["target"])


# ---- runs ---------------------------------------------------------------------------------------------


def out_dir(name: str) -> Path:
    return cache_dir() / f"residual-{name}"


def load_corpus(config: ResidualConfig):
    from .head_tokens import load_head_corpus

    corpus = load_head_corpus(cache_dir() / config.zoo_name / "heads", cache_dir() / config.data_name)
    heads_of: dict[int, list[int]] = {}
    for h, t in enumerate(corpus.head_task):
        heads_of.setdefault(int(t), []).append(h)
    return corpus, heads_of


def checkpoint_name(run: str, runs: tuple[str, ...]) -> str:
    """The file a run's generator is saved in: `generator.pt` when it is the only run (the release)."""
    return "generator.pt" if len(runs) == 1 else f"{run.replace(':', '-')}.pt"


def train(config: ResidualConfig, folder: Path) -> dict:
    from .ddim import NoiseSchedule
    from .hashing import sha256_file

    torch.set_num_threads(1)
    started = time.monotonic()
    timings: dict[str, float] = {}
    rng = np.random.default_rng(config.seed)
    corpus, heads_of = load_corpus(config)
    tasks = len(corpus.task_ids)
    inputs = {"zoo_table_sha256": sha256_file(cache_dir() / config.zoo_name / "heads" / "models.csv"),
              "heads": len(corpus.tokens), "tasks": tasks, "rows": int(sum(len(t) for t in corpus.tokens))}
    train_tasks = np.arange(tasks - config.validation_tasks)
    timings["load_s"] = time.monotonic() - started
    mark = time.monotonic()
    train_classes = sorted({k for t in train_tasks for k in corpus.task_classes[t]})
    stats = seen_statistics(corpus.features, [corpus.class_train[k] for k in train_classes], config.whitening_rank)
    scale_tasks = rng.choice(train_tasks, min(300, len(train_tasks)), replace=False)
    reference_scale = fit_reference_scale(corpus, scale_tasks, stats, config, heads_of)
    timings["statistics_s"] = time.monotonic() - mark
    mark = time.monotonic()
    bank = build_bank(corpus, train_tasks, stats, config, reference_scale, heads_of, rng)
    timings["bank_s"] = time.monotonic() - mark
    log.info("bank: %d rows, scale %.2f, %.0f s", len(bank.full), reference_scale, timings["bank_s"])
    held_out = [str(t) for t in corpus.task_ids[len(train_tasks):]]
    del corpus
    schedule = NoiseSchedule(train_steps=config.train_steps, beta_schedule=config.beta_schedule)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"config": as_dict(config), "inputs": inputs, "rows": int(len(bank.full)), "reference_scale": reference_scale,
               # the zoo tasks held out of the statistics, the scale and the bank (the evaluation's and demos')
               "validation_tasks": held_out, "runs": {}}
    for run in config.runs:
        target, prediction = run.split(":")
        mark = time.monotonic()
        raw = bank.full if target == "full" else bank.zoo
        residual_scale = fit_residual_scale(raw)
        model, history = train_denoiser(bank, target, prediction, residual_scale, config, schedule)
        generator = ResidualGenerator(model, stats, config, reference_scale, residual_scale, schedule, target)
        generator.save(folder / checkpoint_name(run, config.runs))
        summary["runs"][run] = {"train_s": round(time.monotonic() - mark, 1), "history": history}
    timings["total_s"] = time.monotonic() - started
    summary["timings"] = {k: round(v, 1) for k, v in timings.items()}
    (folder / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# ---- measurement --------------------------------------------------------------------------------------


def mulberry_normals(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    from .rng import Mulberry32

    return Mulberry32(seed).normals(int(np.prod(shape))).reshape(shape)


def refined_accuracies(xs: np.ndarray, ys: np.ndarray, weights: np.ndarray, biases: np.ndarray, xq: np.ndarray,
                       yq: np.ndarray, lam: float) -> np.ndarray:
    """Accuracy on (xq, yq) of every head W [S, C, F], b [S, C] after the MAP refine toward the support
    (`refine.refined_logits`, λ on W and b): [S]."""
    from .refine import refined_logits

    def as64(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    logits = refined_logits(as64(xs)[None], torch.from_numpy(ys)[None], weights.shape[1], as64(weights)[None],
                            as64(biases)[None], torch.full((1, len(weights)), lam, dtype=torch.float64), as64(xq)[None], 1e-4)
    return (logits[0].argmax(-1).numpy() == yq[None]).mean(-1)


def accuracies(weights: np.ndarray, biases: np.ndarray, xq: np.ndarray, yq: np.ndarray) -> np.ndarray:
    """W [S, C, F], b [S, C] → accuracy [S]."""
    return ((np.einsum("nf,scf->snc", xq, weights) + biases[:, None]).argmax(-1) == yq[None]).mean(-1)


def score_support(generators: dict[str, ResidualGenerator], support_images: list[np.ndarray], xq: np.ndarray, yq: np.ndarray,
                  config: ResidualConfig, seed: int, lr_seed: int, targets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """Every method's accuracy on one support (raw and refined): reference, NCM, LR, and per denoiser its
    x_T = 0 decode ("latent0"), its conditional mean (x₀ models), `samples` samples, and, where the
    training target is known (`targets`: W, b [H, C, F], [H, C] per target), its projection ("oracle")."""
    from .baselines import BaselineConfig, choose_c, fit_logistic

    xs = np.concatenate(support_images)
    ys = np.concatenate([np.full(len(x), c) for c, x in enumerate(support_images)])
    classes = len(support_images)
    any_generator = next(iter(generators.values()))
    support = any_generator.support(support_images)
    out: dict = {"shots": support.shots, "classes": classes}
    means = np.stack([x.mean(0) for x in support_images])
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    out["ncm"] = float(accuracies(unit[None], np.zeros((1, classes)), xq, yq)[0])
    c = 1000.0 if support.shots == 1 else choose_c(xs, ys, BaselineConfig(), lr_seed)
    out["lr"] = float((fit_logistic(xs, ys, c).predict(xq) == yq).mean())
    names, weights, biases = ["reference"], [support.weight[None]], [support.bias[None]]
    for run, generator in generators.items():
        x_T = mulberry_normals(seed, (config.samples, classes, support.basis.shape[1] + 1))
        coords = {"latent0": generator.sample(support, np.zeros_like(x_T[:1]), config.sampling_steps),
                  "sampled": generator.sample(support, x_T, config.sampling_steps)}
        if generator.model.shape.prediction == "x0":
            coords["mean"] = generator.conditional_mean(support)
        for method, a in coords.items():
            w, b = generator.heads(a, support)
            names.append(f"{run}/{method}")
            weights.append(w)
            biases.append(b)
        if targets is not None:  # the projection of the target onto the basis: the best these coordinates can do
            tw, tb = targets[generator.target]
            w, b = generator.heads(encode_residual(tw, tb, support, generator.residual_scale), support)
            names.append(f"{run}/oracle")
            weights.append(w)
            biases.append(b)
    sizes = [len(w) for w in weights]
    w_all, b_all = np.concatenate(weights), np.concatenate(biases)
    raw = accuracies(w_all, b_all, xq, yq)
    refined = refined_accuracies(xs, ys, w_all, b_all, xq, yq, config.refine_lambda)
    start = 0
    for name, size in zip(names, sizes):
        out[name] = raw[start : start + size].tolist()
        out[f"{name}+refine"] = refined[start : start + size].tolist()
        start += size
    if targets is not None:
        for target, (tw, tb) in targets.items():
            out[f"target/{target}"] = accuracies(tw, tb, xq, yq).tolist()
    return out


def measure(config: ResidualConfig, name: str) -> dict:
    from .baselines import draw_support, stable_seed
    from .features import built_datasets, load_features, unit_rows

    torch.set_num_threads(1)
    started = time.monotonic()
    folder = out_dir(name)
    generators = {run: ResidualGenerator.load(folder / checkpoint_name(run, config.runs)) for run in config.runs}
    corpus, heads_of = load_corpus(config)
    any_generator = next(iter(generators.values()))
    tasks = list(range(len(corpus.task_ids) - config.validation_tasks, len(corpus.task_ids)))
    tasks = tasks[: config.measure_tasks or len(tasks)]
    rng = np.random.default_rng(config.seed + 7)
    zoo_units = []
    for t in tasks:
        xq, yq = corpus.heldout(t)
        heads = [corpus.norm.to_head(corpus.tokens[h]) for h in heads_of[t]]
        full_w, full_b = full_reference(corpus, t, any_generator.stats, config, any_generator.reference_scale)
        targets = {"zoo": (np.stack([w for w, _ in heads]), np.stack([b for _, b in heads])),
                   "full": (full_w[None], full_b[None])}
        for shots in config.measure_shots:
            for draw in range(config.measure_draws):
                images = [corpus.features[idx] for idx in corpus.draw_support(t, shots, rng)]
                unit = score_support(generators, images, xq, yq, config, stable_seed(config.seed, t, shots, draw) % 2**32,
                                     stable_seed(config.seed, "cv", t, shots, draw), targets)
                zoo_units.append({"task": corpus.task_ids[t], "draw": draw, "requested_shots": shots, **unit})
        if (t - tasks[0]) % 10 == 0:
            log.info("zoo task %d / %d, %.0f s", t - tasks[0] + 1, len(tasks), time.monotonic() - started)
    zoo_s = time.monotonic() - started
    del corpus
    data_root = cache_dir() / config.data_name
    unseen_ids = [d for d, p in built_datasets(data_root) if p == "unseen"]
    pick = unseen_ids[:: max(1, len(unseen_ids) // config.unseen_datasets)][: config.unseen_datasets]
    unseen_units = []
    for dataset_id in pick:
        data = load_features(dataset_id, data_root)
        x = unit_rows(data.features)
        train_idx, query = np.flatnonzero(data.is_train), np.flatnonzero(~data.is_train)
        for shots in config.measure_shots:
            for split in range(config.unseen_splits):
                split_rng = np.random.default_rng(stable_seed(config.seed, dataset_id, shots, split))
                chosen = draw_support(data.labels, train_idx, shots, split_rng)
                if chosen is None:
                    continue
                images = [x[chosen][data.labels[chosen] == c] for c in range(len(data.classes))]
                unit = score_support(generators, images, x[query], data.labels[query], config,
                                     stable_seed(config.seed, dataset_id, shots, split) % 2**32,
                                     stable_seed(config.seed, "cv", split), None)
                unseen_units.append({"dataset": dataset_id, "split": split, "requested_shots": shots, **unit})
        log.info("unseen %s, %.0f s", dataset_id, time.monotonic() - started)
    results = {"config": as_dict(config), "zoo_units": zoo_units, "unseen_units": unseen_units,
               "wall_s": {"zoo": round(zoo_s, 1), "total": round(time.monotonic() - started, 1)}}
    (folder / "measure.json").write_text(json.dumps(results) + "\n")
    (folder / "table.md").write_text(summarise(results, config))
    return results


def bootstrap_interval(values: np.ndarray, clusters: np.ndarray, resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-cluster means and its 95% percentile interval, resampling clusters."""
    keys = np.unique(clusters)
    per = np.array([values[clusters == k].mean() for k in keys])
    rng = np.random.default_rng(seed)
    boot = per[rng.integers(0, len(per), size=(resamples, len(per)))].mean(1)
    return float(per.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def summarise(results: dict, config: ResidualConfig) -> str:
    """The tables of RESIDUAL_PROTOTYPE.md: per shot count, each method's mean accuracy (samples: mean ±
    std over the sample index), raw and refined; then paired differences with bootstrap intervals."""
    lines = []
    for section, cluster_key in (("zoo_units", "task"), ("unseen_units", "dataset")):
        units = results[section]
        if not units:
            continue
        methods = [k for k in units[0] if isinstance(units[0][k], (list, float)) and not k.endswith("+refine")]
        lines += [f"### {section.replace('_units', '')}: {len({u[cluster_key] for u in units})} {cluster_key}s", "",
                  "| method | " + " | ".join(f"{s} shots raw | {s} shots refined" for s in config.measure_shots) + " |",
                  "|---|" + "---|---|" * len(config.measure_shots)]
        for method in methods:
            cells = []
            for shots in config.measure_shots:
                chosen = [u for u in units if u["requested_shots"] == shots]
                for suffix in ("", "+refine"):
                    key = method + suffix
                    if not chosen or key not in chosen[0]:
                        cells.append("")
                        continue
                    values = np.array([np.atleast_1d(u[key]) for u in chosen])  # [units, S]
                    per_sample = values.mean(0)
                    cells.append(f"{per_sample.mean():.4f} ± {per_sample.std():.4f}" if len(per_sample) > 1 and method.endswith("sampled")
                                 else f"{per_sample.mean():.4f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "Paired differences (mean over " + cluster_key + "s, 95% bootstrap interval over " + cluster_key + "s):", "",
                  "| difference | " + " | ".join(f"{s} shots" for s in config.measure_shots) + " |",
                  "|---|" + "---|" * len(config.measure_shots)]
        pairs = []
        for run in config.runs:
            pairs += [(f"{run}/sampled", f"{run}/latent0"), (f"{run}/sampled", "reference"), (f"{run}/latent0", "reference")]
            if run.endswith(":x0"):
                pairs.append((f"{run}/mean", f"{run}/latent0"))
            pairs += [(f"{run}/latent0+refine", "lr"), (f"{run}/sampled+refine", "lr")]
        pairs += [("reference", "lr"), ("reference+refine", "lr"), ("reference+refine", "reference")]
        for a, b in pairs:
            cells = []
            for shots in config.measure_shots:
                chosen = [u for u in units if u["requested_shots"] == shots]
                if not chosen or a not in chosen[0] or b not in chosen[0]:
                    cells.append("")
                    continue
                diff = np.array([np.mean(u[a]) - np.mean(u[b]) for u in chosen])
                clusters = np.array([u[cluster_key] for u in chosen])
                mean, lo, hi = bootstrap_interval(diff, clusters, config.bootstrap, config.seed)
                cells.append(f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")
            lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg.residual_head", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "measure"))
    parser.add_argument("--config", default="prototype", help="override file under configs/residual/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(ResidualConfig(), "residual", args.config)
    if args.command == "train":
        summary = train(config, out_dir(args.config))
        log.info("trained %s in %.0f s", list(summary["runs"]), summary["timings"]["total_s"])
    else:
        results = measure(config, args.config)
        log.info("measured: %s", out_dir(args.config) / "table.md")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
