"""Export the head family's generator: three ONNX graphs, a manifest and a parity trace.

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

reads the checkpoint in `release/head/` (with `--config NAME`, the one under
`<cache>/generator-NAME/head/`) and writes the graphs, `manifest.json` and
`trace.json` beside it. The manifest's `refine` block (the refine's λ rule,
`refine.py`) is copied from `refine.json`, which `evaluate-generator` writes
(its λs are calibrated on held-out zoo tasks), so evaluate runs first;

    /usr/bin/python3 -m d2nwg.export_head refine [FOLDER]

rewrites only that block of FOLDER's `manifest.json` (default `release/head/`),
leaving the graphs as they are.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch

from .checkpoint import MODEL_PARTS
from .config import RELEASE_DIR
from .features import backbone_id
from .generation import SamplingSettings
from .hashing import sha256_file
from .head_generator import HeadGenerator
from .onnx_export import RELEASE_VERSION, FixtureCondition, export_encoder, export_graph, tensor_json, trace_step
from .refine import RefineSpec

TRACE_TOLERANCE = 1e-4  # largest absolute difference the engine's replay may show
# What the engine uses when a caller does not say (temperature: see the report's sweep).
DEFAULTS = SamplingSettings(samples=8, steps=50, eta=0.0, guidance=1.0, seed=0, temperature=0.5)


@torch.no_grad()
def record_trace(generator: HeadGenerator, settings: SamplingSettings) -> dict:
    """A run on fixture features through the sampler the evaluations use, every step recorded."""
    fixture = FixtureCondition.encode(generator.encoder)
    steps: list[dict] = []
    latents = generator.sample_latents(fixture.class_tokens, fixture.dataset_token, settings,
                                       record=lambda step: steps.append(trace_step(step)))
    basis = generator.basis(fixture.support)
    weight, bias = generator.decode(latents, basis)
    return {
        "settings": dataclasses.asdict(settings),
        **fixture.trace_inputs(),
        "initial_noise_shape": [settings.samples, len(fixture.support), generator.denoiser.config.latent_dim],
        "basis": tensor_json(basis),
        "steps": steps,
        "weight": tensor_json(weight),
        "bias": tensor_json(bias),
    }


def refine_block(generator_dir: Path) -> dict:
    """The manifest's `refine` block: the λ grid, the cross-validation rule and the calibrated λ per shot
    count, from the evaluation's `refine.json`."""
    path = generator_dir / "refine.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python3 -m d2nwg evaluate-generator` first (it calibrates λ)")
    return RefineSpec.from_manifest(json.loads(path.read_text())["refine"]).manifest()


def update_refine(generator_dir: Path) -> dict:
    """Rewrites only the `refine` block of an exported manifest."""
    path = generator_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["refine"] = refine_block(generator_dir)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


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
        "refine": refine_block(generator_dir),
        # the page's latent map (latent_map.py writes it after export); null until then
        "latent_map": None,
    }
    (generator_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "refine" or len(argv) > 2:
        print("usage: python3 -m d2nwg.export_head refine [FOLDER]", file=sys.stderr)
        return 2
    folder = Path(argv[1]) if len(argv) == 2 else RELEASE_DIR / "head"
    print(json.dumps(update_refine(folder)["refine"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
