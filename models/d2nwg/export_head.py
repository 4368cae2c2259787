"""Export the head family's generator: three ONNX graphs, the support statistics, a manifest and a trace.

The generator (`residual_head.py`) builds a closed-form reference head and a per-class basis from the
support, then runs DDIM over the residual's coordinates in that basis. The support arithmetic (reference,
basis, the condition's inputs) is the engine's (`src/engine/residual-support.ts`, the same as
`residual_head.build_support`); it needs the seen datasets' within-class statistics, shipped as
`statistics.safetensors` (eigenvectors [r, F], eigenvalues [r], variance [F]). Graphs (opset 17, dynamic
class / image / batch counts):

  encoder.onnx   image_features [C, K, P], image_mask [C, K], class_features [C, Q] → condition [C, h]
                 (the set encoder over each class's support images, and the class statistics)
  denoiser.onnx  latents [B, L], timestep [B], condition [B, h] → eps [B, L]   (one DDIM step's ε̂ per
                 class row; L = basis rows + 1)
  decoder.onnx   latents [C, S, L], basis [C, L − 1, F], reference_weight [C, F], reference_bias [C]
                 → weight [C, S, F], bias [C, S]   (W = R + Σₖ aₖ σₖ Qₖ, b = r + a_L σ_b)

The engine runs: support → (reference, basis, conditions) → encoder → x_T = Mulberry32(seed) normals
[S, C, L] × temperature → `steps` DDIM updates (the scheduler math lives in the engine) → decoder.

`trace.json` records a run on fixture features: the support's reference head and conditions, the
encoder's condition, every DDIM step's ε̂ and x_{t−1}, and the decoded heads, for the engine's parity
tests.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg export-generator [--config NAME]

reads `generator.pt` in `release/head/` (with `--config NAME`, the one under
`<cache>/generator-NAME/head/`) and writes the graphs, `statistics.safetensors`, `manifest.json` and
`trace.json` beside it. The manifest's `refine` block (the refine's λ rule, `refine.py`) is copied from
`refine.json`, which `evaluate-generator` writes (its λs are calibrated on held-out zoo tasks), so
evaluate runs first;

    /usr/bin/python3 -m d2nwg.export_head refine [FOLDER]

rewrites only that block of FOLDER's `manifest.json` (default `release/head/`), leaving the graphs as
they are.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import safetensors
from .config import RELEASE_DIR
from .features import backbone_id
from .generation import SamplingSettings
from .hashing import sha256_file
from .onnx_export import export_graph, fixture_support, pack, tensor_json
from .refine import RefineSpec
from .residual_head import ResidualDenoiser, ResidualGenerator, ResidualScale

TRACE_TOLERANCE = 1e-4  # largest absolute difference the engine's replay may show
# What the engine uses when a caller does not say: the evaluation's settings (evaluate_head.EvaluationConfig,
# chosen by the report's temperature and steps sweep).
DEFAULTS = SamplingSettings(samples=8, steps=20, eta=0.0, guidance=1.0, seed=0, temperature=0.25)
RELEASE = "0.2.0"  # the head family's release: the residual generator


class ConditionGraph(nn.Module):
    def __init__(self, model: ResidualDenoiser):
        super().__init__()
        self.model = model

    def forward(self, image_features: torch.Tensor, image_mask: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        return self.model.condition(image_features, image_mask, class_features)


class DecoderGraph(nn.Module):
    """Residual coordinates → heads, per class: W = R + Σₖ aₖ σₖ Qₖ, b = r + a_L σ_b."""

    def __init__(self, scale: ResidualScale):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(scale.vector()))

    def forward(self, latents: torch.Tensor, basis: torch.Tensor, reference_weight: torch.Tensor,
                reference_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = latents * self.scale  # [C, S, L]
        weight = reference_weight[:, None] + torch.bmm(scaled[..., :-1], basis)
        bias = reference_bias[:, None] + scaled[..., -1]
        return weight, bias


@torch.no_grad()
def record_trace(generator: ResidualGenerator, settings: SamplingSettings) -> dict:
    """A run on fixture features through the sampler the evaluations use, every step recorded."""
    support = fixture_support(generator.stats.eigenvectors.shape[1])
    features, mask = pack(support)
    built = generator.support(support)
    steps: list[dict] = []
    weight, bias = generator.generate_batch(
        [support], settings, [settings.seed],
        record=lambda s: steps.append({"t": s.t, "eps": s.eps.ravel().tolist(), "prev_sample": s.prev_sample.ravel().tolist()}))
    return {
        "settings": dataclasses.asdict(settings),
        "features": tensor_json(features),
        "image_mask": tensor_json(mask),
        "reference_weight": tensor_json(built.weight),
        "reference_bias": tensor_json(built.bias),
        "image_features": tensor_json(built.image_features),
        "class_features": tensor_json(built.class_features),
        "condition": tensor_json(generator.condition(built).numpy()),
        "initial_noise_shape": [settings.samples, len(support), generator.model.shape.coords],
        "steps": steps,
        "weight": tensor_json(weight[0]),
        "bias": tensor_json(bias[0]),
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
    generator = ResidualGenerator.load(generator_dir / "generator.pt")
    model, shape, config = generator.model, generator.model.shape, generator.config
    feature_dim = generator.stats.eigenvectors.shape[1]
    coords = shape.coords
    fixture = generator.support(fixture_support(feature_dim))
    c, k, p = fixture.image_features.shape
    graphs = {
        "encoder": export_graph(
            ConditionGraph(model),
            (torch.from_numpy(fixture.image_features), torch.from_numpy(fixture.image_mask.astype(np.float32)),
             torch.from_numpy(fixture.class_features)),
            generator_dir / "encoder.onnx",
            {"image_features": ["classes", "images", str(p)], "image_mask": ["classes", "images"],
             "class_features": ["classes", str(shape.class_features)]},
            {"condition": ["classes", str(shape.hidden)]}),
        "denoiser": export_graph(
            model, (torch.zeros(3, coords), torch.zeros(3), torch.zeros(3, shape.hidden)), generator_dir / "denoiser.onnx",
            {"latents": ["batch", str(coords)], "timestep": ["batch"], "condition": ["batch", str(shape.hidden)]},
            {"eps": ["batch", str(coords)]}),
        "decoder": export_graph(
            DecoderGraph(generator.residual_scale),
            (torch.zeros(c, 2, coords), torch.from_numpy(fixture.basis), torch.from_numpy(fixture.weight),
             torch.from_numpy(fixture.bias)),
            generator_dir / "decoder.onnx",
            {"latents": ["classes", "samples", str(coords)], "basis": ["classes", str(coords - 1), str(feature_dim)],
             "reference_weight": ["classes", str(feature_dim)], "reference_bias": ["classes"]},
            {"weight": ["classes", "samples", str(feature_dim)], "bias": ["classes", "samples"]}),
    }
    statistics = generator_dir / "statistics.safetensors"
    safetensors.save(statistics, {"eigenvectors": generator.stats.eigenvectors, "eigenvalues": generator.stats.eigenvalues,
                                  "variance": generator.stats.variance})
    settings = SamplingSettings(samples=2, steps=4, eta=0.5, guidance=1.0, seed=5, temperature=0.8)
    (generator_dir / "trace.json").write_text(json.dumps(record_trace(generator, settings)) + "\n")
    training = json.loads((generator_dir / "training.json").read_text())
    manifest = {
        "release_version": RELEASE,
        "family": "head",
        "graphs": graphs,
        "backbone": {"id": backbone_id(), "feature_dim": feature_dim, "features": "unit-norm"},
        "schedule": dataclasses.asdict(generator.schedule),
        "sampling_defaults": dataclasses.asdict(DEFAULTS),
        "latent_dim": coords,
        "latent_scale": 1.0,
        "noise": "mulberry32 Box-Muller, [samples, classes, latent] row-major",
        "layout": {
            "architecture": f"linear-{feature_dim}",
            "token": "one per class: weight row then bias",
            "basis": ("per class: the top global_rank within-class eigenvectors of the seen data, then the support "
                      "directions named in support.basis, orthonormalised in that order"),
            "tensors": [{"name": "weight", "shape": ["classes", str(feature_dim)], "mean": 0.0, "std": 1.0},
                        {"name": "bias", "shape": ["classes"], "mean": 0.0, "std": 1.0}],
        },
        "support": {
            "statistics": {"file": statistics.name, "sha256": sha256_file(statistics), "bytes": statistics.stat().st_size},
            "shrinkage": config.shrinkage,
            "basis": list(config.basis),
            "global_rank": config.global_rank,
            "reference_scale": generator.reference_scale,
            "image_features": p,
            "class_features": shape.class_features,
        },
        "max_classes": 20,
        "trace": {"file": "trace.json", "sha256": sha256_file(generator_dir / "trace.json"), "max_abs_error": TRACE_TOLERANCE},
        "checkpoint": {"generator.pt": sha256_file(generator_dir / "generator.pt")},
        "training_inputs": training["inputs"],
        "rebuild_command": "cd models && /usr/bin/python3 -m d2nwg train-generator && /usr/bin/python3 -m d2nwg "
                           "evaluate-generator && /usr/bin/python3 -m d2nwg export-generator",
        "torch_version": torch.__version__,
        "variants": {},  # the graphs are small (a few MB): no reduced-precision copies
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
