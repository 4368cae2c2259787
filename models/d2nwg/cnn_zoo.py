"""The CNN zoo's models: small CNNs on 28×28 grayscale images, trained a population at a time.

Images of a built dataset (format: `data/store.py`) are letterboxed, shrunk
to 28×28, made grayscale and, when on white, inverted, so ink is high and
background 0 as in MNIST; the converted images of a dataset are cached as
`<cache>/cnn28/<content hash>.v<CONVERSION>.npy` (uint8, index.json order).

The architectures (`cnn-s`, `cnn-w`) and the plain forward pass live in
`networks.py`.

A population is P models trained at once, each with its own dataset, its own
initialisation (from its arch and seed, so one seed starts from the same
weights on every dataset, as in the model zoo) and its own data order and
augmentation (from seed, dataset and classes). Their parameters are stacked
along a leading model axis; convolutions run as one grouped convolution
(groups=P, the models' inputs stacked along channels) and dense layers as one
batched matmul. Each model takes the same steps as when trained alone: a model
whose epoch has fewer batches sits out the extra steps (masked loss, and
`PopulationAdam` leaves it untouched), so a population reproduces
`train_alone`, the plain nn.Module loop, up to float rounding: weights agree
to 1e-7 after 2 epochs; through Adam the rounding grows to ~0.05 on single
weights after 30 epochs, with the same held-out accuracy.

Measured speed-up (`python3 -m d2nwg.cnn_zoo benchmark --arch A --epochs 30`:
P=20 models, 10 glyph-letter 10-class subsets × 2 seeds, 300 train images
each, the full recipe, 1 thread, on a 2-core machine shared with a dataset
build; training wall seconds per model, evaluation not included):

    cnn-s  population 0.54 s, alone 0.87 s: 1.6× faster
    cnn-w  population 1.68 s, alone 2.24 s: 1.3× faster

Both are bound by convolution arithmetic, which grouping does not make
cheaper on one CPU core (a grouped conv costs about what P small ones do);
the population saves the per-step overhead of autograd, the optimizer and
Python, which is larger for the smaller cnn-s.

Usage (from `models/`), to measure it again:

    /usr/bin/python3 -m d2nwg.cnn_zoo benchmark [--arch cnn-s] [--models 20] [--epochs 30] [--data DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import cache_dir
from . import safetensors
from .data import store
from .data.spec import derive_seed
from .networks import (ARCHS, CLASSES, IMAGE_SIDE, CnnArch, CnnModule, get_arch, init_params, population_body,
                       population_forward)

CONVERSION = 1  # bump when to_grayscale_28 changes: it names the cached arrays


# ---------------------------------------------------------------------------
# Images: PNG → 28×28 ink-on-black, cached per dataset


def luma(png_path: Path | str) -> Image.Image:
    """The image as 8-bit grayscale ("L"), transparency composited on white first (rounded per channel).

    Every built dataset is opaque RGB, for which this is plain convert("L"): the
    converted arrays (CONVERSION 1) are unchanged by the compositing.
    """
    image = Image.open(png_path)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:] / 255.0
        image = Image.fromarray(np.round(rgba[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8), "RGB")
    return image.convert("L")


def background_is_dark(image: Image.Image) -> bool:
    """Whether a grayscale image's outermost pixel ring is mostly dark (bright ink on black)."""
    pixels = np.asarray(image)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return bool(np.median(ring) < 128)


def to_grayscale_28(png_path: Path | str, dark_background: bool | None = None) -> np.ndarray:
    """[28, 28] float32 in [0, 1], ink high and background 0: letterboxed, antialiased down to 28 px.

    Images on white are inverted; images that are already bright on black
    (the Fashion-MNIST and 8×8-digits benchmarks keep their own polarity)
    are not. `dark_background` None: judged from this image's border.
    """
    image = luma(png_path)
    if dark_background is None:
        dark_background = background_is_dark(image)
    side = max(image.size)
    square = Image.new("L", (side, side), 0 if dark_background else 255)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    # PIL widens the bilinear kernel by the shrink factor, so this averages every source pixel.
    small = np.asarray(square.resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR), dtype=np.float32)
    return (small if dark_background else 255 - small) / 255.0


