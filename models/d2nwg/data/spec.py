"""What a dataset is before it is rendered: its classes, their sources, and the seeds of its images.

A `DatasetSpec` holds everything its images depend on (sources, package
versions, render settings, seed, partition), so its canonical JSON is the
"config" that the dataset's content hash covers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

import numpy as np

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    name: str  # the class in its source's words, e.g. "DEVANAGARI DIGIT ZERO" or "animals/birds"
    slug: str  # folder name on disk, e.g. "0-devanagari-digit-zero"
    instances: tuple[str, ...]  # what its images are drawn from: characters, emoji, files, records
    train: int  # images per split
    test: int


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    dataset_id: str  # e.g. "glyph-digits/devanagari"; may contain "/"
    family: str  # pool family, e.g. "glyph-digits"
    unit: str  # partition unit: datasets of one unit always land on the same side
    partition: str  # "seen" or "unseen"
    packages: dict[str, str]  # Debian package → installed version
    classes: tuple[ClassSpec, ...]
    params: dict[str, Any]  # render settings, seed, fonts: everything else the pixels depend on

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def image_count(self, split: str) -> int:
        return sum(getattr(c, split) for c in self.classes)


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug:
        raise ValueError(f"{text!r} has no ASCII letters or digits to name a folder with")
    return slug


def class_slugs(names: list[str]) -> list[str]:
    """Folder names for classes in their fixed order; the index prefix keeps them unique and ordered."""
    return [f"{i}-{slugify(name)}" for i, name in enumerate(names)]


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from named parts; unlike hash(), the same in every process and run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def image_rng(seed: int, dataset_id: str, class_name: str, split: str, k: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, dataset_id, class_name, split, k))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def content_hash(spec: DatasetSpec, image_sha256s: list[str]) -> str:
    """sha256 over the dataset's config and its sorted image hashes."""
    digest = hashlib.sha256(canonical_json(spec.as_dict()).encode())
    for sha in sorted(image_sha256s):
        digest.update(b"\n" + sha.encode())
    return digest.hexdigest()
