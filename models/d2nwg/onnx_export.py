"""What exporting either family's generator shares: the ONNX export itself, the encoder graph, the trace's inputs.

Both families ship `encoder.onnx` (one dataset: features [C, K, F], image_mask
[C, K] → class_tokens [C, d], dataset_token [d]) and a `trace.json` recorded
on the same seeded fixture features: the encoder's outputs and every step of
`ddim.sample_guided` (ε̂ of both halves of guidance and x_{t−1}), which the
engine's parity tests replay.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .ddim import GuidedStep
from .hashing import sha256_file
from .set_encoder import SetEncoder

OPSET = 17
RELEASE_VERSION = "0.1.0"


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


def tensor_json(x) -> dict:
    a = np.asarray(x)
    return {"shape": list(a.shape), "data": a.astype(np.float64).ravel().tolist()}


@dataclasses.dataclass(frozen=True)
class FixtureCondition:
    """The trace's condition: fixture support features through the encoder graph, as the page runs it."""

    support: list[np.ndarray]  # per class [K_c, F], unit-norm
    features: np.ndarray  # [C, K, F], packed
    image_mask: np.ndarray  # [C, K]
    class_tokens: torch.Tensor  # [C, d]
    dataset_token: torch.Tensor  # [d]

    @staticmethod
    @torch.no_grad()
    def encode(encoder: SetEncoder) -> "FixtureCondition":
        support = fixture_support(encoder.config.feature_dim)
        features, mask = pack(support)
        class_tokens, dataset_token = EncoderGraph(encoder)(torch.from_numpy(features), torch.from_numpy(mask))
        return FixtureCondition(support, features, mask, class_tokens, dataset_token)

    def trace_inputs(self) -> dict:
        return {"features": tensor_json(self.features), "image_mask": tensor_json(self.image_mask),
                "class_tokens": tensor_json(self.class_tokens.numpy()),
                "dataset_token": tensor_json(self.dataset_token.numpy())}


def trace_step(step: GuidedStep) -> dict:
    """One sampler step as the trace records it: both halves of guidance, so the engine checks its
    denoiser graph, and x_{t−1}, so it checks its scheduler."""
    if step.eps_unconditional is None:
        raise ValueError("a parity trace records both halves of guidance: record it with guidance ≠ 1")
    return {"t": step.t, "eps_conditional": step.eps_conditional.ravel().tolist(),
            "eps_unconditional": step.eps_unconditional.ravel().tolist(), "prev_sample": step.prev_sample.ravel().tolist()}
