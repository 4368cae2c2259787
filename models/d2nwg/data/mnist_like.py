"""Real benchmarks, both held out (unseen): Fashion-MNIST and scikit-learn's 8×8 handwritten digits.

- `fashion-mnist` (dataset-fashion-mnist): 28×28 grey garments, bright on black.
  Each class takes a seeded subset of the official train split and of the
  official test split, so the benchmark's split is kept.
- `digits-8x8` (python3-sklearn, `load_digits`, offline): 8×8 digits with ink
  levels 0..16, drawn as 0..255 (bright ink on black, as the data stores it).
  It has no official split: each class's images are seeded-shuffled and cut.

Both keep their own polarity and are upscaled (bicubic) to `image_size` and
saved as RGB, like every other pool.
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from typing import Iterator

import numpy as np
from PIL import Image

from .debian import package_file, package_version
from .settings import DatasetsConfig
from .spec import ClassSpec, DatasetSpec, class_slugs, derive_seed


FASHION_PACKAGE = "dataset-fashion-mnist"
DIGITS_PACKAGE = "python3-sklearn"
RENDERER = "mnist-like/1"
# Label order of the Fashion-MNIST README (/usr/share/doc/dataset-fashion-mnist).
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
)
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(name: str) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian dims after a magic number) of the Fashion-MNIST package."""
    data = gzip.decompress(package_file(FASHION_PACKAGE, name).read_bytes())
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.lru_cache(maxsize=2)
def fashion_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = FASHION_FILES[split]
    return read_idx(images), read_idx(labels)


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # slow to import; only this pool needs it

    data = load_digits()
    return data.images, data.target


def _pick(indices: np.ndarray, count: int, *seed_parts: object) -> list[int]:
    if count > len(indices):
        raise ValueError(f"asked for {count} images of {seed_parts}, but only {len(indices)} exist")
    rng = np.random.default_rng(derive_seed(*seed_parts))
    return sorted(int(i) for i in rng.choice(indices, size=count, replace=False))


def _spec(dataset_id: str, package: str, classes: list[ClassSpec], config: DatasetsConfig) -> DatasetSpec:
    return DatasetSpec(
        dataset_id=dataset_id,
        family=dataset_id,
        unit=dataset_id,
        partition="unassigned",
        packages={package: package_version(package)},
        classes=tuple(classes),
        params={"renderer": RENDERER, "seed": config.seed, "image_size": config.image_size},
    )


def plan(config: DatasetsConfig) -> list[DatasetSpec]:
    counts = {"train": config.fashion_train_per_class, "test": config.fashion_test_per_class}
    fashion = []
    for label, (name, slug) in enumerate(zip(FASHION_CLASSES, class_slugs(list(FASHION_CLASSES)))):
        records = []
        for split, count in counts.items():
            (indices,) = np.nonzero(fashion_split(split)[1] == label)
            records += [f"{split}/{i}" for i in _pick(indices, count, config.seed, "fashion-mnist", name, split)]
        fashion.append(ClassSpec(name, slug, tuple(records), counts["train"], counts["test"]))

    train, test = config.digits8x8_train_per_class, config.digits8x8_test_per_class
    names = [unicodedata.name(str(d)) for d in range(10)]  # "DIGIT ZERO", the glyph pools' words
    handwritten = []
    for label, (name, slug) in enumerate(zip(names, class_slugs(names))):
        (indices,) = np.nonzero(digits()[1] == label)
        picked = _pick(indices, train + test, config.seed, "digits-8x8", name)
        order = np.random.default_rng(derive_seed(config.seed, "digits-8x8", name, "split")).permutation(picked)
        handwritten.append(ClassSpec(name, slug, tuple(str(i) for i in order), train, test))
    return [
        _spec("fashion-mnist", FASHION_PACKAGE, fashion, config),
        _spec("digits-8x8", DIGITS_PACKAGE, handwritten, config),
    ]


def _upscaled(grey: np.ndarray, size: int) -> Image.Image:
    image = Image.fromarray(grey, "L").resize((size, size), Image.Resampling.BICUBIC)
    return image.convert("RGB")


def render_dataset(spec: DatasetSpec) -> Iterator[tuple[int, str, int, Image.Image]]:
    size = spec.params["image_size"]
    for class_index, cls in enumerate(spec.classes):
        for split, records in (("train", cls.instances[: cls.train]), ("test", cls.instances[cls.train :])):
            for k, record in enumerate(records):
                if spec.family == "fashion-mnist":
                    source_split, index = record.split("/")
                    grey = fashion_split(source_split)[0][int(index)]
                else:
                    grey = np.rint(digits()[0][int(record)] * (255.0 / 16.0)).astype(np.uint8)
                yield class_index, split, k, _upscaled(grey, size)
