"""The on-disk format of a built dataset, read by the feature extractor (an interface: change with care).

    <root>/<dataset-id>/index.json
    <root>/<dataset-id>/<class-slug>/<split>-<k>.png

index.json has exactly the keys of INDEX_KEYS; each image entry exactly
IMAGE_KEYS. PNGs are RGB without metadata chunks, so their bytes depend only
on their pixels (and zlib): the same seed gives byte-identical files.
index.json is written last; a dataset whose index matches its spec's content
hash and whose files exist is complete and is not built again.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from PIL import Image

from ..hashing import sha256_bytes
from .spec import DatasetSpec, content_hash

INDEX_KEYS = ("dataset_id", "family", "partition", "classes", "images", "content_hash")
CLASS_KEYS = ("name", "slug")
IMAGE_KEYS = ("file", "class_index", "split", "sha256")


def dataset_dir(root: Path, dataset_id: str) -> Path:
    return root.joinpath(*dataset_id.split("/"))


def png_bytes(image: Image.Image) -> bytes:
    # A fresh image carries no info dict, so no ICC/gamma/text chunk reaches the file.
    clean = Image.frombytes("RGB", image.size, image.convert("RGB").tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def read_index(root: Path, dataset_id: str) -> dict | None:
    path = dataset_dir(root, dataset_id) / "index.json"
    return json.loads(path.read_text()) if path.exists() else None


def built_hash(spec: DatasetSpec, root: Path) -> str | None:
    """The content hash of the dataset on disk if it is complete and built from this spec, else None."""
    index = read_index(root, spec.dataset_id)
    if index is None or tuple(index) != INDEX_KEYS:
        return None
    images = index["images"]
    if len(images) != spec.image_count("train") + spec.image_count("test"):
        return None
    if index["content_hash"] != content_hash(spec, [i["sha256"] for i in images]):
        return None
    folder = dataset_dir(root, spec.dataset_id)
    if not all((folder / i["file"]).is_file() for i in images):
        return None
    return index["content_hash"]


def write_dataset(
    spec: DatasetSpec, root: Path, images: Iterator[tuple[int, str, int, Image.Image]], expected_size: int | None
) -> dict:
    """Writes the dataset's PNGs and then its index.json; returns a short summary.

    `images` yields (class index, split, k, image); `expected_size` is the
    side every image must have, or None for images that keep their aspect.
    """
    started = time.monotonic()
    folder = dataset_dir(root, spec.dataset_id)
    if folder.exists():
        shutil.rmtree(folder)
    for cls in spec.classes:
        (folder / cls.slug).mkdir(parents=True)
    entries = []
    for class_index, split, k, image in images:
        if expected_size is not None and image.size != (expected_size, expected_size):
            raise ValueError(f"{spec.dataset_id}: image is {image.size}, expected {expected_size}×{expected_size}")
        data = png_bytes(image)
        file = f"{spec.classes[class_index].slug}/{split}-{k}.png"
        (folder / file).write_bytes(data)
        entries.append({"file": file, "class_index": class_index, "split": split, "sha256": sha256_bytes(data)})
    index = {
        "dataset_id": spec.dataset_id,
        "family": spec.family,
        "partition": spec.partition,
        "classes": [{"name": c.name, "slug": c.slug} for c in spec.classes],
        "images": entries,
        "content_hash": content_hash(spec, [e["sha256"] for e in entries]),
    }
    partial = folder / "index.json.partial"
    partial.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    os.replace(partial, folder / "index.json")
    return {"dataset_id": spec.dataset_id, "images": len(entries), "seconds": time.monotonic() - started}
