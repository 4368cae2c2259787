"""Folder pools: clip art (openclipart-png) and Tux Paint stamps, one dataset per top-level category.

`clipart/<category>` and `stamps/<category>` have as classes the folders of
that category (its own folder included) that directly hold at least
`clipart_min_images` / `stamps_min_images` distinct PNGs; a class is named by
its folder path, e.g. "animals/birds". Images of subfolders belong to the
subfolder's class only, so classes never share a file. A class takes up to
train + test usable images in a seeded order and splits them in that ratio;
it needs one image per split, a dataset two classes.

Duplicates are removed across both pools (Tux Paint draws many stamps from
Open Clip Art): a file whose bytes already appeared earlier, in path order
over clipart then stamps, is not a candidate again; while images are picked,
one whose 8×8 colour thumbnail matches an image picked before is skipped too.
Also skipped: mirrored stamps (`*_mirror.png`), images above
MAX_SOURCE_PIXELS, and images that are blank on white (white art on
transparency). Images are alpha-composited on white, shrunk so the longer
side is at most `folder_max_side` (never enlarged) and saved as RGB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from .debian import package_files, package_version
from .settings import DatasetsConfig
from .spec import ClassSpec, DatasetSpec, class_slugs, derive_seed, slugify


POOLS = {"clipart": "openclipart-png", "stamps": "tuxpaint-stamps-default"}
RENDERER = "folders/1"
MAX_SOURCE_PIXELS = 25_000_000  # a few files are 16000 px posters; decoding them costs seconds and GBs
BLANK_STD = 2.0  # grey-level std below which an image on white shows nothing


def _pool_files(package: str) -> tuple[Path, list[Path]]:
    """The package's PNG root folder and its PNG files, sorted."""
    files = [p for p in package_files(package) if p.suffix == ".png" and not p.stem.endswith("_mirror")]
    return Path(os.path.commonpath([p.parent for p in files])), files


def discover(config: DatasetsConfig) -> list[DatasetSpec]:
    """Draft datasets whose classes list every candidate file, in seeded order; counts not yet final."""
    claimed: set[bytes] = set()
    specs = []
    for family, package in POOLS.items():
        root, files = _pool_files(package)
        min_images = {"clipart": config.clipart_min_images, "stamps": config.stamps_min_images}[family]
        by_folder: dict[str, list[str]] = {}
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).digest()
            if digest not in claimed:
                claimed.add(digest)
                by_folder.setdefault(path.parent.relative_to(root).as_posix(), []).append(str(path))
        by_category: dict[str, list[str]] = {}
        for folder, paths in sorted(by_folder.items()):
            if len(paths) >= min_images:
                by_category.setdefault(folder.split("/")[0], []).append(folder)
        for category, folders in sorted(by_category.items()):
            if len(folders) < 2:
                continue
            dataset_id = f"{family}/{slugify(category)}"
            classes = tuple(
                ClassSpec(folder, slug, _seeded_order(by_folder[folder], config.seed, dataset_id), 0, 0)
                for folder, slug in zip(folders, class_slugs(folders))
            )
            specs.append(
                DatasetSpec(
                    dataset_id=dataset_id,
                    family=family,
                    unit=f"{family}:{category}",
                    partition="unassigned",
                    packages={package: package_version(package)},
                    classes=classes,
                    params={"renderer": RENDERER, "seed": config.seed, "max_side": config.folder_max_side},
                )
            )
    return specs


def _seeded_order(paths: list[str], seed: int, dataset_id: str) -> tuple[str, ...]:
    return tuple(sorted(paths, key=lambda p: derive_seed(seed, dataset_id, p)))


def load_on_white(path: str, max_side: int) -> Image.Image | None:
    """The file composited on white and shrunk to `max_side`; None if it is too large to decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # palette-with-transparency notes; converting to RGBA is the fix
        try:
            source = Image.open(path)
        except Image.DecompressionBombError:
            return None
        with source:
            if source.width * source.height > MAX_SOURCE_PIXELS:
                return None
            rgba = source.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, rgba).convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return Image.frombytes("RGB", image.size, image.tobytes())  # drops metadata (ICC, gamma) from the source


def _thumbnail_key(image: Image.Image) -> bytes:
    return (np.asarray(image.resize((8, 8), Image.Resampling.BOX)) >> 5).tobytes()


def select_images(specs: list[DatasetSpec], config: DatasetsConfig) -> list[DatasetSpec]:
    """Folder datasets with their images picked: usable, unique, at most train + test per class.

    Walks datasets in list order, classes in order, candidates in seeded order;
    other families pass through. A class needs one image per split, a dataset two classes.
    """
    wanted = config.train_per_class + config.test_per_class
    seen_thumbnails: set[bytes] = set()
    out = []
    for spec in specs:
        if spec.family not in POOLS:
            out.append(spec)
            continue
        classes = []
        for cls in spec.classes:
            picked = []
            for path in cls.instances:
                image = load_on_white(path, spec.params["max_side"])
                if image is None or float(np.asarray(image.convert("L")).std()) < BLANK_STD:
                    continue
                key = _thumbnail_key(image)
                if key in seen_thumbnails:
                    continue
                seen_thumbnails.add(key)
                picked.append(path)
                if len(picked) == wanted:
                    break
            if len(picked) >= 2:
                train = min(len(picked) - 1, max(1, round(len(picked) * config.train_per_class / wanted)))
                classes.append(dataclasses.replace(cls, instances=tuple(picked), train=train, test=len(picked) - train))
        if len(classes) >= 2:
            names = [c.name for c in classes]
            classes = [dataclasses.replace(c, slug=s) for c, s in zip(classes, class_slugs(names))]
            out.append(dataclasses.replace(spec, classes=tuple(classes)))
    return out


def render_dataset(spec: DatasetSpec) -> Iterator[tuple[int, str, int, Image.Image]]:
    for class_index, cls in enumerate(spec.classes):
        for split, files in (("train", cls.instances[: cls.train]), ("test", cls.instances[cls.train :])):
            for k, path in enumerate(files):
                image = load_on_white(path, spec.params["max_side"])
                if image is None:
                    raise ValueError(f"{path} became too large to decode since it was planned")
                yield class_index, split, k, image
