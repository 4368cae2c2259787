"""The cnn family's training corpus: every weight of a zoo CNN as equal-length tokens.

Tokens (D2NWG's layer-wise chunking, with class rows tied to classes):
- body: each layer but the last, its weight then bias flattened (PyTorch
  order) after per-tensor normalisation, cut into chunks of `CHUNK` values;
  a layer's last chunk is zero-padded, so no chunk mixes two layers;
- class rows: row i of the last layer (`weight[i]` then `bias[i]`), padded
  to `CHUNK`, is the token of class i, generated from class i's images.

With a shared-start zoo (`cnn_zoo.train_base`), a body chunk holds the change
from the arch's base instead of the weights themselves (`CnnNorm.base`); the
class rows stay weights (each task's last layer starts from its own class
means, not from the base's).

Each token has a position id: body chunk k of arch a has its own id, every
class row of arch a shares one id (so permuting classes permutes rows), and
each arch has one more id for the denoiser's leading token (the architecture
token). Per-tensor means and standard deviations are fitted per arch over
the zoo and written into the manifest.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from . import safetensors, zoo_store
from .cnn_zoo import load_dataset_28
from .features import draw_support, seen_class_features
from .networks import ARCHS, CnnArch, get_arch, predict

CHUNK = 256


@dataclasses.dataclass(frozen=True)
class LayerChunks:
    layer: str  # e.g. "conv2"
    size: int  # weight + bias values
    chunks: int
    first_position: int


@dataclasses.dataclass(frozen=True)
class ArchTokens:
    """How one arch's parameters map to tokens, and which position ids they use."""

    arch: str
    body: tuple[LayerChunks, ...]
    head_layer: str  # the last dense layer, one token per class row
    head_in: int  # its in_features
    row_position: int  # position id shared by every class row
    arch_position: int  # position id of the denoiser's leading token

    @property
    def body_tokens(self) -> int:
        return sum(b.chunks for b in self.body)

    def position_ids(self, classes: int) -> np.ndarray:
        """[body tokens + classes] position ids, in token order."""
        body = np.concatenate([np.arange(b.first_position, b.first_position + b.chunks) for b in self.body])
        return np.concatenate([body, np.full(classes, self.row_position)]).astype(np.int64)

    def value_mask(self, classes: int) -> np.ndarray:
        """[tokens, CHUNK] 1 where a token value is a real parameter (not padding)."""
        rows = []
        for b in self.body:
            filled = np.zeros(b.chunks * CHUNK, np.float32)
            filled[: b.size] = 1.0
            rows.append(filled.reshape(b.chunks, CHUNK))
        row = np.zeros((classes, CHUNK), np.float32)
        row[:, : self.head_in + 1] = 1.0
        return np.concatenate(rows + [row])