def _converted_images(dataset_id: str, data_root: Path, index: dict, cache_root: Path) -> np.ndarray:
    """uint8 [N, 28, 28] of every image of index.json, in its order; converted once per content hash.

    The polarity is decided once per dataset, by the majority of its images'
    borders, so an odd dark-framed image does not come out inverted.
    """
    path = cache_root / "cnn28" / f"{index['content_hash']}.v{CONVERSION}.npy"
    if path.exists():
        images = np.load(path)
        if images.shape == (len(index["images"]), IMAGE_SIDE, IMAGE_SIDE):
            return images
    files = [store.dataset_dir(data_root, dataset_id) / entry["file"] for entry in index["images"]]
    dark = [background_is_dark(luma(f)) for f in files]
    dark_background = sum(dark) * 2 > len(dark)
    images = np.stack([np.round(to_grayscale_28(f, dark_background) * 255).astype(np.uint8) for f in files])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")  # workers may convert the same dataset
    np.save(partial, images)
    os.replace(partial, path)
    return images


def load_dataset_28(
    dataset_id: str, data_root: Path | str, classes: list[int] | tuple[int, ...] | None = None,
    cache_root: Path | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train [N, 1, 28, 28] float32, y_train [N] int64, x_test, y_test) of one dataset.

    With `classes`, only those class indices, labelled 0.. in the order given;
    `cache_root` is the cache directory (default `config.cache_dir()`).
    """
    data_root = Path(data_root)
    index = store.read_index(data_root, dataset_id)
    if index is None:
        raise FileNotFoundError(f"{dataset_id} is not built under {data_root}")
    images = _converted_images(dataset_id, data_root, index, Path(cache_root) if cache_root else cache_dir())
    labels = np.array([entry["class_index"] for entry in index["images"]], dtype=np.int64)
    is_train = np.array([entry["split"] == "train" for entry in index["images"]])
    chosen = list(range(len(index["classes"]))) if classes is None else list(classes)
    relabel = np.full(len(index["classes"]), -1, dtype=np.int64)
    relabel[chosen] = np.arange(len(chosen))
    new_labels = relabel[labels]
    out = []
    for train in (True, False):
        mask = (is_train == train) & (new_labels >= 0)
        out += [(images[mask].astype(np.float32) / 255.0)[:, None], new_labels[mask]]
    return out[0], out[1], out[2], out[3]


def cnn_datasets(
    data_root: Path | str, min_train_per_class: int, subsets_per_dataset: int = 3, seed: int = 20250124
) -> list[tuple[str, tuple[int, ...]]]:
    """The (dataset id, 10 class indices) the zoo trains on, from seen datasets only.

    A seen dataset with exactly 10 classes is taken whole; one with more gives
    up to `subsets_per_dataset` disjoint 10-class subsets of a seeded shuffle
    of its classes (sorted within a subset). Classes with fewer than
    `min_train_per_class` train images do not count.
    """
    chosen = []
    for path in sorted(Path(data_root).rglob("index.json")):
        index = json.loads(path.read_text())
        if index["partition"] != "seen":
            continue
        train_counts = np.bincount(
            [i["class_index"] for i in index["images"] if i["split"] == "train"], minlength=len(index["classes"])
        )
        usable = [c for c, n in enumerate(train_counts) if n >= min_train_per_class]
        if len(index["classes"]) == CLASSES and len(usable) == CLASSES:
            chosen.append((index["dataset_id"], tuple(usable)))
        elif len(index["classes"]) > CLASSES and len(usable) >= CLASSES:
            order = np.random.default_rng(derive_seed(seed, "cnn-subsets", index["dataset_id"])).permutation(usable)
            for k in range(min(subsets_per_dataset, len(usable) // CLASSES)):
                subset = order[k * CLASSES : (k + 1) * CLASSES]
                chosen.append((index["dataset_id"], tuple(sorted(int(c) for c in subset))))
    return sorted(chosen)


# ---------------------------------------------------------------------------
# Training: one recipe, one model alone or a population at once


@dataclasses.dataclass(frozen=True)
class CnnRecipe:
    """How every CNN of the zoo is trained (one fixed recipe)."""

    epochs: int = 30
    learning_rate: float = 1e-2  # Adam, no weight decay; 3e-3 left cnn-w at 0.70 held-out accuracy after 30 epochs
    batch_size: int = 32
    shift_px: int = 2  # augmentation: each training image moves by a random whole-pixel shift in [-2, 2]² (zero fill)
    snapshot_epochs: int = 10  # the parameters after each of the last this many epochs are saved

    def snapshots(self) -> range:
        return range(max(1, self.epochs - self.snapshot_epochs + 1), self.epochs + 1)


def data_seed(seed: int, dataset_id: str, classes: tuple[int, ...] | None) -> int:
    return derive_seed("cnn-data", seed, dataset_id, classes)


def epoch_plan(rng: np.random.Generator, count: int, shift_px: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of one model: its images in a fresh order, and each one's (dy, dx) shift."""
    order = rng.permutation(count)
    return order, rng.integers(-shift_px, shift_px + 1, size=(count, 2))


