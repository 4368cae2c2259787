"""The cnn family's generator: every weight of a small CNN from a dataset's images.

Same method and shared parts as the head family (`train_generator.py`):
  1. β-VAE over CNN tokens (`cnn_tokens.py`): one shared MLP encoder and
     decoder, each told the token's position id by a learned embedding;
     small noise on inputs, larger on sampled latents.
  2. Dataset encoder (`set_encoder.py`, on backbone features of the images)
     aligned contrastively with the class-row latents.
  3. Condition bank: frozen encoder tokens of several support draws per task.
  4. Denoiser (`denoiser.py`) over all tokens of one CNN, ε-prediction, with
     the architecture token and position ids; class rows are conditioned on
     their class token, body chunks on the dataset token.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg train-generator --family cnn [--config NAME]

Writes `release/cnn/` (with `--config NAME`: `<cache>/generator-NAME/cnn/`):
`vae.pt`, `encoder.pt`, `denoiser.pt`, `generator.json`, `training.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cnn_tokens import CHUNK, LAYOUTS, POSITIONS, CnnCorpus, CnnNorm, cnn_accuracy, load_cnn_corpus
from .config import as_dict, cache_dir
from .ddim import NoiseSchedule, ddim_step, timesteps
from .denoiser import Denoiser, DenoiserConfig
from .hashing import sha256_file
from .head_generator import SamplingSettings, encode_condition, load_checkpoint, load_models, save_checkpoint
from .rng import Mulberry32
from .set_encoder import EncoderConfig, SetEncoder
from .train_generator import cosine_lr, encode_support, model_entries, pad_rows, split_by_task, support_batch
from .weight_vae import mlp

log = logging.getLogger("d2nwg.cnn_generator")


@dataclasses.dataclass(frozen=True)
class CnnGeneratorConfig:
    seed: int = 0
    data_name: str = "data"
    zoo_name: str = "zoo"
    archs: tuple[str, ...] = ("cnn-s", "cnn-w")
    max_models: int = 0  # 0: every CNN of the zoo
    validation_tasks: int = 8  # zoo tasks (both archs) kept out of training, to measure reconstruction
    shots: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    # VAE
    latent_dim: int = 128
    vae_hidden: int = 256
    position_dim: int = 32
    beta: float = 1e-4
    input_noise: float = 1e-3
    latent_noise: float = 5e-2
    vae_steps: int = 2000
    vae_batch: int = 2048  # tokens per step (whole CNNs of one arch)
    vae_lr: float = 1e-4
    # Encoder alignment
    encoder_dim: int = 256
    align_steps: int = 1000
    align_tasks: int = 24
    align_lr: float = 5e-4
    align_temperature: float = 0.1
    # Condition bank and denoiser
    bank_draws: int = 4
    denoiser_dim: int = 256
    denoiser_layers: int = 4
    denoiser_steps: int = 12000
    denoiser_batch: int = 32  # CNNs per step (up to 46 tokens each): 0.2 s a step on 2 cores
    denoiser_lr: float = 5e-4
    condition_dropout: float = 0.1
    train_steps: int = 1000
    beta_schedule: str = "linear"


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


def train_vae(corpus: CnnCorpus, models: np.ndarray, config: CnnGeneratorConfig) -> tuple[CnnVae, list[dict]]:
    vae = CnnVae(CnnVaeConfig(latent_dim=config.latent_dim, hidden_dim=config.vae_hidden, position_dim=config.position_dim,
                              beta=config.beta, input_noise=config.input_noise, latent_noise=config.latent_noise))
    by_arch = {arch: np.array([m for m in models if corpus.model_arch[m] == arch]) for arch in sorted(set(corpus.model_arch))}
    samples: dict[int, list[np.ndarray]] = {}
    for arch, chosen in by_arch.items():
        stacked = np.stack([corpus.tokens[m] for m in chosen])  # [M, T, CHUNK]
        for t, position in enumerate(LAYOUTS[arch].position_ids(10)):
            samples.setdefault(int(position), []).append(stacked[:, t])
    vae.init_pca({p: np.concatenate(x) for p, x in samples.items()})
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    schedule = cosine_lr(optimizer, config.vae_lr, max(config.vae_steps, 1))
    rng = np.random.default_rng(config.seed + 1)
    archs = sorted(by_arch)
    history = []
    for step in range(config.vae_steps):
        arch = archs[step % len(archs)]
        layout = LAYOUTS[arch]
        pick = rng.choice(by_arch[arch], size=max(1, config.vae_batch // (layout.body_tokens + 10)))
        tokens = torch.from_numpy(np.stack([corpus.tokens[m] for m in pick]))
        loss, parts = vae.loss(tokens, torch.from_numpy(layout.position_ids(10)), torch.from_numpy(layout.value_mask(10)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == config.vae_steps - 1:
            history.append({"step": step, **parts})
            log.info("vae step %d %s", step, parts)
    return vae.eval(), history


@torch.no_grad()
def encode_models(vae: CnnVae, corpus: CnnCorpus) -> list[np.ndarray]:
    out: list[np.ndarray] = [np.empty(0)] * len(corpus.tokens)
    for arch in sorted(set(corpus.model_arch)):
        models = [m for m in range(len(corpus.tokens)) if corpus.model_arch[m] == arch]
        positions = torch.from_numpy(LAYOUTS[arch].position_ids(10))
        for start in range(0, len(models), 512):
            part = models[start : start + 512]
            means = vae.encode(torch.from_numpy(np.stack([corpus.tokens[m] for m in part])), positions)[0].numpy()
            for m, mean in zip(part, means):
                out[m] = mean
    return out


@torch.no_grad()
def reconstruction_report(vae: CnnVae, corpus: CnnCorpus, models: np.ndarray, data_root: Path) -> dict:
    """Held-out accuracy of zoo CNNs and of their VAE reconstructions, on tasks the VAE never saw."""
    per_arch: dict[str, dict[str, list[float]]] = {}
    images: dict[int, tuple] = {}
    for m in models:
        task, arch = int(corpus.model_task[m]), corpus.model_arch[m]
        if task not in images:
            images[task] = corpus.images(task, data_root)[2:]
        x, y = images[task]
        positions = torch.from_numpy(model_positions(corpus, m))
        latent = vae.encode(torch.from_numpy(corpus.tokens[m]), positions)[0]
        recon = vae.decoder(latent, positions).numpy()
        entry = per_arch.setdefault(arch, {"original": [], "reconstructed": []})
        entry["original"].append(cnn_accuracy(arch, corpus.norm.to_params(arch, corpus.tokens[m]), x, y))
        entry["reconstructed"].append(cnn_accuracy(arch, corpus.norm.to_params(arch, recon), x, y))
    out = {}
    for arch, entry in sorted(per_arch.items()):
        o, r = np.mean(entry["original"]), np.mean(entry["reconstructed"])
        out[arch] = {"models": len(entry["original"]), "original_accuracy": float(o), "reconstructed_accuracy": float(r),
                     "ratio": float(r / o)}
    return out


# ---- Encoder ------------------------------------------------------------------------------------------


def train_encoder(corpus: CnnCorpus, latents: list[np.ndarray], models: np.ndarray, config: CnnGeneratorConfig,
                  rng: np.random.Generator) -> tuple[SetEncoder, list[dict]]:
    """Class tokens aligned (symmetric InfoNCE) with the latents of the class rows of the tasks' CNNs."""
    encoder = SetEncoder(EncoderConfig(feature_dim=corpus.features.shape[1], dim=config.encoder_dim,
                                       inducing_points=0, latent_dim=config.latent_dim))
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.align_lr, weight_decay=1e-4)
    schedule = cosine_lr(optimizer, config.align_lr, config.align_steps)
    history = []
    for step in range(config.align_steps):
        chosen = rng.choice(models, size=config.align_tasks, replace=False)
        batch = support_batch(corpus, [int(corpus.model_task[m]) for m in chosen], rng, config.shots)
        class_tokens, _ = encode_support(encoder, batch)
        rows = [latents[m][LAYOUTS[corpus.model_arch[m]].body_tokens :] for m in chosen]
        loss = encoder.alignment_loss(class_tokens, pad_rows(rows, batch["shape"][1]), batch["class_mask"],
                                      config.align_temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == config.align_steps - 1:
            history.append({"step": step, "contrastive": float(loss)})
            log.info("align step %d loss %.4f", step, float(loss))
    return encoder.eval(), history


@torch.no_grad()
def condition_bank(encoder: SetEncoder, corpus: CnnCorpus, config: CnnGeneratorConfig, rng: np.random.Generator):
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


# ---- Denoiser -----------------------------------------------------------------------------------------


def token_conditions(arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor) -> torch.Tensor:
    """[B, C, d], [B, d] → the condition of every token [B, body + C, d]: body chunks get the dataset
    token, class rows their class token."""
    body = dataset_token[:, None, :].expand(-1, LAYOUTS[arch].body_tokens, -1)
    return torch.cat([body, class_tokens], dim=1)


def denoiser_positions(arch: str, classes: int, batch: int) -> torch.Tensor:
    layout = LAYOUTS[arch]
    ids = np.concatenate([[layout.arch_position], layout.position_ids(classes)])
    return torch.from_numpy(ids)[None].expand(batch, -1)


def train_denoiser(corpus: CnnCorpus, latents: list[np.ndarray], latent_scale: float, banks, models: np.ndarray,
                   config: CnnGeneratorConfig, schedule: NoiseSchedule, rng: np.random.Generator):
    class_bank, dataset_bank = banks
    denoiser = Denoiser(DenoiserConfig(latent_dim=config.latent_dim, condition_dim=config.encoder_dim,
                                       dim=config.denoiser_dim, layers=config.denoiser_layers, positions=POSITIONS,
                                       condition_dropout=config.condition_dropout))
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.denoiser_lr, weight_decay=1e-4)
    lr_schedule = cosine_lr(optimizer, config.denoiser_lr, config.denoiser_steps)
    alphas = torch.from_numpy(schedule.alphas_cumprod()).float()
    by_arch: dict[str, np.ndarray] = {}
    for arch in sorted(set(corpus.model_arch)):
        by_arch[arch] = np.array([m for m in models if corpus.model_arch[m] == arch])
    archs = sorted(by_arch)
    history, running = [], []
    for step in range(config.denoiser_steps):
        arch = archs[step % len(archs)]
        chosen = rng.choice(by_arch[arch], size=config.denoiser_batch)
        draws = rng.integers(0, config.bank_draws, size=len(chosen))
        tasks = [int(corpus.model_task[m]) for m in chosen]
        x0 = torch.from_numpy(np.stack([latents[m] for m in chosen])) * latent_scale
        cls = torch.from_numpy(np.stack([class_bank[t][d] for t, d in zip(tasks, draws)]))
        ds = torch.from_numpy(np.stack([dataset_bank[t][d] for t, d in zip(tasks, draws)]))
        t = torch.from_numpy(rng.integers(0, schedule.train_steps, size=len(chosen)))
        noise = torch.randn_like(x0)
        a = alphas[t][:, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        scale = torch.from_numpy((rng.random(len(chosen)) >= config.condition_dropout).astype(np.float32))
        mask = torch.ones(len(chosen), x0.shape[1])
        eps = denoiser(xt, t.float(), token_conditions(arch, cls, ds), ds, mask, scale,
                       denoiser_positions(arch, cls.shape[1], len(chosen)))
        loss = (eps - noise).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        running.append(float(loss))
        if step % 500 == 0 or step == config.denoiser_steps - 1:
            history.append({"step": step, "mse": float(np.mean(running))})
            log.info("denoiser step %d mse %.4f", step, float(np.mean(running)))
            running = []
    return denoiser.eval(), history


# ---- Generation ---------------------------------------------------------------------------------------


class CnnGenerator:
    def __init__(self, checkpoint: dict):
        self.checkpoint = checkpoint
        self.vae, self.encoder, self.denoiser = load_models(checkpoint, lambda c: CnnVae(CnnVaeConfig(**c)))
        self.norm = CnnNorm({a: {n: tuple(v) for n, v in s.items()} for a, s in checkpoint["norm"].items()})
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

    @torch.no_grad()
    def sample_latents(self, arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor,
                       settings: SamplingSettings, noise: np.ndarray | None = None) -> np.ndarray:
        """DDIM from x_T = Mulberry32(seed).normals(S·T·L) as [S, T, L] (or `noise`) to latents [S, T, L]
        (unscaled: ready for the decoder)."""
        classes, s = class_tokens.shape[0], settings.samples
        x, rng = self.initial_noise(arch, s, classes, settings.seed)
        if noise is not None:
            x = noise.astype(np.float64)
        x = x * settings.temperature
        for t in timesteps(self.schedule, settings.steps):
            eps = self.denoise(arch, class_tokens, dataset_token, x, int(t), settings.guidance)
            x, _ = ddim_step(self.schedule, settings.steps, eps, int(t), x, settings.eta, rng)
        return (x / self.latent_scale).astype(np.float32)

    @torch.no_grad()
    def denoise(self, arch: str, class_tokens: torch.Tensor, dataset_token: torch.Tensor, x: np.ndarray, t: int,
                guidance: float = 1.0) -> np.ndarray:
        """ε̂ [S, T, L] (float64) for scaled latents x [S, T, L] at timestep t, conditioned on one dataset's
        tokens; guidance ≠ 1 runs the unconditional batch beside it: ε = ε_∅ + g (ε_c − ε_∅)."""
        s, tokens = x.shape[0], x.shape[1]
        cond = token_conditions(arch, class_tokens[None], dataset_token[None]).expand(s, -1, -1)
        ds = dataset_token[None].expand(s, -1)
        scale = torch.ones(s)
        latents = torch.from_numpy(x.astype(np.float32))
        guided = guidance != 1.0
        if guided:
            cond, ds, scale = torch.cat([cond, cond]), torch.cat([ds, ds]), torch.cat([scale, torch.zeros(s)])
            latents = torch.cat([latents, latents])
        positions = denoiser_positions(arch, class_tokens.shape[0], cond.shape[0])
        mask = torch.ones(cond.shape[0], tokens)
        eps = self.denoiser(latents, torch.full((cond.shape[0],), float(t)), cond, ds, mask, scale, positions).double().numpy()
        return eps[s:] + guidance * (eps[:s] - eps[s:]) if guided else eps

    @torch.no_grad()
    def decode(self, arch: str, latents: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Latents [S, T, L] → S CNNs as named tensors."""
        classes = latents.shape[1] - LAYOUTS[arch].body_tokens
        positions = torch.from_numpy(LAYOUTS[arch].position_ids(classes))
        tokens = self.vae.decoder(torch.from_numpy(latents), positions).numpy()
        return [self.norm.to_params(arch, t) for t in tokens]

    def generate(self, arch: str, support: list[np.ndarray], settings: SamplingSettings) -> list[dict[str, np.ndarray]]:
        if arch not in LAYOUTS:
            raise KeyError(f"unknown CNN architecture {arch!r}; choose one of {sorted(LAYOUTS)}")
        class_tokens, dataset_token = self.condition(support)
        return self.decode(arch, self.sample_latents(arch, class_tokens, dataset_token, settings))


# ---- Run ----------------------------------------------------------------------------------------------


def make_checkpoint(config: CnnGeneratorConfig, vae: CnnVae, encoder: SetEncoder, denoiser: Denoiser, norm: CnnNorm,
                    latent_scale: float, schedule: NoiseSchedule, validation_tasks: list[str]) -> dict:
    return {
        "family": "cnn",
        "config": as_dict(config),
        **model_entries(vae, encoder, denoiser),
        "norm": norm.stats,
        "latent_scale": latent_scale,
        "schedule": dataclasses.asdict(schedule),
        "validation_tasks": validation_tasks,
    }


def split_models(corpus: CnnCorpus, config: CnnGeneratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(training models, validation models): the last `validation_tasks` tasks are held out."""
    return split_by_task(corpus.model_task, len(corpus.task_ids), config.validation_tasks)


def run(config: CnnGeneratorConfig, out_dir: Path) -> dict:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    zoo_dir = cache_dir() / config.zoo_name / "cnns"
    data_root = cache_dir() / config.data_name
    timings: dict[str, float] = {}
    started = time.monotonic()
    corpus = load_cnn_corpus(zoo_dir, data_root, config.max_models, tuple(config.archs))
    timings["load_s"] = time.monotonic() - started
    train_models, validation_models = split_models(corpus, config)

    mark = time.monotonic()
    vae, vae_history = train_vae(corpus, train_models, config)
    last_epoch = max(int(r["epoch"]) for r in corpus.model_rows)
    check = np.array([m for m in validation_models if int(corpus.model_rows[m]["epoch"]) == last_epoch])
    reconstruction = reconstruction_report(vae, corpus, check, data_root)
    log.info("reconstruction %s", reconstruction)
    latents = encode_models(vae, corpus)
    latent_scale = float(1.0 / np.concatenate([latents[m] for m in train_models]).std())
    timings["vae_s"] = time.monotonic() - mark

    mark = time.monotonic()
    encoder, align_history = train_encoder(corpus, latents, train_models, config, rng)
    timings["encoder_s"] = time.monotonic() - mark
    mark = time.monotonic()
    banks = condition_bank(encoder, corpus, config, rng)
    timings["bank_s"] = time.monotonic() - mark

    mark = time.monotonic()
    schedule = NoiseSchedule(train_steps=config.train_steps, beta_schedule=config.beta_schedule)
    denoiser, denoiser_history = train_denoiser(corpus, latents, latent_scale, banks, train_models, config, schedule, rng)
    timings["denoiser_s"] = time.monotonic() - mark
    timings["total_s"] = time.monotonic() - started

    validation_tasks = [corpus.task_ids[int(t)] for t in sorted(set(corpus.model_task[validation_models]))]
    checkpoint = make_checkpoint(config, vae, encoder, denoiser, corpus.norm, latent_scale, schedule, validation_tasks)
    files = save_checkpoint(checkpoint, out_dir)
    summary = {
        "config": as_dict(config),
        "inputs": {"zoo_table_sha256": sha256_file(zoo_dir / "models.csv"), "models": len(corpus.tokens),
                   "tasks": len(corpus.task_ids)},
        "reconstruction": reconstruction,
        "latent_scale": latent_scale,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "history": {"vae": vae_history, "align": align_history, "denoiser": denoiser_history},
        "checkpoint_sha256": {path.name: sha256_file(path) for path in files},
    }
    (out_dir / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
