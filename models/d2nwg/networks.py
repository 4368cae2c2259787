"""The small CNNs of the cnn family, as data: their architectures, initialisation and forward passes.

Two architectures, named so the generator can be conditioned on them; each
has a `layout()` (PyTorch-style parameter names and shapes, in the order a
flat weight vector is cut into named tensors):

    cnn-s  2,464 parameters, the small CNN of the model-zoo benchmark
           (Schürholt et al. 2022): conv 5×5 1→8, max-pool 2, tanh,
           conv 5×5 8→6, max-pool 2, tanh, conv 2×2 6→4, tanh,
           flatten 4·3·3=36, fc 36→20, tanh, fc 20→10 (no padding:
           28→24→12→8→4→3).
    cnn-w  11,018 parameters, wider and better: conv 3×3 1→16, max-pool 2,
           tanh, conv 3×3 16→24, max-pool 2, tanh, conv 3×3 24→24,
           max-pool 2, tanh (padding 1: 28→14→7→3), flatten 24·3·3=216,
           fc 216→10. (With global average pooling instead of the last
           pool and flatten, 32 channels and fc 32→10, it reached only 0.88
           held-out accuracy where this one reaches 0.98.)

tanh, as in the model zoo's tanh zoos, not GELU: on glyph-letter subsets
GELU was no better beyond the spread over seeds and 25% slower; bounded
activations also keep slightly-off generated weights from blowing up.

The zoo (`cnn_zoo.py`) trains them a population at a time; the generator
(`cnn_tokens.py`) cuts their weights into tokens; `export_cnn.py` writes a
generated one as ONNX through `CnnModule`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from .data.spec import derive_seed

IMAGE_SIDE = 28
CLASSES = 10  # every zoo model is a 10-way classifier


@dataclasses.dataclass(frozen=True)
class Conv:
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    padding: int
    pool: int  # max-pool window after the convolution; 1: none


@dataclasses.dataclass(frozen=True)
class Dense:
    name: str
    in_features: int
    out_features: int


@dataclasses.dataclass(frozen=True)
class CnnArch:
    """conv → max-pool → tanh per Conv, then flatten (C, H, W), then Dense layers with tanh between."""

    name: str
    convs: tuple[Conv, ...]
    dense: tuple[Dense, ...]

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """(parameter name, shape) in flat-vector order, as an nn.Module of this arch names them."""
        out: list[tuple[str, tuple[int, ...]]] = []
        for c in self.convs:
            out += [(f"{c.name}.weight", (c.out_channels, c.in_channels, c.kernel, c.kernel))]
            out += [(f"{c.name}.bias", (c.out_channels,))]
        for d in self.dense:
            out += [(f"{d.name}.weight", (d.out_features, d.in_features)), (f"{d.name}.bias", (d.out_features,))]
        return out

    def parameter_count(self) -> int:
        return sum(math.prod(shape) for _, shape in self.layout())


ARCHS = {
    "cnn-s": CnnArch(
        "cnn-s",
        (Conv("conv1", 1, 8, 5, 0, 2), Conv("conv2", 8, 6, 5, 0, 2), Conv("conv3", 6, 4, 2, 0, 1)),
        (Dense("fc1", 36, 20), Dense("fc2", 20, CLASSES)),
    ),
    "cnn-w": CnnArch(
        "cnn-w",
        (Conv("conv1", 1, 16, 3, 1, 2), Conv("conv2", 16, 24, 3, 1, 2), Conv("conv3", 24, 24, 3, 1, 2)),
        (Dense("fc", 216, CLASSES),),
    ),
}


def get_arch(name: str) -> CnnArch:
    if name not in ARCHS:
        raise KeyError(f"unknown CNN architecture {name!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[name]


def init_params(arch: CnnArch, seed: int) -> dict[str, torch.Tensor]:
    """PyTorch's default init (U(±1/√fan_in) for weights and biases), drawn from the arch and seed alone."""
    generator = torch.Generator().manual_seed(derive_seed("cnn-init", arch.name, seed) % 2**63)
    shapes = dict(arch.layout())
    params = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shapes[name.rsplit(".", 1)[0] + ".weight"][1:])
        params[name] = (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)
    return params


class CnnModule(torch.nn.Module):
    """One model of an arch as a plain nn.Module: the reference the population is checked and timed against."""

    def __init__(self, arch: CnnArch):
        super().__init__()
        self.arch = arch
        for c in arch.convs:
            self.add_module(c.name, torch.nn.Conv2d(c.in_channels, c.out_channels, c.kernel, padding=c.padding))
        for d in arch.dense:
            self.add_module(d.name, torch.nn.Linear(d.in_features, d.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, 28, 28] → [B, 10]
        h = x
        for c in self.arch.convs:
            h = getattr(self, c.name)(h)
            h = torch.tanh(F.max_pool2d(h, c.pool) if c.pool > 1 else h)
        h = h.flatten(1)
        for i, d in enumerate(self.arch.dense):
            h = getattr(self, d.name)(h)
            h = torch.tanh(h) if i < len(self.arch.dense) - 1 else h
        return h


def population_body(arch: CnnArch, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Penultimate features [P, B, F] of P models (everything before the last Dense layer, F its
    in_features), each on its own images x [P, B, 1, 28, 28]; params[name] [P, *shape]."""
    models, batch = x.shape[:2]
    h = x.transpose(0, 1).reshape(batch, models * x.shape[2], *x.shape[3:])  # [B, P·C, H, W]
    h = h.contiguous(memory_format=torch.channels_last)  # max-pool over many channels is 10× faster so
    for c in arch.convs:
        w, b = params[f"{c.name}.weight"], params[f"{c.name}.bias"]
        w = w.reshape(models * c.out_channels, *w.shape[2:])
        h = F.conv2d(h, w, b.reshape(-1), padding=c.padding, groups=models)
        h = torch.tanh(F.max_pool2d(h, c.pool) if c.pool > 1 else h)
    h = h.reshape(batch, models, -1).transpose(0, 1)  # [P, B, features], each model's flatten order (C, H, W)
    for d in arch.dense[:-1]:
        h = torch.tanh(torch.baddbmm(params[f"{d.name}.bias"][:, None, :], h, params[f"{d.name}.weight"].transpose(1, 2)))
    return h


def population_forward(arch: CnnArch, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits [P, B, 10] of P models with params[name] [P, *shape], each on its own images x [P, B, 1, 28, 28]."""
    last = arch.dense[-1].name
    return torch.baddbmm(params[f"{last}.bias"][:, None, :], population_body(arch, params, x),
                         params[f"{last}.weight"].transpose(1, 2))


def predict(arch: CnnArch | str, tensors: dict[str, np.ndarray], x: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Logits [N, classes] of one model given by its named tensors, on images x [N, 1, 28, 28]; the last
    layer may have any number of rows (a generated CNN has one per class)."""
    arch = get_arch(arch) if isinstance(arch, str) else arch
    params = {
        name: torch.tensor(np.asarray(tensors[name], np.float32)).reshape(1, *np.shape(tensors[name]))
        for name, _ in arch.layout()
    }
    classes = int(np.size(tensors[f"{arch.dense[-1].name}.bias"]))
    logits = np.zeros((len(x), classes), np.float32)
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            images = torch.as_tensor(np.asarray(x[i : i + chunk], np.float32))[None]  # a population of one
            logits[i : i + chunk] = population_forward(arch, params, images)[0].numpy()
    return logits