def token_layouts() -> dict[str, ArchTokens]:
    """Every arch's token layout; position ids are numbered across archs in sorted arch order."""
    out, position = {}, 0
    for name in sorted(ARCHS):
        arch = ARCHS[name]
        body = []
        shapes = dict(arch.layout())
        layers = [c.name for c in arch.convs] + [d.name for d in arch.dense]
        for layer in layers[:-1]:
            size = math.prod(shapes[f"{layer}.weight"]) + math.prod(shapes[f"{layer}.bias"])
            chunks = -(-size // CHUNK)
            body.append(LayerChunks(layer, size, chunks, position))
            position += chunks
        last = arch.dense[-1]
        if last.in_features + 1 > CHUNK:
            raise ValueError(f"{name}: a class row of {last.in_features + 1} values does not fit a {CHUNK} token")
        out[name] = ArchTokens(name, tuple(body), last.name, last.in_features, position, position + 1)
        position += 2
    return out


LAYOUTS = token_layouts()
POSITIONS = max(t.arch_position for t in LAYOUTS.values()) + 1


@dataclasses.dataclass(frozen=True)
class CnnNorm:
    """Per arch and tensor name: (mean, std) over the zoo. With `base` (a shared-start zoo), a body
    tensor's token values are its change from the arch's base, normalised: the tokens of zoo members
    then differ by what fine-tuning on their task changed, not by where each started."""

    stats: dict[str, dict[str, tuple[float, float]]]
    base: dict[str, dict[str, np.ndarray]] | None = None  # arch → body tensor name → base values

    @staticmethod
    def fit(params: dict[str, list[dict[str, np.ndarray]]],
            base: dict[str, dict[str, np.ndarray]] | None = None) -> "CnnNorm":
        stats = {}
        for arch, models in params.items():
            stats[arch] = {}
            for name, _ in get_arch(arch).layout():
                offset = CnnNorm.offset(base, arch, name)
                values = np.stack([np.asarray(m[name], np.float64) - offset for m in models])
                stats[arch][name] = (float(values.mean()), float(values.std()))
        return CnnNorm(stats, base)

    @staticmethod
    def offset(base: dict[str, dict[str, np.ndarray]] | None, arch: str, name: str) -> np.ndarray | float:
        """What a tensor's token values are measured from: its base values (body tensors of a shared
        start), else 0."""
        if base is None or name not in base.get(arch, {}):
            return 0.0
        return np.asarray(base[arch][name], np.float64)

    def to_tokens(self, arch: str, params: dict[str, np.ndarray]) -> np.ndarray:
        """Named tensors of one model → tokens [body + classes, CHUNK]."""
        layout, stats = LAYOUTS[arch], self.stats[arch]

        def normed(name: str) -> np.ndarray:
            mean, std = stats[name]
            return (np.asarray(params[name], np.float64) - self.offset(self.base, arch, name) - mean) / std

        tokens = []
        for b in layout.body:
            flat = np.concatenate([normed(f"{b.layer}.weight").ravel(), normed(f"{b.layer}.bias")])
            padded = np.zeros(b.chunks * CHUNK)
            padded[: b.size] = flat
            tokens.append(padded.reshape(b.chunks, CHUNK))
        w, bias = normed(f"{layout.head_layer}.weight"), normed(f"{layout.head_layer}.bias")
        rows = np.zeros((len(w), CHUNK))
        rows[:, : layout.head_in] = w
        rows[:, layout.head_in] = bias
        return np.concatenate(tokens + [rows]).astype(np.float32)

    def base_tokens(self, arch: str) -> np.ndarray:
        """[body tokens, CHUNK]: what the base adds to a body token (base ÷ the tensor's std), so that a
        decoder emitting token + this gives the weights through the plain de-normalisation
        (value · std + mean); zeros without a base."""
        layout, stats = LAYOUTS[arch], self.stats[arch]
        shapes = dict(get_arch(arch).layout())
        tokens = []
        for b in layout.body:
            names = (f"{b.layer}.weight", f"{b.layer}.bias")
            flat = np.concatenate([np.broadcast_to(self.offset(self.base, arch, n), shapes[n]).ravel() / stats[n][1]
                                   for n in names])
            padded = np.zeros(b.chunks * CHUNK)
            padded[: b.size] = flat
            tokens.append(padded.reshape(b.chunks, CHUNK))
        return np.concatenate(tokens).astype(np.float32)

    def to_params(self, arch: str, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """tokens [body + classes, CHUNK] → named tensors (the fc layer has one row per class token)."""
        layout, stats = LAYOUTS[arch], self.stats[arch]
        shapes = dict(get_arch(arch).layout())
        out: dict[str, np.ndarray] = {}

        def denorm(name: str, values: np.ndarray) -> np.ndarray:
            mean, std = stats[name]
            return (values * std + mean + self.offset(self.base, arch, name)).astype(np.float32)

        start = 0
        for b in layout.body:
            flat = tokens[start : start + b.chunks].reshape(-1)[: b.size]
            start += b.chunks
            w_shape, b_shape = shapes[f"{b.layer}.weight"], shapes[f"{b.layer}.bias"]
            n = math.prod(w_shape)
            out[f"{b.layer}.weight"] = denorm(f"{b.layer}.weight", flat[:n].reshape(w_shape))
            out[f"{b.layer}.bias"] = denorm(f"{b.layer}.bias", flat[n:].reshape(b_shape))
        rows = tokens[start:]
        out[f"{layout.head_layer}.weight"] = denorm(f"{layout.head_layer}.weight", rows[:, : layout.head_in])
        out[f"{layout.head_layer}.bias"] = denorm(f"{layout.head_layer}.bias", rows[:, layout.head_in])
        return out


@dataclasses.dataclass
class CnnCorpus:
    """Every zoo CNN as tokens, with the backbone features of its classes' images (the condition)."""

    features: np.ndarray  # [N, D] unit-norm backbone features of the images the zoo's classes use
    class_train: dict[str, np.ndarray]  # "dataset#index" → indices into features
    class_test: dict[str, np.ndarray]
    task_ids: list[str]
    task_dataset: list[str]
    task_class_indices: list[tuple[int, ...]]
    task_classes: list[list[str]]
    model_task: np.ndarray  # [M]
    model_arch: list[str]
    model_rows: list[dict]
    tokens: list[np.ndarray]  # per model [T, CHUNK]
    norm: CnnNorm  # its `base`: each arch's shared start (body tensors), when the zoo has one

    def draw_support(self, task: int, shots: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Per class of the task: indices of `shots` train images (fewer when the class has fewer)."""
        return draw_support(self.class_train, self.task_classes[task], shots, rng)

    def images(self, task: int, data_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return load_dataset_28(self.task_dataset[task], data_root, self.task_class_indices[task])


def load_cnn_corpus(zoo_dir: Path, data_root: Path, max_models: int = 0, archs: tuple[str, ...] = ()) -> CnnCorpus:
    rows = zoo_store.read_table(zoo_dir)
    if archs:
        rows = [r for r in rows if r["arch"] in archs]
    if max_models:
        rows = rows[:max_models]
    features, class_train, class_test = seen_class_features(sorted({d for row in rows for d in row["dataset_ids"]}),
                                                            data_root)
    task_index: dict[str, int] = {}
    task_dataset, task_class_indices, task_classes = [], [], []
    params: dict[str, list[dict[str, np.ndarray]]] = {}
    model_task, model_arch, ordered = [], [], []
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], []).append(row)
    for shard, shard_rows in by_shard.items():
        tensors, _ = safetensors.load(zoo_dir / shard)
        for row in shard_rows:
            names = [n for n, _ in get_arch(row["arch"]).layout()]
            params.setdefault(row["arch"], []).append({n: tensors[f"{row['model_id']}/{n}"] for n in names})
            if row["task_id"] not in task_index:
                task_index[row["task_id"]] = len(task_classes)
                dataset_id, indices = row["task_id"].split(":")
                task_dataset.append(dataset_id)
                task_class_indices.append(tuple(int(i) for i in indices.split(",")))
                task_classes.append(list(row["classes"]))
            model_task.append(task_index[row["task_id"]])
            model_arch.append(row["arch"])
            ordered.append(row)
    norm = CnnNorm.fit(params, shared_bases(zoo_dir, sorted(params)))
    cursor = {arch: 0 for arch in params}
    tokens = []
    for arch in model_arch:
        tokens.append(norm.to_tokens(arch, params[arch][cursor[arch]]))
        cursor[arch] += 1
    return CnnCorpus(
        features=features, class_train=class_train, class_test=class_test,
        task_ids=list(task_index), task_dataset=task_dataset, task_class_indices=task_class_indices,
        task_classes=task_classes, model_task=np.array(model_task), model_arch=model_arch, model_rows=ordered,
        tokens=tokens, norm=norm,
    )


def shared_bases(zoo_dir: Path, archs: list[str]) -> dict[str, dict[str, np.ndarray]] | None:
    """The body tensors of each arch's base (`zoo_dir/bases/ARCH.safetensors`, a shared-start zoo), or
    None for a zoo of independently seeded CNNs."""
    folder = zoo_dir / "bases"
    if not folder.exists():
        return None
    out = {}
    for arch in archs:
        tensors, _ = safetensors.load(folder / f"{arch}.safetensors")
        last = get_arch(arch).dense[-1].name
        out[arch] = {name: np.array(v, np.float32) for name, v in tensors.items() if not name.startswith(last + ".")}
    return out


def cnn_accuracy(arch: str | CnnArch, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(arch, params, x).argmax(-1) == y).mean())
