"""Export a trained generator as three ONNX graphs, a manifest and a parity trace.

Graphs (opset 17, dynamic class / token / batch counts):
  encoder.onnx   features [C, K, F] (unit-norm), image_mask [C, K] → class_tokens [C, d], dataset_token [d]
  denoiser.onnx  latents [B, N, L], timestep [B], class_tokens [B, N, d], dataset_token [B, d],
                 token_mask [B, N], condition_scale [B] → eps [B, N, L]          (one DDIM step's ε̂)
  decoder.onnx   latents [N, L], basis [N, 2, F] → tokens [N, T]                 (normalised weight tokens)

The engine runs: encoder → x_T = Mulberry32(seed) normals → `steps` DDIM updates
(the scheduler math lives in the engine, not in a graph) → latents / latent_scale
and the support directions (`support_basis`: each class's unit mean feature and their mean) → decoder → de-normalise with the manifest's statistics → named weights.

`trace.json` records a run on fixture features: the encoder's outputs, every DDIM
step's ε̂ and x_{t−1}, and the decoded heads, for the engine's parity tests.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg export-generator [--config NAME]
    /usr/bin/python3 -m d2nwg export-generator --family cnn [--config NAME]   (export_cnn.py)

reads the checkpoint in `release/head/` (with `--config NAME`, the one under
`<cache>/generator-NAME/head/`) and writes the graphs, `manifest.json` and
`trace.json` beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .hashing import sha256_file
from .config import RELEASE_DIR, cache_dir
from .ddim import ddim_step, timesteps
from .features import backbone_id
from .head_generator import MODEL_PARTS, HeadGenerator, SamplingSettings
from .set_encoder import SetEncoder

OPSET = 17
RELEASE_VERSION = "0.1.0"
TRACE_TOLERANCE = 1e-4  # largest absolute difference the engine's replay may show
# What the engine uses when a caller does not say (temperature: see the report's sweep).
DEFAULTS = SamplingSettings(samples=8, steps=50, eta=0.0, guidance=1.0, seed=0, temperature=0.5)


class EncoderGraph(nn.Module):
    """One dataset (no batch axis): what the page has."""

    def __init__(self, encoder: SetEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, features: torch.Tensor, image_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        class_mask = (image_mask.sum(-1) > 0).float()[None]
        class_tokens, dataset_token = self.encoder(features[None], image_mask[None], class_mask)
        return class_tokens[0], dataset_token[0]


def export_graph(model: nn.Module, args: tuple, path: Path, inputs: dict[str, list[str]], outputs: dict[str, list[str]]) -> dict:
    """Exports with every named axis dynamic; returns the manifest entry."""
    names = {**inputs, **outputs}
    torch.onnx.export(
        model, args, str(path), input_names=list(inputs), output_names=list(outputs), opset_version=OPSET,
        dynamic_axes={name: {i: axis for i, axis in enumerate(axes) if not axis.isdigit()} for name, axes in names.items()},
    )
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "inputs": {k: v for k, v in inputs.items()}, "outputs": {k: v for k, v in outputs.items()}}


def export_encoder(encoder: SetEncoder, folder: Path) -> dict:
    """encoder.onnx (one dataset, dynamic class and image counts), traced on fixture features."""
    enc = encoder.config
    features, mask = pack(fixture_support(enc.feature_dim))
    return export_graph(
        EncoderGraph(encoder), (torch.from_numpy(features), torch.from_numpy(mask)), folder / "encoder.onnx",
        {"features": ["classes", "images", str(enc.feature_dim)], "image_mask": ["classes", "images"]},
        {"class_tokens": ["classes", str(enc.dim)], "dataset_token": [str(enc.dim)]})


def fixture_support(feature_dim: int, classes: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Seeded unit-norm features, 2–4 images per class (uneven, to exercise the image mask)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(classes):
        x = rng.standard_normal((2 + c % 3, feature_dim)).astype(np.float32)
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return out


def pack(support: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    k = max(len(s) for s in support)
    features = np.zeros((len(support), k, support[0].shape[1]), np.float32)
    mask = np.zeros((len(support), k), np.float32)
    for c, s in enumerate(support):
        features[c, : len(s)] = s
        mask[c, : len(s)] = 1.0
    return features, mask


@torch.no_grad()
def record_trace(generator: HeadGenerator, settings: SamplingSettings) -> dict:
    support = fixture_support(generator.encoder.config.feature_dim)
    features, mask = pack(support)
    class_tokens, dataset_token = EncoderGraph(generator.encoder)(torch.from_numpy(features), torch.from_numpy(mask))
    s, c = settings.samples, len(support)
    x, rng = generator.initial_noise(s, c, settings.seed)
    x = x * settings.temperature
    cls = class_tokens[None].expand(s, -1, -1)
    ds = dataset_token[None].expand(s, -1)
    steps = []
    for t in timesteps(generator.schedule, settings.steps):
        both = torch.from_numpy(np.concatenate([x, x]).astype(np.float32))
        eps = generator.denoiser(both, torch.full((2 * s,), float(t)), torch.cat([cls, cls]), torch.cat([ds, ds]),
                                 torch.ones(2 * s, c), torch.cat([torch.ones(s), torch.zeros(s)])).double().numpy()
        guided = eps[s:] + settings.guidance * (eps[:s] - eps[s:])
        x, _ = ddim_step(generator.schedule, settings.steps, guided, int(t), x, settings.eta, rng)
        steps.append({"t": int(t), "eps_conditional": eps[:s].ravel().tolist(), "eps_unconditional": eps[s:].ravel().tolist(),
                      "prev_sample": x.ravel().tolist()})
    latents = (x / generator.latent_scale).astype(np.float32)
    basis = generator.basis(support)
    weight, bias = generator.decode(latents, basis)
    return {
        "settings": dataclasses.asdict(settings),
        "features": {"shape": list(features.shape), "data": features.ravel().tolist()},
        "image_mask": {"shape": list(mask.shape), "data": mask.ravel().tolist()},
        "class_tokens": {"shape": list(class_tokens.shape), "data": class_tokens.numpy().ravel().tolist()},
        "dataset_token": {"shape": list(dataset_token.shape), "data": dataset_token.numpy().ravel().tolist()},
        "initial_noise_shape": [s, c, generator.denoiser.config.latent_dim],
        "basis": {"shape": list(basis.shape), "data": basis.ravel().tolist()},
        "steps": steps,
        "weight": {"shape": list(weight.shape), "data": weight.ravel().tolist()},
        "bias": {"shape": list(bias.shape), "data": bias.ravel().tolist()},
    }


def export(generator_dir: Path) -> dict:
    generator = HeadGenerator.load(generator_dir)
    enc, den, vae = generator.encoder.config, generator.denoiser.config, generator.vae.config
    graphs = {
        "encoder": export_encoder(generator.encoder, generator_dir),
        "denoiser": export_graph(
            generator.denoiser,
            (torch.zeros(2, 3, den.latent_dim), torch.zeros(2), torch.zeros(2, 3, den.condition_dim), torch.zeros(2, den.condition_dim),
             torch.ones(2, 3), torch.ones(2)),
            generator_dir / "denoiser.onnx",
            {"latents": ["batch", "tokens", str(den.latent_dim)], "timestep": ["batch"],
             "class_tokens": ["batch", "tokens", str(den.condition_dim)], "dataset_token": ["batch", str(den.condition_dim)],
             "token_mask": ["batch", "tokens"], "condition_scale": ["batch"]},
            {"eps": ["batch", "tokens", str(den.latent_dim)]}),
        "decoder": export_graph(
            generator.vae.decoder, (torch.zeros(3, vae.latent_dim), torch.zeros(3, 2, enc.feature_dim)),
            generator_dir / "decoder.onnx",
            {"latents": ["tokens", str(vae.latent_dim)], "basis": ["tokens", "2", str(enc.feature_dim)]},
            {"tokens": ["tokens", str(vae.token_dim)]}),
    }
    settings = SamplingSettings(samples=2, steps=4, eta=0.5, guidance=1.5, seed=5, temperature=0.8)
    (generator_dir / "trace.json").write_text(json.dumps(record_trace(generator, settings)) + "\n")
    training = json.loads((generator_dir / "training.json").read_text())
    manifest = {
        "release_version": RELEASE_VERSION,
        "family": "head",
        "graphs": graphs,
        "backbone": {"id": backbone_id(), "feature_dim": enc.feature_dim, "features": "unit-norm"},
        "schedule": generator.checkpoint["schedule"],
        "sampling_defaults": dataclasses.asdict(DEFAULTS),
        "latent_dim": den.latent_dim,
        "latent_scale": generator.latent_scale,
        "noise": "mulberry32 Box-Muller, [samples, classes, latent] row-major",
        "layout": {
            "architecture": f"linear-{enc.feature_dim}",
            "token": "one per class: weight row then bias",
            "basis": "per class: [unit mean of the class's unit-norm features, mean over classes of those]",
            "tensors": [{"name": "weight", "shape": ["classes", str(enc.feature_dim)], "mean": generator.norm.weight_mean, "std": generator.norm.weight_std},
                        {"name": "bias", "shape": ["classes"], "mean": generator.norm.bias_mean, "std": generator.norm.bias_std}],
        },
        "max_classes": 20,
        "trace": {"file": "trace.json", "sha256": sha256_file(generator_dir / "trace.json"), "max_abs_error": TRACE_TOLERANCE},
        "checkpoint": {name: sha256_file(generator_dir / name) for name in [f"{part}.pt" for part in MODEL_PARTS] + ["generator.json"]},
        "training_inputs": training["inputs"],
        "rebuild_command": ("cd models && /usr/bin/python3 -m d2nwg train-generator && /usr/bin/python3 -m d2nwg export-generator"
                            " && /usr/bin/python3 -m d2nwg quantize-generator --family head"),
        "torch_version": torch.__version__,
        "variants": {},  # reduced-precision graphs that lose no measurable accuracy: quantize.py adds them
    }
    (generator_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg export-generator", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("head", "cnn"), default="head")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    generator_dir = RELEASE_DIR / args.family if args.config is None else cache_dir() / f"generator-{args.config}" / args.family
    if args.family == "cnn":
        from .export_cnn import export as export_cnn

        manifest = export_cnn(generator_dir)
    else:
        manifest = export(generator_dir)
    sizes = ", ".join(f"{name} {g['bytes'] / 1e6:.1f} MB" for name, g in manifest["graphs"].items())
    print(f"exported to {generator_dir}: {sizes}")
    return 0
