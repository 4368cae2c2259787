"""Export the cnn-family generator: three ONNX graphs, a manifest, a parity trace, and whole-CNN graphs.

Graphs (opset 17):
  encoder.onnx   features [C, K, F] (unit-norm), image_mask [C, K] → class_tokens [C, d], dataset_token [d]
  denoiser.onnx  latents [B, T, L], timestep [B], class_tokens [B, T, d] (each token's condition),
                 dataset_token [B, d], token_mask [B, T], condition_scale [B],
                 position_ids [B, 1 + T] (int64; the first is the architecture token) → eps [B, T, L]
  decoder.onnx   latents [S, T, L], position_ids [T] → tokens [S, T, 256] (normalised)

Each arch's network: per conv, convolution (stride 1, zero padding) → max-pool
(window = stride = pool, when pool > 1) → tanh; flatten (C, H, W); dense
layers with tanh between them, none after the last.

The engine runs: encoder → each token's condition (body chunks: the dataset
token; class rows: their class token) → x_T = Mulberry32(seed) normals as
[S, T, L] → DDIM → latents / latent_scale → decoder → per-tensor
de-normalisation and reshaping by the manifest's layout → named tensors.

`zoo-reference.safetensors` holds, per seen zoo task, its mean feature and one
final checkpoint per arch: the "pretrained" baseline of `d2nwg evaluate`.

`cnn_graph()` writes the ONNX of one complete generated CNN (input
`images [N, 1, 28, 28]`, output `logits [N, classes]`), what a user takes
elsewhere; the release ships one for the trace's first sample.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg export-generator --family cnn [--config NAME]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import safetensors
from .checkpoint import MODEL_PARTS
from .cnn_generator import CnnGenerator
from .cnn_tokens import CHUNK, LAYOUTS, POSITIONS, CnnNorm, load_cnn_corpus
from .config import cache_dir
from .features import backbone_id, unit_rows
from .generation import SamplingSettings
from .hashing import sha256_file
from .networks import IMAGE_SIDE, CnnModule, get_arch
from .onnx_export import OPSET, RELEASE_VERSION, FixtureCondition, export_encoder, export_graph, tensor_json, trace_step

TRACE_TOLERANCE = 1e-4
DEFAULT_ARCH = "cnn-w"  # what the engine generates when a caller names no arch
DEFAULTS = SamplingSettings(samples=8, steps=50, eta=0.0, guidance=1.0, seed=0, temperature=1.0)
PREPROCESSING = ("28×28 grayscale in [0, 1], ink high and background 0: letterboxed on the background colour, "
                 "bilinear (area-averaging) shrink, inverted when the dataset's images are mostly on a light "
                 "background (judged by the median of each image's outermost pixel ring, majority over the dataset)")


class DecoderGraph(nn.Module):
    """The VAE decoder plus, per position, the shared start's tokens (`CnnNorm.base_tokens`; zeros for a
    zoo of independent seeds): the graph emits tokens whose plain de-normalisation is the weights."""

    def __init__(self, decoder: nn.Module, norm: CnnNorm):
        super().__init__()
        self.decoder = decoder
        offsets = torch.zeros(POSITIONS, CHUNK)
        for arch in norm.stats:
            layout = LAYOUTS[arch]
            offsets[torch.from_numpy(layout.position_ids(0))] = torch.from_numpy(norm.base_tokens(arch))
        self.register_buffer("offsets", offsets)

    def forward(self, latents: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents, position_ids) + self.offsets[position_ids]


def cnn_graph(arch: str, params: dict[str, np.ndarray], path: Path) -> dict:
    """ONNX of one complete CNN with the given weights: images [N, 1, 28, 28] → logits [N, classes]."""
    model = CnnModule(get_arch(arch))
    classes = params[f"{LAYOUTS[arch].head_layer}.weight"].shape[0]
    head = LAYOUTS[arch].head_layer
    setattr(model, head, nn.Linear(LAYOUTS[arch].head_in, classes))
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in params.items()})
    model.eval()
    torch.onnx.export(model, (torch.zeros(2, 1, IMAGE_SIDE, IMAGE_SIDE),), str(path), input_names=["images"],
                      output_names=["logits"], opset_version=OPSET, dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def zoo_reference(generator: CnnGenerator, path: Path) -> dict:
    """The "pretrained" baseline's checkpoints: per seen zoo task, the unit mean of its classes' train
    features (to find the task nearest a new dataset) and, per arch, its final seed-0 checkpoint."""
    config = generator.checkpoint["config"]
    corpus = load_cnn_corpus(cache_dir() / config["zoo_name"] / "cnns", cache_dir() / config["data_name"],
                             config["max_models"], tuple(config["archs"]))
    last = max(int(r["epoch"]) for r in corpus.model_rows)
    tensors: dict[str, np.ndarray] = {
        "task_mean": np.stack([unit_rows(np.concatenate([corpus.features[corpus.class_train[k]] for k in classes]).mean(0))
                               for classes in corpus.task_classes]).astype(np.float32)}
    for arch in config["archs"]:
        chosen = {}
        for m, row in enumerate(corpus.model_rows):
            if row["arch"] == arch and int(row["epoch"]) == last and int(corpus.model_task[m]) not in chosen:
                chosen[int(corpus.model_task[m])] = m  # the lowest seed of the task
        nets = [corpus.norm.to_params(arch, corpus.tokens[chosen[t]]) for t in range(len(corpus.task_ids))]
        for name, _ in get_arch(arch).layout():
            tensors[f"{arch}/{name}"] = np.stack([n[name] for n in nets]).astype(np.float32)
    safetensors.save(path, tensors, {"tasks": json.dumps(corpus.task_ids)})
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "tasks": len(corpus.task_ids)}


@torch.no_grad()
def record_trace(generator: CnnGenerator, arch: str, settings: SamplingSettings) -> tuple[dict, list[dict]]:
    """A run on fixture features through the sampler the evaluations use, every step recorded; and its CNNs."""
    fixture = FixtureCondition.encode(generator.encoder)
    steps: list[dict] = []
    latents = generator.sample_latents(arch, fixture.class_tokens, fixture.dataset_token, settings,
                                       record=lambda step: steps.append(trace_step(step)))
    nets = generator.decode(arch, latents)
    trace = {
        "arch": arch,
        "settings": dataclasses.asdict(settings),
        **fixture.trace_inputs(),
        "initial_noise_shape": list(latents.shape),
        "steps": steps,
        "tensors": [{name: tensor_json(v) for name, v in net.items()} for net in nets],
    }
    return trace, nets


def export(generator_dir: Path) -> dict:
    generator = CnnGenerator.load(generator_dir)
    enc, den, vae = generator.encoder.config, generator.denoiser.config, generator.vae.config
    graphs = {
        "encoder": export_encoder(generator.encoder, generator_dir),
        "denoiser": export_graph(
            generator.denoiser,
            (torch.zeros(2, 3, den.latent_dim), torch.zeros(2), torch.zeros(2, 3, den.condition_dim),
             torch.zeros(2, den.condition_dim), torch.ones(2, 3), torch.ones(2), torch.zeros(2, 4, dtype=torch.int64)),
            generator_dir / "denoiser.onnx",
            {"latents": ["batch", "tokens", str(den.latent_dim)], "timestep": ["batch"],
             "class_tokens": ["batch", "tokens", str(den.condition_dim)], "dataset_token": ["batch", str(den.condition_dim)],
             "token_mask": ["batch", "tokens"], "condition_scale": ["batch"], "position_ids": ["batch", "tokens_and_arch"]},
            {"eps": ["batch", "tokens", str(den.latent_dim)]}),
        "decoder": export_graph(
            DecoderGraph(generator.vae.decoder, generator.norm),
            (torch.zeros(2, 3, vae.latent_dim), torch.zeros(3, dtype=torch.int64)),
            generator_dir / "decoder.onnx",
            {"latents": ["samples", "tokens", str(vae.latent_dim)], "position_ids": ["tokens"]},
            {"tokens": ["samples", "tokens", str(CHUNK)]}),
    }
    settings = SamplingSettings(samples=2, steps=4, eta=0.5, guidance=1.5, seed=5, temperature=0.8)
    trace, nets = record_trace(generator, "cnn-s", settings)
    (generator_dir / "trace.json").write_text(json.dumps(trace) + "\n")
    example = cnn_graph("cnn-s", nets[0], generator_dir / "trace-sample-0.onnx")
    training = json.loads((generator_dir / "training.json").read_text())
    reference = zoo_reference(generator, generator_dir / "zoo-reference.safetensors")
    archs = {}
    for arch, layout in LAYOUTS.items():
        if arch not in generator.norm.stats:
            continue
        archs[arch] = {
            "parameters": get_arch(arch).parameter_count(),
            "tensors": [{"name": name, "shape": list(shape), "mean": generator.norm.stats[arch][name][0],
                         "std": generator.norm.stats[arch][name][1]} for name, shape in get_arch(arch).layout()],
            "body": [{"layer": b.layer, "values": b.size, "chunks": b.chunks, "first_position": b.first_position}
                     for b in layout.body],
            "head_layer": layout.head_layer,
            "head_in_features": layout.head_in,
            "row_position": layout.row_position,
            "arch_position": layout.arch_position,
            "convs": [dataclasses.asdict(c) for c in get_arch(arch).convs],
            "dense": [dataclasses.asdict(d) for d in get_arch(arch).dense],
            "activation": "tanh",
        }
    manifest = {
        "release_version": RELEASE_VERSION,
        "family": "cnn",
        "graphs": graphs,
        "backbone": {"id": backbone_id(), "feature_dim": enc.feature_dim, "features": "unit-norm"},
        "input": {"shape": [1, IMAGE_SIDE, IMAGE_SIDE], "preprocessing": PREPROCESSING},
        "schedule": generator.checkpoint["schedule"],
        "sampling_defaults": dataclasses.asdict(DEFAULTS),
        "latent_dim": den.latent_dim,
        "latent_scale": generator.latent_scale,
        "noise": "mulberry32 Box-Muller, [samples, tokens, latent] row-major",
        "layout": {
            "chunk": CHUNK,
            "positions": POSITIONS,
            "token": ("body: each layer but the last, weight then bias (PyTorch order, per-tensor normalised), cut "
                      "into chunks of `chunk` values, the last zero-padded; then one token per class: row i of the "
                      "last layer's weight then its bias, zero-padded"),
            "condition": "body chunks: the dataset token; class rows: their class token",
            "archs": archs,
        },
        "max_classes": 20,
        "default_arch": DEFAULT_ARCH,
        "zoo_reference": reference,
        "trace": {"file": "trace.json", "sha256": sha256_file(generator_dir / "trace.json"), "max_abs_error": TRACE_TOLERANCE,
                  "sample_graph": example},
        "checkpoint": {name: sha256_file(generator_dir / name) for name in [f"{part}.pt" for part in MODEL_PARTS] + ["generator.json"]},
        "training_inputs": training["inputs"],
        "rebuild_command": ("cd models && /usr/bin/python3 -m d2nwg train-generator --family cnn && "
                            "/usr/bin/python3 -m d2nwg export-generator --family cnn && "
                            "/usr/bin/python3 -m d2nwg quantize-generator --family cnn"),
        "torch_version": torch.__version__,
        "variants": {},  # reduced-precision graphs that lose no measurable accuracy: quantize.py adds them
    }
    (generator_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
