"""Ablations of the head-family generator: which part of D2NWG earns its keep, measured the same way.

Every variant removes or replaces one part of the released method and is
trained with the same (reduced) denoiser budget as a reference that keeps
everything, so differences come from the part, not from the budget:

  full            the released VAE and aligned encoder; a denoiser retrained at the ablation budget
  no_alignment    the encoder left at its random initialisation (no contrastive stage), frozen;
                  the denoiser's adapter must make do with its tokens
  no_vae          diffusion directly on the normalised head rows (1,793 values per token), no VAE
  plain_decoder   the paper's VAE decoder (latent → MLP → row), without our support directions;
                  the encoder is realigned to its latents
  whole_model     the paper's whole-model flattening: one vector per head (all rows of the most
                  common class count), a plain VAE over it, one latent token conditioned on the
                  dataset token; only heads and datasets of that class count exist for it
  pdiff           unconditional diffusion, one model per dataset (p-diff, Wang et al. 2024): for a
                  few seen tasks, many checkpoints of that task from the zoo's recipe, a denoiser
                  trained on them alone, sampled without a condition

Measured: seen zoo tasks (generated ÷ zoo checkpoint), tasks held out of
training, unseen datasets at 20 shots (generated vs nearest class mean and the
baseline table's logistic regression), and for p-diff the distance of its
samples to its own training checkpoints.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg ablate-generator [--config NAME]

reads the head generator of `release/head/` (with `--config NAME`, of
`<cache>/generator-NAME/head/`, and `configs/ablation/NAME.json`) and writes
`ablations.json` and `ABLATIONS.md` beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import types
from pathlib import Path

import numpy as np
import torch

from .baselines import BaselineConfig, stable_seed
from .checkpoint import load_checkpoint
from .config import DATA_DIR, RELEASE_DIR, as_dict, cache_dir, from_dict, load_config
from .ddim import NoiseSchedule
from .evaluate_head import EvaluationConfig, accuracies, family_means, generate_all, nearest, settings, unseen_section
from .evaluation import stats
from .features import built_datasets, load_features
from .generation import SamplingSettings
from .head_generator import HeadGenerator
from .head_tokens import HeadCorpus, load_head_corpus
from .head_zoo import HeadRecipe, Task, train_heads
from .set_encoder import SetEncoder
from .train_head import (GeneratorConfig, basis_bank, encode_heads, make_checkpoint, reconstruction_report, split_heads,
                         train_denoiser, train_encoder, train_vae)
from .training import condition_bank
from .weight_vae import VaeConfig, WeightVae

log = logging.getLogger("d2nwg.ablate_generator")

VARIANTS = ("full", "no_alignment", "no_vae", "plain_decoder", "whole_model", "pdiff")


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    seed: int = 0
    variants: tuple[str, ...] = VARIANTS
    denoiser_steps: int = 3000  # every variant's denoiser (the release trained 10,000)
    bank_draws: int = 2
    vae_steps: int = 1500  # plain_decoder and whole_model VAEs
    align_steps: int = 500  # plain_decoder's realignment
    whole_model_classes: int = 10  # the class count of the unseen datasets most often (13 of 36)
    whole_model_latent: int = 64
    pdiff_tasks: int = 4
    pdiff_seeds: int = 40  # checkpoints per task: seeds × snapshots
    pdiff_snapshots: tuple[int, ...] = (52, 54, 56, 58, 60)
    pdiff_steps: int = 1500
    samples: int = 10
    steps: int = 50
    temperature: float = 0.5  # the release evaluation's default
    seen_tasks: int = 30
    seen_shots: int = 20
    unseen_shots: int = 20
    unseen_splits: int = 2
    max_unseen: int = 0  # 0: every unseen dataset


# ---- variants that change how a latent becomes a head ---------------------------------------------------


class TokenGenerator(HeadGenerator):
    """no_vae: the denoiser's tokens are normalised head rows; decoding only undoes the normalisation."""

    def decode(self, latents: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.norm.to_head(latents)


class FlatGenerator(HeadGenerator):
    """whole_model: one latent per head, conditioned on the dataset token, decoded to all rows at once."""

    @staticmethod
    def token_conditions(class_tokens: torch.Tensor, dataset_tokens: torch.Tensor) -> torch.Tensor:
        return dataset_tokens[:, None, :]

    @torch.no_grad()
    def decode(self, latents: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = self.vae.decoder(torch.from_numpy(latents[:, 0]), torch.zeros(0)).numpy()
        return self.norm.to_head(flat.reshape(len(latents), basis.shape[0], -1))


# ---- training -------------------------------------------------------------------------------------------


def train_variant(name: str, corpus: HeadCorpus, release: dict, base: GeneratorConfig, config: AblationConfig,
                  shared: dict) -> tuple[HeadGenerator, dict]:
    """One variant's generator and what its training measured."""
    rng = np.random.default_rng(stable_seed(config.seed, "ablation", name))
    torch.manual_seed(stable_seed(config.seed, "ablation-torch", name) % 2**31)
    cfg = dataclasses.replace(base, denoiser_steps=config.denoiser_steps, bank_draws=config.bank_draws,
                              vae_steps=config.vae_steps, align_steps=config.align_steps)
    schedule = NoiseSchedule(**release["schedule"])
    train, _ = split_heads(corpus, cfg)
    vae, encoder = shared["vae"], shared["encoder"]
    latents, scale = shared["latents"], shared["latent_scale"]
    info: dict = {}
    make = HeadGenerator
    if name == "no_alignment":
        encoder = SetEncoder(encoder.config).eval()
    elif name == "no_vae":
        latents = corpus.tokens
        scale = float(1.0 / np.concatenate([corpus.tokens[h] for h in train]).std())
        cfg = dataclasses.replace(cfg, latent_dim=corpus.token_dim)
        make = TokenGenerator
    elif name == "plain_decoder":
        cfg = dataclasses.replace(cfg, decoder="plain")
        vae, _ = train_vae(corpus, basis_bank(corpus, cfg.basis_draws, cfg.shots, rng), train, cfg)
        _, held = split_heads(corpus, cfg)
        info["reconstruction"] = reconstruction_report(vae, corpus, held, 20, rng)
        latents = encode_heads(vae, corpus)
        scale = float(1.0 / np.concatenate([latents[h] for h in train]).std())
        encoder, _ = train_encoder(corpus, latents, train, cfg, rng)
    elif name == "whole_model":
        classes = config.whole_model_classes
        train = np.array([h for h in train if len(corpus.tokens[h]) == classes])
        vae, info = train_flat_vae(corpus, train, classes, cfg, config, rng)
        latents = [None] * len(corpus.tokens)
        with torch.no_grad():
            for h in train:
                latents[h] = vae.encode(torch.from_numpy(corpus.tokens[h].reshape(1, -1)), torch.zeros(0))[0].numpy()
        scale = float(1.0 / np.concatenate([latents[h] for h in train]).std())
        cfg = dataclasses.replace(cfg, latent_dim=config.whole_model_latent)
        make = FlatGenerator
    banks = shared["banks"] if encoder is shared["encoder"] else condition_bank(encoder, corpus, cfg, rng)
    if name == "whole_model":
        banks = ([[d[None] for d in draws] for draws in banks[1]], banks[1])
    started = time.monotonic()
    denoiser, history = train_denoiser(corpus, latents, scale, banks, train, cfg, schedule, rng)
    info["denoiser_s"] = round(time.monotonic() - started, 1)
    info["final_mse"] = history[-1]["mse"]
    checkpoint = make_checkpoint(cfg, vae, encoder, denoiser, corpus.norm, scale, schedule, release["validation_tasks"])
    return make(checkpoint), info


def train_flat_vae(corpus: HeadCorpus, heads: np.ndarray, classes: int, cfg: GeneratorConfig, config: AblationConfig,
                   rng: np.random.Generator) -> tuple[WeightVae, dict]:
    """The paper's whole-model VAE: every row of a head in one vector, plain MLP decoder."""
    vae = WeightVae(VaeConfig(token_dim=classes * corpus.token_dim, latent_dim=config.whole_model_latent,
                              hidden_dim=cfg.vae_hidden, decoder="plain"))
    flat = torch.from_numpy(np.stack([corpus.tokens[h].reshape(-1) for h in heads]))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    for step in range(config.vae_steps):
        loss, parts = vae.loss(flat[rng.integers(0, len(flat), size=min(256, len(flat)))], torch.zeros(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0:
            log.info("whole-model vae step %d %s", step, parts)
    return vae.eval(), {"heads": len(heads), "classes": classes, "final_reconstruction": parts["reconstruction"]}


# ---- evaluation -----------------------------------------------------------------------------------------


def evaluation_config(config: AblationConfig) -> EvaluationConfig:
    return EvaluationConfig(seed=config.seed, samples=config.samples, steps=config.steps, temperature=config.temperature,
                            shots=(config.unseen_shots,), splits=config.unseen_splits, seen_tasks=config.seen_tasks,
                            seen_shots=config.seen_shots)


def seen_accuracy(generator: HeadGenerator, corpus: HeadCorpus, tasks: list[int], config: AblationConfig) -> dict:
    """Generated vs zoo-checkpoint accuracy on held-out images of the given zoo tasks (same draws for
    every variant)."""
    rng = np.random.default_rng(stable_seed(config.seed, "ablation-seen"))
    supports = [[corpus.features[i] for i in corpus.draw_support(t, config.seen_shots, rng)] for t in tasks]
    heads = generate_all(generator, supports, [stable_seed(config.seed, "seen", t) for t in tasks],
                         settings(evaluation_config(config), 0))
    generated, spread, zoo = [], [], []
    for t, (weight, bias) in zip(tasks, heads):
        x, y = corpus.heldout(t)
        acc = accuracies(weight, bias, x, y)
        generated.append(acc.mean())
        spread.append(acc.std())
        zoo_heads = [corpus.norm.to_head(corpus.tokens[h]) for h in np.flatnonzero(corpus.head_task == t)]
        zoo.append(accuracies(np.stack([w for w, _ in zoo_heads]), np.stack([b for _, b in zoo_heads]), x, y).mean())
    return {"tasks": len(tasks), "generated": stats(generated), "within_task_std": float(np.mean(spread)),
            "zoo": stats(zoo), "ratio": float(np.mean(generated) / np.mean(zoo))}


def task_plan(corpus: HeadCorpus, validation: set[str], config: AblationConfig, classes: int | None) -> dict:
    """The seen tasks every variant is measured on: up to `seen_tasks` trained-on tasks (seeded choice)
    and the first held-out ones; with `classes`, only tasks of that class count."""
    fits = [t for t in range(len(corpus.task_ids)) if classes is None or len(corpus.task_classes[t]) == classes]
    trained = [t for t in fits if corpus.task_ids[t] not in validation]
    pick = np.random.default_rng(config.seed).choice(trained, size=min(config.seen_tasks, len(trained)), replace=False)
    return {"trained": sorted(int(t) for t in pick),
            "held": [t for t in fits if corpus.task_ids[t] in validation][: config.seen_tasks]}


def evaluate_variant(generator: HeadGenerator, corpus: HeadCorpus, config: AblationConfig, unseen: list,
                     baseline: BaselineConfig, table: dict, classes: int | None) -> dict:
    """Seen, held-out-of-training and unseen 20-shot accuracy; with `classes`, only tasks and datasets of
    that class count."""
    plan = task_plan(corpus, set(generator.checkpoint["validation_tasks"]), config, classes)
    out = {"seen": seen_accuracy(generator, corpus, plan["trained"], config),
           "held_out_of_training": seen_accuracy(generator, corpus, plan["held"], config)}
    data = [d for d in unseen if classes is None or len(d.classes) == classes]
    rows = unseen_section(generator, data, evaluation_config(config), baseline, table)
    shots = str(config.unseen_shots)
    means = family_means(rows, shots).get("all")
    if means is None:
        out["unseen"] = {"shots": config.unseen_shots, "datasets": 0}
        return out
    out["unseen"] = {"shots": config.unseen_shots, "datasets": len(rows), **{k: float(v) for k, v in means.items() if k != "datasets"},
                     "within_split_std": float(np.mean([r["shots"][shots]["generated_within_split_std"] for r in rows if shots in r["shots"]])),
                     "ratio_ncm": means["generated"] / means["ncm"], "ratio_logistic": means["generated"] / means["logistic"]}
    return out


# ---- p-diff ---------------------------------------------------------------------------------------------


def pdiff_section(corpus: HeadCorpus, shared: dict, release: dict, base: GeneratorConfig, config: AblationConfig,
                  tasks: list[int], data_root: Path) -> dict:
    """Per task: checkpoints from the zoo's recipe, an unconditional denoiser on them alone, and its
    samples' accuracy and distance to the nearest of its own training checkpoints."""
    recipe = HeadRecipe(seeds_per_task=config.pdiff_seeds, snapshots=config.pdiff_snapshots)
    schedule = NoiseSchedule(**release["schedule"])
    vae = shared["vae"]
    features: dict = {}
    rows = []
    for t in tasks:
        keys = corpus.task_classes[t]
        classes = tuple((k.split("#")[0], int(k.split("#")[1])) for k in keys)
        for dataset_id, _ in classes:
            if dataset_id not in features:
                features[dataset_id] = load_features(dataset_id, data_root)
        task = Task(task_id=f"pdiff-{corpus.task_ids[t]}", family="pdiff", classes=classes, class_names=tuple(keys),
                    fewshot=False)
        started = time.monotonic()
        records = train_heads([task], features, recipe, stable_seed(config.seed, "pdiff", t))
        tokens = [corpus.norm.to_tokens(r["weight"], r["bias"]) for r in records]
        basis = torch.from_numpy(HeadGenerator.basis([corpus.features[corpus.class_train[k]] for k in keys]))
        with torch.no_grad():
            latents = [vae.encode(torch.from_numpy(tok), basis)[0].numpy() for tok in tokens]
        scale = float(1.0 / np.concatenate(latents).std())
        cfg = dataclasses.replace(base, denoiser_steps=config.pdiff_steps, condition_dropout=1.0, bank_draws=1)
        banks = ([[np.zeros((len(keys), base.encoder_dim), np.float32)]], [[np.zeros(base.encoder_dim, np.float32)]])
        one_task = types.SimpleNamespace(head_task=np.zeros(len(latents), dtype=int))
        rng = np.random.default_rng(stable_seed(config.seed, "pdiff-train", t))
        denoiser, _ = train_denoiser(one_task, latents, scale, banks, np.arange(len(latents)), cfg, schedule, rng)  # type: ignore[arg-type]
        checkpoint = make_checkpoint(cfg, vae, shared["encoder"], denoiser, corpus.norm, scale, schedule, [])
        generator = HeadGenerator(checkpoint)
        # guidance 0: ε = ε_∅, the unconditional model alone (it never saw a condition).
        sampling = SamplingSettings(samples=config.samples, steps=config.steps, guidance=0.0,
                                    temperature=1.0, seed=stable_seed(config.seed, "pdiff-sample", t) % 2**32)
        latent = generator.sample_latents(torch.zeros(len(keys), base.encoder_dim), torch.zeros(base.encoder_dim), sampling)
        weight, bias = generator.decode(latent, basis.numpy())
        x, y = corpus.heldout(t)
        generated = accuracies(weight, bias, x, y)
        train_w = np.stack([r["weight"] for r in records])
        train_b = np.stack([r["bias"] for r in records])
        trained = accuracies(train_w, train_b, x, y)
        to_train = [nearest(w, b, train_w, train_b)[1] for w, b in zip(weight, bias)]
        within = [nearest(train_w[i], train_b[i], np.delete(train_w, i, 0), np.delete(train_b, i, 0))[1]
                  for i in range(len(records))]
        rows.append({"task": corpus.task_ids[t], "classes": len(keys), "checkpoints": len(records),
                     "generated": stats(generated), "checkpoints_accuracy": stats(trained),
                     "distance_to_nearest_checkpoint": stats(to_train),
                     "checkpoint_nearest_neighbour_distance": stats(within),
                     "wall_s": round(time.monotonic() - started, 1)})
        log.info("pdiff %s: %s", corpus.task_ids[t], rows[-1])
    return {"tasks": rows}


# ---- run ------------------------------------------------------------------------------------------------


def run(config: AblationConfig, generator_dir: Path, table_path: Path) -> dict:
    started = time.monotonic()
    release = load_checkpoint(generator_dir)
    base = from_dict(GeneratorConfig, release["config"])
    data_root = cache_dir() / base.data_name
    corpus = load_head_corpus(cache_dir() / base.zoo_name / "heads", data_root, base.max_heads)
    generator = HeadGenerator(release)
    shared = {"vae": generator.vae, "encoder": generator.encoder, "latents": encode_heads(generator.vae, corpus),
              "latent_scale": generator.latent_scale}
    rng = np.random.default_rng(config.seed)
    shared["banks"] = condition_bank(generator.encoder, corpus, dataclasses.replace(base, bank_draws=config.bank_draws), rng)
    table = json.loads(table_path.read_text())
    baseline = from_dict(BaselineConfig, table["config"])
    unseen_ids = [d for d, p in built_datasets(data_root) if p == "unseen"]
    unseen = [load_features(d, data_root) for d in unseen_ids[: config.max_unseen or None]]
    whole = config.whole_model_classes
    results: dict = {"config": as_dict(config), "generator_config": release["config"], "whole_model_classes": whole,
                     "released_reconstruction": json.loads((generator_dir / "training.json").read_text())["reconstruction"],
                     "released": {}, "variants": {}}
    log.info("evaluating the released generator")
    results["released"] = evaluate_variant(generator, corpus, config, unseen, baseline, table, None)
    for name in config.variants:
        if name == "pdiff":
            continue
        mark = time.monotonic()
        variant, info = train_variant(name, corpus, release, base, config, shared)
        classes = whole if name == "whole_model" else None
        result = {"training": info, **evaluate_variant(variant, corpus, config, unseen, baseline, table, classes)}
        if name == "full":  # also on the whole-model subset, the comparison whole_model needs
            result["at_whole_model_classes"] = evaluate_variant(variant, corpus, config, unseen, baseline, table, whole)
        result["wall_s"] = round(time.monotonic() - mark, 1)
        results["variants"][name] = result
        log.info("variant %s: %s", name, {k: result[k] for k in ("seen", "unseen")})
        (generator_dir / "ablations.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    if "pdiff" in config.variants:
        pick = task_plan(corpus, set(release["validation_tasks"]), config, None)["trained"][: config.pdiff_tasks]
        results["pdiff"] = pdiff_section(corpus, shared, release, base, config, pick, data_root)
        results["pdiff"]["released_on_same_tasks"] = seen_accuracy(generator, corpus, pick, config)
    results["wall_s"] = round(time.monotonic() - started, 1)
    (generator_dir / "ablations.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_report(results, generator_dir / "ABLATIONS.md")
    return results


DESCRIPTIONS = {
    "full": "everything (released VAE and aligned encoder)",
    "no_alignment": "encoder at random init, no contrastive stage",
    "no_vae": "diffusion on raw head rows, no VAE",
    "plain_decoder": "the paper's plain VAE decoder (realigned encoder)",
    "whole_model": "whole-model flattening (one vector per head)",
}


def pm(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f}"


def variant_row(name: str, description: str, r: dict) -> str:
    u = r["unseen"]
    held = r["held_out_of_training"]
    held_text = f"{held['generated']['mean']:.3f}" if held["tasks"] else "—"
    unseen = (f"{u['generated']:.3f} | {u['ratio_ncm']:.3f} | {u['ratio_logistic']:.3f}" if u["datasets"]
              else "— | — | —")
    return (f"| {name} | {description} | {pm(r['seen']['generated'])} ({r['seen']['within_task_std']:.3f}) "
            f"| {r['seen']['ratio']:.3f} | {held_text} | {unseen} | {u['datasets']} |")


def write_report(results: dict, path: Path) -> None:
    c = results["config"]
    lines = [
        "# Ablations of the head-family generator",
        "",
        "Written by `python3 -m d2nwg ablate-generator` (`models/d2nwg/ablate_generator.py`), which says how each",
        "variant is built. Every variant's denoiser trains for the same "
        f"{c['denoiser_steps']:,} steps (the release trained 10,000), so `full` is the reference for the others;",
        "the released generator is listed too. Accuracy is the mean over tasks or datasets of the mean over "
        f"{c['samples']} generated heads (± the spread over tasks; in brackets, the mean spread over one task's samples).",
        "",
        f"Seen: {c['seen_tasks']} zoo tasks the generator trained on, {c['seen_shots']}-shot support, held-out images; ",
        f"held out: zoo tasks kept out of training. Unseen: every unseen dataset, {c['unseen_shots']}-shot, "
        f"{c['unseen_splits']} support draws, against nearest class mean (NCM) and the baseline table's logistic "
        "regression (LR).",
        "",
        "| variant | what changes | seen: generated | seen: ÷ zoo | held out | unseen: generated | ÷ NCM | ÷ LR | unseen datasets |",
        "|---|---|---|---|---|---|---|---|---|",
        variant_row("released", "the release (10,000 denoiser steps)", results["released"]),
    ]
    variants = results["variants"]
    for name, r in variants.items():
        lines.append(variant_row(name, DESCRIPTIONS[name], r))
    whole = results["whole_model_classes"]
    if "whole_model" in variants and "full" in variants:
        lines += ["", f"Whole-model flattening exists only for one class count ({whole}), so it is compared with `full` on "
                  f"the same {whole}-class tasks and datasets:", "",
                  "| variant | what changes | seen: generated | seen: ÷ zoo | held out | unseen: generated | ÷ NCM | ÷ LR | unseen datasets |",
                  "|---|---|---|---|---|---|---|---|---|",
                  variant_row("full", f"per-row tokens, {whole}-class subset", variants["full"]["at_whole_model_classes"]),
                  variant_row("whole_model", DESCRIPTIONS["whole_model"], variants["whole_model"])]
    training = {n: r["training"] for n, r in variants.items()}
    lines += ["", "Training: final denoiser MSE "
              + ", ".join(f"{n} {t['final_mse']:.3f}" for n, t in training.items()) + "."]
    if "reconstruction" in training.get("plain_decoder", {}):
        rec = training["plain_decoder"]["reconstruction"]
        released = results["released_reconstruction"]
        lines.append(f"VAE reconstruction (held-out zoo heads, reconstructed ÷ original accuracy): plain decoder "
                     f"{rec['ratio']:.3f}, the released support decoder {released['ratio']:.3f}.")
    if "pdiff" in results:
        p = results["pdiff"]
        lines += ["", "## Unconditional, one model per dataset (p-diff)", "",
                  f"Per seen task: {c['pdiff_seeds'] * len(c['pdiff_snapshots'])} checkpoints from the zoo's own recipe "
                  f"({c['pdiff_seeds']} seeds × snapshots at epochs {', '.join(map(str, c['pdiff_snapshots']))}), an "
                  f"unconditional denoiser trained on them alone ({c['pdiff_steps']:,} steps, the released VAE), "
                  f"{c['samples']} samples. Distance is the L2 distance of a generated head to the nearest of that "
                  "task's checkpoints, beside the checkpoints' own nearest-neighbour distance.", "",
                  "| task | classes | p-diff generated | its checkpoints | distance to nearest checkpoint | checkpoints' NN distance |",
                  "|---|---|---|---|---|---|"]
        for row in p["tasks"]:
            lines.append(f"| {row['task']} | {row['classes']} | {pm(row['generated'])} | {pm(row['checkpoints_accuracy'])} "
                         f"| {pm(row['distance_to_nearest_checkpoint'])} | {pm(row['checkpoint_nearest_neighbour_distance'])} |")
        same = p["released_on_same_tasks"]
        lines += ["", f"The released (conditional, one model for every dataset) generator on the same tasks: "
                  f"{pm(same['generated'])} (zoo checkpoints {pm(same['zoo'])}). p-diff needs a trained zoo of the very "
                  "dataset and cannot produce weights for a new one; D2NWG needs only its images."]
    lines += ["", f"Wall time: {results['wall_s'] / 60:.0f} min on 2 cores.", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg ablate-generator", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="override file under configs/ablation/, and the generator of "
                                                       "<cache>/generator-NAME/head/")
    parser.add_argument("--report", action="store_true", help="only rewrite ABLATIONS.md from ablations.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(AblationConfig(), "ablation", args.config)
    folder = RELEASE_DIR / "head" if args.config is None else cache_dir() / f"generator-{args.config}" / "head"
    if args.report:
        write_report(json.loads((folder / "ablations.json").read_text()), folder / "ABLATIONS.md")
        return 0
    data_name = json.loads((folder / "generator.json").read_text())["config"]["data_name"]
    table = DATA_DIR / "baselines.json" if args.config is None else cache_dir() / data_name / "baselines.json"
    result = run(config, folder, table)
    log.info("ablations done in %.0f s", result["wall_s"])
    return 0
