"""Train the head-family generator from the head zoo: β-VAE, dataset encoder, latent diffusion.

Stages, in order (D2NWG §3):
  1. VAE over head-row tokens; reconstruction is checked on zoo tasks it never saw.
  2. Dataset encoder aligned with the frozen VAE latents by a contrastive loss.
  3. Condition bank (`training.condition_bank`): the frozen encoder's tokens for
     several support draws per task.
  4. Denoiser (ε-prediction) with a light condition adapter, on the frozen latents.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg train-generator [--config NAME]

Writes the checkpoint into `release/head/`: `vae.pt`, `encoder.pt`, `denoiser.pt`
(each model's config and weights) and `generator.json` (the training config,
token normalisation, latent scale and noise schedule); and `training.json`
(losses, wall times, input hashes); with `--config NAME` into
`<cache>/generator-NAME/head/` instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import model_entries, save_checkpoint
from .config import as_dict, cache_dir
from .ddim import NoiseSchedule
from .denoiser import Denoiser, DenoiserConfig
from .features import unit_rows
from .hashing import sha256_file
from .head_tokens import HeadCorpus, TokenNorm, head_accuracy, load_head_corpus, support_basis
from .set_encoder import EncoderConfig, SetEncoder
from .training import condition_bank, cosine_lr, encode_support, pad_rows, split_by_task, support_batch
from .weight_vae import VaeConfig, WeightVae

log = logging.getLogger("d2nwg.train_head")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    data_name: str = "data"
    zoo_name: str = "zoo"
    max_heads: int = 0  # 0: every head of the zoo
    validation_tasks: int = 100  # zoo tasks kept out of VAE training, to measure reconstruction
    shots: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 30)  # support sizes drawn while training
    # VAE
    latent_dim: int = 16
    vae_hidden: int = 256
    decoder: str = "support"  # or "plain" (the paper's decoder; see weight_vae.py)
    whitening_rank: int = 128
    shrinkage: tuple[float, ...] = (1e-4, 3e-4, 3e-3)
    vae_steps: int = 3000
    vae_batch: int = 1024
    vae_lr: float = 1e-3
    basis_draws: int = 6  # support draws per class for the decoder's directions while training
    # Encoder alignment
    encoder_dim: int = 256
    inducing_points: int = 0  # > 0: an ISAB within classes (measured 2× slower to train; off in the release)
    align_steps: int = 1500
    align_tasks: int = 32
    align_lr: float = 5e-4
    align_temperature: float = 0.1
    # Condition bank and denoiser
    bank_draws: int = 4
    denoiser_dim: int = 256
    denoiser_layers: int = 4
    denoiser_steps: int = 10000
    denoiser_batch: int = 64
    denoiser_lr: float = 5e-4
    condition_dropout: float = 0.1
    train_steps: int = 1000  # diffusion timesteps T
    beta_schedule: str = "linear"


# ---- 1. VAE -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BasisBank:
    """Support directions for VAE training: per seen class, unit means of `draws` random support draws
    (random shot counts), and per task and draw, the mean over its classes' unit means."""

    class_index: dict[str, int]
    unit_means: np.ndarray  # [classes, draws, F]
    task_centre: np.ndarray  # [tasks, draws, F]

    def basis(self, corpus: HeadCorpus, heads: np.ndarray, rows: np.ndarray, draws: np.ndarray) -> torch.Tensor:
        """[N, 2, F] for row `rows[n]` of head `heads[n]` under draw `draws[n]`."""
        classes = np.array([self.class_index[corpus.task_classes[int(corpus.head_task[h])][r]] for h, r in zip(heads, rows)])
        unit = self.unit_means[classes, draws]
        centre = self.task_centre[corpus.head_task[heads], draws]
        return torch.from_numpy(np.stack([unit, centre], axis=1))


