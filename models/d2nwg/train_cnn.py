"""Train the cnn family's generator from the cnn zoo: β-VAE, dataset encoder, latent diffusion.

The D2NWG method (β-VAE, dataset encoder, latent diffusion):
  1. β-VAE over CNN tokens (`cnn_tokens.py`, the model in `cnn_generator.py`):
     encoder and decoder start as each position's whitened PCA; small noise
     on inputs, larger on sampled latents.
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

from .checkpoint import model_entries, save_checkpoint
from .cnn_generator import CnnVae, CnnVaeConfig, denoiser_positions, model_positions, token_conditions
from .cnn_tokens import LAYOUTS, POSITIONS, CnnCorpus, CnnNorm, cnn_accuracy, load_cnn_corpus
from .config import as_dict, cache_dir
from .ddim import NoiseSchedule
from .denoiser import Denoiser, DenoiserConfig
from .hashing import sha256_file
from .set_encoder import EncoderConfig, SetEncoder
from .training import condition_bank, cosine_lr, encode_support, pad_rows, split_by_task, support_batch

log = logging.getLogger("d2nwg.train_cnn")


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


# ---- 1. VAE -------------------------------------------------------------------------------------------


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


# ---- 2. Encoder ----------------------------------------------------------------------------------------


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


# ---- 4. Denoiser (3, the condition bank, is training.condition_bank) -----------------------------------


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


# ---- Run ----------------------------------------------------------------------------------------------


def make_checkpoint(config: CnnGeneratorConfig, vae: CnnVae, encoder: SetEncoder, denoiser: Denoiser, norm: CnnNorm,
                    latent_scale: float, schedule: NoiseSchedule, validation_tasks: list[str]) -> dict:
    entries = model_entries(vae, encoder, denoiser)
    if norm.base is not None:  # the shared start the body tokens are measured from, kept with the decoder
        entries["vae"]["base"] = {arch: {name: torch.from_numpy(v) for name, v in tensors.items()}
                                  for arch, tensors in norm.base.items()}
    return {
        "family": "cnn",
        "config": as_dict(config),
        **entries,
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