def shift_images(x: torch.Tensor, shifts: torch.Tensor, shift_px: int) -> torch.Tensor:
    """x [N, 1, 28, 28] moved by shifts [N, 2] (dy, dx) whole pixels, with zeros (background) coming in."""
    if shift_px == 0:
        return x
    padded = F.pad(x[:, 0], (shift_px,) * 4)
    grid = torch.arange(IMAGE_SIDE)
    rows = grid[None, :] - shifts[:, :1] + shift_px  # [N, 28]
    cols = grid[None, :] - shifts[:, 1:] + shift_px
    n = torch.arange(len(x))[:, None, None]
    return padded[n, rows[:, :, None], cols[:, None, :]][:, None]


def train_alone(
    arch: CnnArch, x_train: np.ndarray, y_train: np.ndarray, init_seed: int, order_seed: int, recipe: CnnRecipe
) -> dict[int, dict[str, torch.Tensor]]:
    """One model with the plain nn.Module loop and torch.optim.Adam; {epoch: named parameters} at snapshot epochs."""
    model = CnnModule(arch)
    model.load_state_dict(init_params(arch, init_seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate)
    rng = np.random.default_rng(order_seed)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    snapshots = {}
    for epoch in range(1, recipe.epochs + 1):
        order, shifts = epoch_plan(rng, len(y), recipe.shift_px)
        for start in range(0, len(y), recipe.batch_size):
            batch = torch.from_numpy(order[start : start + recipe.batch_size])
            shift = torch.from_numpy(shifts[start : start + recipe.batch_size])
            images = shift_images(x[batch], shift, recipe.shift_px)
            loss = F.cross_entropy(model(images), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch in recipe.snapshots():
            snapshots[epoch] = {name: p.detach().clone() for name, p in model.state_dict().items()}
    return snapshots


class PopulationAdam:
    """torch.optim.Adam (no weight decay) on stacked parameters [P, ...]; only models that took a batch move."""

    def __init__(self, params: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(len(params[0]), dtype=torch.float64)  # per model

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:  # active [P] bool
        beta1, beta2 = self.betas
        self.steps += active
        steps = self.steps.clamp(min=1)
        step_size = (self.lr / (1 - beta1**steps)).float()  # [P]; bias corrections as in torch.optim.Adam
        correction2_sqrt = (1 - beta2**steps).sqrt().float()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            shape = (-1,) + (1,) * (p.dim() - 1)
            moving = active.view(shape)
            g = p.grad
            m.copy_(torch.where(moving, m * beta1 + g * (1 - beta1), m))
            v.copy_(torch.where(moving, v * beta2 + g * g * (1 - beta2), v))
            denom = v.sqrt() / correction2_sqrt.view(shape) + self.eps
            p.sub_(torch.where(moving, step_size.view(shape) * m / denom, torch.zeros(())))


def _stack_padded(arrays: list[np.ndarray]) -> torch.Tensor:
    out = np.zeros((len(arrays), max(len(a) for a in arrays)) + arrays[0].shape[1:], dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return torch.from_numpy(out)


def train_population(
    arch: CnnArch, x_trains: list[np.ndarray], y_trains: list[np.ndarray],
    init_seeds: list[int], order_seeds: list[int], recipe: CnnRecipe,
    initial: list[dict[str, torch.Tensor]] | None = None,
) -> dict[int, dict[str, torch.Tensor]]:
    """P models at once, model p as train_alone(arch, x_trains[p], ...); {epoch: named parameters [P, ...]}.

    `initial`: start model p from initial[p] (fine-tuning) instead of the init of init_seeds[p]."""
    models = len(x_trains)
    inits = initial if initial is not None else [init_params(arch, s) for s in init_seeds]
    params = {name: torch.stack([init[name] for init in inits]).requires_grad_() for name, _ in arch.layout()}
    optimizer = PopulationAdam(list(params.values()), lr=recipe.learning_rate)
    rngs = [np.random.default_rng(s) for s in order_seeds]
    x, y = _stack_padded(x_trains), _stack_padded(y_trains)  # [P, Nmax, 1, 28, 28], [P, Nmax]
    counts = [len(a) for a in y_trains]
    batch = recipe.batch_size
    steps = max(math.ceil(n / batch) for n in counts)
    model_index = torch.arange(models)[:, None]
    snapshots = {}
    for epoch in range(1, recipe.epochs + 1):
        plans = [epoch_plan(rng, n, recipe.shift_px) for rng, n in zip(rngs, counts)]
        order = _stack_padded([p[0] for p in plans])  # [P, Nmax]; padding slots point at image 0 and are masked
        shifts = _stack_padded([p[1] for p in plans])
        taken = torch.from_numpy(np.arange(order.shape[1])[None, :] < np.array(counts)[:, None]).float()
        for step in range(steps):
            window = slice(step * batch, (step + 1) * batch)
            index, weight = order[:, window], taken[:, window]  # [P, B]
            images = shift_images(x[model_index, index].flatten(0, 1), shifts[:, window].flatten(0, 1), recipe.shift_px)
            logits = population_forward(arch, params, images.view(models, -1, *images.shape[1:]))
            labels = y[model_index, index].flatten()
            loss = F.cross_entropy(logits.flatten(0, 1), labels, reduction="none").view(models, -1)  # [P, B]
            # Sum over models of each model's mean batch loss: every model gets exactly its own gradient.
            loss = ((loss * weight).sum(1) / weight.sum(1).clamp(min=1)).sum()
            for p in params.values():
                p.grad = None
            loss.backward()
            optimizer.step(weight.sum(1) > 0)
        if epoch in recipe.snapshots():
            snapshots[epoch] = {name: p.detach().clone() for name, p in params.items()}
    return snapshots


def population_accuracy(
    arch: CnnArch, params: dict[str, torch.Tensor], xs: list[np.ndarray], ys: list[np.ndarray], chunk: int = 256
) -> list[float]:
    """Accuracy of each of P models (params [P, ...]) on its own images xs[p]."""
    x, y = _stack_padded(xs), _stack_padded(ys)
    correct = torch.zeros(len(xs))
    with torch.no_grad():
        for start in range(0, x.shape[1], chunk):
            logits = population_forward(arch, params, x[:, start : start + chunk])
            hits = (logits.argmax(-1) == y[:, start : start + chunk]).float()
            valid = torch.arange(start, start + hits.shape[1])[None, :] < torch.tensor([len(a) for a in ys])[:, None]
            correct += (hits * valid).sum(1)
    return [float(c) / max(1, len(a)) for c, a in zip(correct, ys)]


# ---------------------------------------------------------------------------
# The shared start: one body for every task, and a last layer from class means


@dataclasses.dataclass(frozen=True)
class BaseRecipe:
    """How the shared base CNN is trained: one body over the union of the tasks, one 10-way last layer
    per task (multi-task), Adam, shuffled batches that mix the tasks."""

    epochs: int = 20
    learning_rate: float = 3e-3
    batch_size: int = 128
    shift_px: int = 2


def train_base(arch: CnnArch, x_trains: list[np.ndarray], y_trains: list[np.ndarray], seed: int,
               recipe: BaseRecipe) -> dict[str, torch.Tensor]:
    """The base: named parameters of one model of `arch` (shapes as `layout()`, no model axis) whose body
    was trained on every task's images at once; its last layer is task 0's (the zoo replaces it by class
    means for each task). Task t's images x_trains[t] carry labels y_trains[t] in 0..9."""
    params = {name: t[None].clone().requires_grad_() for name, t in init_params(arch, seed).items()}
    last = arch.dense[-1]
    generator = torch.Generator().manual_seed(derive_seed("cnn-base-heads", arch.name, seed) % 2**63)
    bound = 1 / math.sqrt(last.in_features)
    heads_w = ((torch.rand(len(x_trains), CLASSES, last.in_features, generator=generator) * 2 - 1) * bound).requires_grad_()
    heads_b = ((torch.rand(len(x_trains), CLASSES, generator=generator) * 2 - 1) * bound).requires_grad_()
    body = [params[name] for name, _ in arch.layout() if not name.startswith(last.name + ".")]
    optimizer = torch.optim.Adam(body + [heads_w, heads_b], lr=recipe.learning_rate)
    x = torch.from_numpy(np.concatenate(x_trains))
    y = torch.from_numpy(np.concatenate(y_trains))
    task = torch.from_numpy(np.concatenate([np.full(len(a), t) for t, a in enumerate(y_trains)]))
    rng = np.random.default_rng(derive_seed("cnn-base-order", arch.name, seed))
    for _ in range(recipe.epochs):
        order, shifts = epoch_plan(rng, len(y), recipe.shift_px)
        for start in range(0, len(y), recipe.batch_size):
            batch = torch.from_numpy(order[start : start + recipe.batch_size])
            images = shift_images(x[batch], torch.from_numpy(shifts[start : start + recipe.batch_size]), recipe.shift_px)
            h = population_body(arch, params, images[None])[0]  # [B, F]
            t = task[batch]
            logits = torch.einsum("bf,bcf->bc", h, heads_w[t]) + heads_b[t]
            loss = F.cross_entropy(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    out = {name: p.detach()[0].clone() for name, p in params.items()}
    out[f"{last.name}.weight"], out[f"{last.name}.bias"] = heads_w.detach()[0].clone(), heads_b.detach()[0].clone()
    return out


def save_base(path: Path, base: dict[str, torch.Tensor], meta: dict) -> None:
    """The base's named tensors and its metadata (`meta`, strings to JSON values) in one safetensors file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.save(path, {name: t.numpy() for name, t in base.items()}, {k: json.dumps(v) for k, v in meta.items()})


def load_base(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = safetensors.load(path)
    return {name: torch.from_numpy(np.array(t, np.float32)) for name, t in tensors.items()}


def base_meta(path: Path) -> dict:
    _, meta = safetensors.load(path)
    return {k: json.loads(v) for k, v in meta.items()}


def body_features(arch: CnnArch, params: dict[str, torch.Tensor], x: np.ndarray, chunk: int = 1024) -> torch.Tensor:
    """Penultimate features [N, F] of one model (named parameters without a model axis) on images x."""
    batched = {name: t[None] for name, t in params.items()}
    with torch.no_grad():
        return torch.cat([population_body(arch, batched, torch.from_numpy(x[i : i + chunk])[None])[0]
                          for i in range(0, len(x), chunk)])


# The logit scales the class-mean layer may take: the one with the lowest training loss is used.
CLASS_MEAN_SCALES = tuple(float(v) for v in np.geomspace(0.5, 64, 15))


def class_mean_layer(features: torch.Tensor, labels: np.ndarray, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last layer of a nearest-class-mean classifier on penultimate features [N, F]: logits
    s·(μ_c·h − ½‖μ_c‖²), the squared distance to each class mean up to a term common to all classes,
    with s the scale of `CLASS_MEAN_SCALES` whose cross-entropy on these images is lowest."""
    y = torch.from_numpy(np.asarray(labels))
    means = torch.stack([features[y == c].mean(0) for c in range(classes)])
    weight, bias = means, -0.5 * (means ** 2).sum(1)
    base = features @ weight.T + bias
    losses = [float(F.cross_entropy(s * base, y)) for s in CLASS_MEAN_SCALES]
    scale = CLASS_MEAN_SCALES[int(np.argmin(losses))]
    return scale * weight, scale * bias


def with_class_means(arch: CnnArch, body: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray,
                     classes: int = CLASSES) -> dict[str, torch.Tensor]:
    """`body`'s parameters with the last layer replaced by `class_mean_layer` on images x, labels y."""
    last = arch.dense[-1].name
    weight, bias = class_mean_layer(body_features(arch, body, x), y, classes)
    return {**body, f"{last}.weight": weight, f"{last}.bias": bias}


# ---------------------------------------------------------------------------
# The job the zoo stage runs (picklable in, plain records out)


@dataclasses.dataclass(frozen=True)
class CnnJob:
    job_id: str
    arch: str
    members: tuple[tuple[str, tuple[int, ...] | None, int], ...]  # (dataset id, 10 class indices or None: all 10, seed)
    data_root: str
    cache_root: str  # the cache directory; converted images go to <cache_root>/cnn28/
    recipe: CnnRecipe = CnnRecipe()
    # The shared start (`save_base`): every member fine-tunes the base's body, its last layer first set
    # from class means (`with_class_means`); the seed then only draws the data order. None: each member
    # starts from the init of its seed.
    base_file: str | None = None


def train_cnn_job(job: CnnJob) -> list[dict]:
    """Trains the job's members as one population; one record per member and snapshot epoch.

    Records: model_id, dataset_id, classes (class indices in label order),
    class_names, arch, seed, epoch, tensors ({name: float32 array} in
    layout order), train_accuracy (un-augmented train split),
    heldout_accuracy (test split), train_images, heldout_images, wall_s
    (the population's training time divided by its size).
    """
    arch = get_arch(job.arch)
    data_root = Path(job.data_root)
    members = []  # (dataset id, class tuple, seed); None spelled out, so both spellings draw the same data order
    datasets: dict[tuple[str, tuple[int, ...]], tuple] = {}
    names: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for dataset_id, classes, seed in job.members:
        index = store.read_index(data_root, dataset_id)
        if index is None:
            raise FileNotFoundError(f"{dataset_id} is not built under {data_root}")
        chosen = tuple(range(len(index["classes"]))) if classes is None else tuple(int(c) for c in classes)
        if len(chosen) != CLASSES:
            raise ValueError(f"{dataset_id}: a zoo CNN needs {CLASSES} classes, got {len(chosen)}")
        if (dataset_id, chosen) not in datasets:
            datasets[(dataset_id, chosen)] = load_dataset_28(dataset_id, data_root, chosen, job.cache_root)
            names[(dataset_id, chosen)] = [index["classes"][c]["name"] for c in chosen]
        members.append((dataset_id, chosen, seed))
    data = [datasets[(d, c)] for d, c, _ in members]
    started = time.monotonic()
    initial = None
    if job.base_file is not None:
        base = load_base(Path(job.base_file))
        initial = [with_class_means(arch, base, d[0], d[1]) for d in data]
    snapshots = train_population(
        arch, [d[0] for d in data], [d[1] for d in data], [s for *_, s in members],
        [data_seed(s, d, c) for d, c, s in members], job.recipe, initial=initial,
    )
    wall_s = (time.monotonic() - started) / len(members)
    records = []
    for epoch, params in snapshots.items():
        train_accuracy = population_accuracy(arch, params, [d[0] for d in data], [d[1] for d in data])
        heldout_accuracy = population_accuracy(arch, params, [d[2] for d in data], [d[3] for d in data])
        for m, (dataset_id, classes, seed) in enumerate(members):
            records.append({
                "model_id": f"{job.job_id}-m{m:03d}-s{seed}-e{epoch:03d}",
                "dataset_id": dataset_id,
                "classes": list(classes),
                "class_names": names[(dataset_id, classes)],
                "arch": arch.name,
                "seed": seed,
                "epoch": epoch,
                "tensors": {name: params[name][m].numpy().copy() for name, _ in arch.layout()},
                "train_accuracy": train_accuracy[m],
                "heldout_accuracy": heldout_accuracy[m],
                "train_images": len(data[m][1]),
                "heldout_images": len(data[m][3]),
                "wall_s": wall_s,
            })
    return records


# ---------------------------------------------------------------------------
# Speed-up measurement


def benchmark(arch_name: str, dataset_ids: list[tuple[str, tuple[int, ...]]], seeds: list[int], data_root: Path,
              cache_root: Path, recipe: CnnRecipe) -> dict:
    """Wall seconds per model: every (dataset, seed) trained as one population, then each alone."""
    arch = get_arch(arch_name)
    members = [(d, c, s) for d, c in dataset_ids for s in seeds]
    data = {(d, c): load_dataset_28(d, data_root, c, cache_root) for d, c in dataset_ids}
    xs, ys = [data[(d, c)][0] for d, c, _ in members], [data[(d, c)][1] for d, c, _ in members]
    order_seeds = [data_seed(s, d, c) for d, c, s in members]
    started = time.monotonic()
    train_population(arch, xs, ys, [s for *_, s in members], order_seeds, recipe)
    population_s = (time.monotonic() - started) / len(members)
    started = time.monotonic()
    for x, y, (_, _, s), o in zip(xs, ys, members, order_seeds):
        train_alone(arch, x, y, s, o, recipe)
    alone_s = (time.monotonic() - started) / len(members)
    return {"arch": arch_name, "models": len(members), "epochs": recipe.epochs, "threads": torch.get_num_threads(),
            "population_s_per_model": population_s, "alone_s_per_model": alone_s, "speedup": alone_s / population_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg.cnn_zoo", description="population vs one-at-a-time speed")
    parser.add_argument("command", choices=["benchmark"])
    parser.add_argument("--data", type=Path, default=cache_dir() / "data")
    parser.add_argument("--arch", default="cnn-s", choices=sorted(ARCHS))
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=CnnRecipe().epochs)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    datasets = cnn_datasets(args.data, min_train_per_class=10)[: math.ceil(args.models / args.seeds)]
    recipe = CnnRecipe(epochs=args.epochs, snapshot_epochs=1)
    result = benchmark(args.arch, datasets, list(range(args.seeds)), args.data, cache_dir(), recipe)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