def basis_bank(corpus: HeadCorpus, draws: int, shots: tuple[int, ...], rng: np.random.Generator) -> BasisBank:
    keys = sorted(corpus.class_train)
    unit = np.zeros((len(keys), draws, corpus.features.shape[1]), np.float32)
    for i, key in enumerate(keys):
        pool = corpus.class_train[key]
        for d in range(draws):
            chosen = rng.choice(pool, size=min(int(rng.choice(shots)), len(pool)), replace=False)
            unit[i, d] = unit_rows(corpus.features[chosen].mean(0))
    index = {k: i for i, k in enumerate(keys)}
    centre = np.stack([unit[[index[k] for k in classes]].mean(0) for classes in corpus.task_classes])
    return BasisBank(index, unit, centre)


def within_class_eigen(corpus: HeadCorpus, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenvectors [rank, F] and eigenvalues [rank] of the seen classes' pooled within-class
    covariance of unit-norm features (train images only)."""
    dim = corpus.features.shape[1]
    scatter, count = np.zeros((dim, dim)), 0
    for idx in corpus.class_train.values():
        if len(idx) > 1:
            x = corpus.features[idx].astype(np.float64)
            x -= x.mean(0)
            scatter += x.T @ x
            count += len(idx)
    values, vectors = np.linalg.eigh(scatter / count)
    top = np.argsort(values)[::-1][:rank]
    return torch.from_numpy(vectors[:, top].T.astype(np.float32)), torch.from_numpy(values[top].astype(np.float32))


def train_vae(corpus: HeadCorpus, bank: BasisBank, heads: np.ndarray, config: GeneratorConfig) -> tuple[WeightVae, list[dict]]:
    vae = WeightVae(VaeConfig(token_dim=corpus.token_dim, latent_dim=config.latent_dim, hidden_dim=config.vae_hidden,
                              decoder=config.decoder, whitening_rank=config.whitening_rank, shrinkage=tuple(config.shrinkage)))
    if config.decoder == "support":
        vectors, values = within_class_eigen(corpus, config.whitening_rank)
        vae.decoder.basis.set_whitening(vectors, values, tuple(config.shrinkage))
    row_head = np.concatenate([np.full(len(corpus.tokens[h]), h) for h in heads])
    row_pos = np.concatenate([np.arange(len(corpus.tokens[h])) for h in heads])
    tokens = torch.from_numpy(np.concatenate([corpus.tokens[h] for h in heads]))
    draws = bank.unit_means.shape[1]
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    schedule = cosine_lr(optimizer, config.vae_lr, config.vae_steps)
    rng = np.random.default_rng(config.seed + 1)
    history = []
    for step in range(config.vae_steps):
        pick = rng.integers(0, len(tokens), size=config.vae_batch)
        basis = bank.basis(corpus, row_head[pick], row_pos[pick], rng.integers(0, draws, size=len(pick)))
        loss, parts = vae.loss(tokens[pick], basis)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == config.vae_steps - 1:
            history.append({"step": step, **parts})
            log.info("vae step %d %s", step, parts)
    return vae.eval(), history


@torch.no_grad()
def reconstruction_report(vae: WeightVae, corpus: HeadCorpus, heads: np.ndarray, shots: int, rng: np.random.Generator) -> dict:
    """Held-out accuracy of zoo heads and of their VAE reconstructions, on tasks the VAE never saw
    (support directions from a `shots`-shot draw of the task's train images)."""
    original, reconstructed = [], []
    for h in heads:
        task = int(corpus.head_task[h])
        x, y = corpus.heldout(task)
        tokens = torch.from_numpy(corpus.tokens[h])
        basis = torch.from_numpy(support_basis(corpus.class_means(task, shots, rng)))
        recon = vae.decoder(vae.encode(tokens, basis)[0], basis).numpy()
        original.append(head_accuracy(*corpus.norm.to_head(corpus.tokens[h]), x, y))
        reconstructed.append(head_accuracy(*corpus.norm.to_head(recon), x, y))
    o, r = np.array(original), np.array(reconstructed)
    return {"heads": len(heads), "support_shots": shots, "original_accuracy": float(o.mean()),
            "reconstructed_accuracy": float(r.mean()), "ratio": float(r.mean() / o.mean())}


@torch.no_grad()
def encode_heads(vae: WeightVae, corpus: HeadCorpus) -> list[np.ndarray]:
    """Each head's latents, with support directions from all train images of its task's classes."""
    everything = np.iinfo(np.int32).max
    rng = np.random.default_rng(0)
    basis = [torch.from_numpy(support_basis(corpus.class_means(t, everything, rng))) for t in range(len(corpus.task_ids))]
    return [vae.encode(torch.from_numpy(t), basis[int(corpus.head_task[h])])[0].numpy() for h, t in enumerate(corpus.tokens)]


# ---- 2. Encoder ---------------------------------------------------------------------------------------


def train_encoder(
    corpus: HeadCorpus, latents: list[np.ndarray], heads: np.ndarray, config: GeneratorConfig, rng: np.random.Generator
) -> tuple[SetEncoder, list[dict]]:
    encoder = SetEncoder(EncoderConfig(feature_dim=corpus.features.shape[1], dim=config.encoder_dim,
                                       inducing_points=config.inducing_points, latent_dim=config.latent_dim))
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.align_lr, weight_decay=1e-4)
    schedule = cosine_lr(optimizer, config.align_lr, config.align_steps)
    history = []
    for step in range(config.align_steps):
        chosen = rng.choice(heads, size=config.align_tasks, replace=False)
        batch = support_batch(corpus, [int(corpus.head_task[h]) for h in chosen], rng, config.shots)
        class_tokens, _ = encode_support(encoder, batch)
        target = pad_rows([latents[h] for h in chosen], batch["shape"][1])
        loss = encoder.alignment_loss(class_tokens, target, batch["class_mask"], config.align_temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == config.align_steps - 1:
            history.append({"step": step, "contrastive": float(loss)})
            log.info("align step %d loss %.4f", step, float(loss))
    return encoder.eval(), history


# ---- 4. Denoiser --------------------------------------------------------------------------------------


def train_denoiser(
    corpus: HeadCorpus,
    latents: list[np.ndarray],
    latent_scale: float,
    banks: tuple[list[list[np.ndarray]], list[list[np.ndarray]]],
    heads: np.ndarray,
    config: GeneratorConfig,
    schedule: NoiseSchedule,
    rng: np.random.Generator,
) -> tuple[Denoiser, list[dict]]:
    class_bank, dataset_bank = banks
    denoiser = Denoiser(DenoiserConfig(latent_dim=config.latent_dim, condition_dim=config.encoder_dim,
                                       dim=config.denoiser_dim, layers=config.denoiser_layers,
                                       condition_dropout=config.condition_dropout))
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.denoiser_lr, weight_decay=1e-4)
    lr_schedule = cosine_lr(optimizer, config.denoiser_lr, config.denoiser_steps)
    alphas = torch.from_numpy(schedule.alphas_cumprod()).float()
    # Batches of heads with the same class count: no padding, so no wasted flops.
    by_count: dict[int, np.ndarray] = {}
    for h in heads:
        by_count.setdefault(len(latents[h]), []).append(h)  # type: ignore[arg-type]
    counts = sorted(by_count)
    weights = np.array([len(by_count[c]) for c in counts], dtype=float)
    history, running = [], []
    for step in range(config.denoiser_steps):
        count = counts[rng.choice(len(counts), p=weights / weights.sum())]
        chosen = rng.choice(by_count[count], size=config.denoiser_batch)
        draws = rng.integers(0, config.bank_draws, size=len(chosen))
        tasks = [int(corpus.head_task[h]) for h in chosen]
        x0 = torch.from_numpy(np.stack([latents[h] for h in chosen])) * latent_scale  # [B, C, L]
        cls = torch.from_numpy(np.stack([class_bank[t][d] for t, d in zip(tasks, draws)]))
        ds = torch.from_numpy(np.stack([dataset_bank[t][d] for t, d in zip(tasks, draws)]))
        t = torch.from_numpy(rng.integers(0, schedule.train_steps, size=len(chosen)))
        noise = torch.randn_like(x0)
        a = alphas[t][:, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise  # DDPM forward process, eq. (1) in ddim.py
        scale = torch.from_numpy((rng.random(len(chosen)) >= config.condition_dropout).astype(np.float32))
        mask = torch.ones(len(chosen), count)
        loss = (denoiser(xt, t.float(), cls, ds, mask, scale) - noise).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        running.append(float(loss))
        if step % 200 == 0 or step == config.denoiser_steps - 1:
            history.append({"step": step, "mse": float(np.mean(running))})
            log.info("denoiser step %d mse %.4f", step, float(np.mean(running)))
            running = []
    return denoiser.eval(), history


# ---- Run ----------------------------------------------------------------------------------------------


def make_checkpoint(config: GeneratorConfig, vae: WeightVae, encoder: SetEncoder, denoiser: Denoiser, norm: TokenNorm,
                    latent_scale: float, schedule: NoiseSchedule, validation_tasks: list[str]) -> dict:
    """Everything needed to rebuild and run the generator: each model's config and weights, and the
    token normalisation, latent scale and noise schedule that sampling needs."""
    return {
        "family": "head",
        "config": as_dict(config),
        **model_entries(vae, encoder, denoiser),
        "token_norm": dataclasses.asdict(norm),
        "latent_scale": latent_scale,
        "schedule": dataclasses.asdict(schedule),
        "validation_tasks": validation_tasks,
    }


def split_heads(corpus: HeadCorpus, config: GeneratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(training heads, validation heads): the last `validation_tasks` zoo tasks are held out of training."""
    return split_by_task(corpus.head_task, len(corpus.task_ids), config.validation_tasks)


def run(config: GeneratorConfig, out_dir: Path) -> dict:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    zoo_dir = cache_dir() / config.zoo_name / "heads"
    timings: dict[str, float] = {}
    started = time.monotonic()
    corpus = load_head_corpus(zoo_dir, cache_dir() / config.data_name, config.max_heads)
    timings["load_s"] = time.monotonic() - started
    train_heads, validation_heads = split_heads(corpus, config)

    mark = time.monotonic()
    bank = basis_bank(corpus, config.basis_draws, config.shots, rng)
    vae, vae_history = train_vae(corpus, bank, train_heads, config)
    del bank
    reconstruction = reconstruction_report(vae, corpus, validation_heads, 20, rng)
    log.info("reconstruction %s", reconstruction)
    latents = encode_heads(vae, corpus)
    latent_scale = float(1.0 / np.concatenate([latents[h] for h in train_heads]).std())
    timings["vae_s"] = time.monotonic() - mark

    mark = time.monotonic()
    encoder, align_history = train_encoder(corpus, latents, train_heads, config, rng)
    timings["encoder_s"] = time.monotonic() - mark

    mark = time.monotonic()
    banks = condition_bank(encoder, corpus, config, rng)
    timings["bank_s"] = time.monotonic() - mark

    mark = time.monotonic()
    schedule = NoiseSchedule(train_steps=config.train_steps, beta_schedule=config.beta_schedule)
    denoiser, denoiser_history = train_denoiser(corpus, latents, latent_scale, banks, train_heads, config, schedule, rng)
    timings["denoiser_s"] = time.monotonic() - mark
    timings["total_s"] = time.monotonic() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    validation_tasks = [corpus.task_ids[int(t)] for t in sorted(set(corpus.head_task[validation_heads]))]
    checkpoint = make_checkpoint(config, vae, encoder, denoiser, corpus.norm, latent_scale, schedule, validation_tasks)
    checkpoint_files = save_checkpoint(checkpoint, out_dir)
    summary = {
        "config": as_dict(config),
        "inputs": {"zoo_table_sha256": sha256_file(zoo_dir / "models.csv"), "heads": len(corpus.tokens),
                   "tasks": len(corpus.task_ids), "rows": int(sum(len(t) for t in corpus.tokens))},
        "reconstruction": reconstruction,
        "latent_scale": latent_scale,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "history": {"vae": vae_history, "align": align_history, "denoiser": denoiser_history},
        "checkpoint_sha256": {path.name: sha256_file(path) for path in checkpoint_files},
    }
    (out_dir / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
