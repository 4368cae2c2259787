"""Build the meta-dataset: many small image-classification datasets from Debian packages, offline.

Pools (see `d2nwg/data/`): glyph-digits/<set> and glyph-letters/<set> (Noto
fonts), emoji/<group> (Noto Color Emoji), clipart/<category> (openclipart-png),
stamps/<category> (tuxpaint-stamps-default), and the held-out benchmarks
fashion-mnist and digits-8x8. Every dataset is seen or unseen by a fixed,
seeded rule (`d2nwg/data/partition.py`); unseen ones are never used for
training the zoo or the generator.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg datasets [--config NAME] [--only PREFIX] [--workers 1|2]

Writes `<cache>/data/<dataset-id>/index.json` and its PNGs (format:
`d2nwg/data/store.py`), where <cache> is $D2NWG_CACHE or `.cache/` at the
repository root, then `data/registry.json` and `data/contact-sheet.png`. With
`--config NAME` (e.g. `tiny`, a few datasets per family for CI) everything goes
to `<cache>/data-NAME/` instead, registry and sheet included, so the committed
registry is only ever the release one. `--only PREFIX` builds the datasets
whose id starts with PREFIX; the registry is written once all are built.
Resumable: a dataset whose index.json matches its config's content hash is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .config import DATA_DIR, as_dict, cache_dir, load_config
from .data import contact_sheet, emoji, folders, glyphs, mnist_like, partition, registry, store
from .data.settings import DatasetsConfig
from .data.spec import DatasetSpec, derive_seed

log = logging.getLogger("d2nwg.datasets")


# family → renders its images; the side every image must have (None: aspect kept)
RENDERERS = {
    "glyph-digits": (glyphs.render_dataset, "image_size"),
    "glyph-letters": (glyphs.render_dataset, "image_size"),
    "emoji": (emoji.render_dataset, "image_size"),
    "clipart": (folders.render_dataset, None),
    "stamps": (folders.render_dataset, None),
    "fashion-mnist": (mnist_like.render_dataset, "image_size"),
    "digits-8x8": (mnist_like.render_dataset, "image_size"),
}


def _few_per_family(specs: list[DatasetSpec], count: int) -> list[DatasetSpec]:
    """Per family, the first `count` datasets by id, taking seen and unseen in turn."""
    chosen = []
    for family in registry.FAMILY_ORDER:
        sides = [
            sorted((s for s in specs if s.family == family and s.partition == p), key=lambda s: s.dataset_id)
            for p in ("seen", "unseen")
        ]
        interleaved = [s for pair in zip(*sides) for s in pair]
        longer = max(sides, key=len)
        chosen += (interleaved + longer[len(interleaved) // 2 :])[:count]
    return chosen


def within_budget(specs: list[DatasetSpec], config: DatasetsConfig) -> list[DatasetSpec]:
    """Thins the glyph pools after partitioning (so the split never moves).

    Keeps `letter_datasets_per_unit` letter datasets per script, at most
    `seen_letter_units_max` seen scripts (a seeded choice), and gives seen
    glyph classes fewer images; unseen glyph classes keep theirs, which the
    20-shot evaluation needs.
    """
    by_unit: dict[str, list[DatasetSpec]] = {}
    for spec in sorted(specs, key=lambda s: s.dataset_id):
        if spec.family == "glyph-letters":
            by_unit.setdefault(spec.unit, []).append(spec)
    seen_units = sorted(u for u, group in by_unit.items() if group[0].partition == "seen")
    if config.seen_letter_units_max:
        order = np.random.default_rng(derive_seed(config.partition_seed, "seen-letter-units")).permutation(len(seen_units))
        dropped_units = {seen_units[i] for i in order[config.seen_letter_units_max :]}
    else:
        dropped_units = set()
    keep = {
        spec.dataset_id
        for unit, group in by_unit.items()
        if unit not in dropped_units
        for spec in (group[: config.letter_datasets_per_unit] if config.letter_datasets_per_unit else group)
    }
    train = min(config.train_per_class, config.seen_glyph_train_per_class)
    test = min(config.test_per_class, config.seen_glyph_test_per_class)
    thinned = []
    for spec in specs:
        if spec.family == "glyph-letters" and spec.dataset_id not in keep:
            continue
        if spec.partition == "seen" and spec.family in ("glyph-digits", "glyph-letters"):
            spec = dataclasses.replace(spec, classes=tuple(dataclasses.replace(c, train=train, test=test) for c in spec.classes))
        thinned.append(spec)
    return thinned


def plan(config: DatasetsConfig) -> tuple[list[DatasetSpec], dict]:
    """Every dataset to build with its partition, and the partition rule with its outcome."""
    drafts = glyphs.plan(config) + emoji.plan(config) + folders.discover(config) + mnist_like.plan(config)
    specs, rule = partition.assign(drafts, config)
    specs = within_budget(specs, config)
    if config.datasets_per_family:
        specs = _few_per_family(specs, config.datasets_per_family)
    return folders.select_images(specs, config), rule


def build_one(spec: DatasetSpec, root: Path) -> dict:
    render, size_key = RENDERERS[spec.family]
    return store.write_dataset(spec, root, render(spec), spec.params[size_key] if size_key else None)


def _build_one(job: tuple[DatasetSpec, Path]) -> dict:
    return build_one(*job)


def _build_all(jobs: list[tuple[DatasetSpec, Path]], workers: int) -> Iterator[dict]:
    """Builds the jobs in `workers` processes (1: in this one), yielding summaries as they finish."""
    if workers <= 1:
        yield from map(_build_one, jobs)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(_build_one, jobs)


def remove_unplanned(root: Path, planned: set[str]) -> list[str]:
    """Deletes built datasets under root that the plan no longer holds, so that later
    stages (features, zoo), which walk the root, see exactly the registry's datasets."""
    removed = []
    for index_path in sorted(root.rglob("index.json")):
        dataset_id = json.loads(index_path.read_text())["dataset_id"]
        if dataset_id not in planned:
            shutil.rmtree(index_path.parent)
            removed.append(dataset_id)
    if removed:
        log.info("removed %d datasets no longer planned (first: %s)", len(removed), removed[0])
    return removed


def build(
    config: DatasetsConfig, root: Path, out_dir: Path, only: str | None = None, workers: int = 1, command: str = ""
) -> dict:
    """Builds the missing datasets under `root`; writes registry.json and contact-sheet.png into `out_dir`."""
    started = time.monotonic()
    specs, rule = plan(config)
    log.info("planned %d datasets in %.1f s", len(specs), time.monotonic() - started)
    wanted = [s for s in specs if only is None or s.dataset_id.startswith(only)]
    todo = [s for s in wanted if store.built_hash(s, root) is None]
    todo.sort(key=lambda s: -(s.image_count("train") + s.image_count("test")))  # big first: even load
    log.info("%d of %d datasets to build, %d already built", len(todo), len(wanted), len(wanted) - len(todo))
    built_images = 0
    for n, summary in enumerate(_build_all([(s, root) for s in todo], min(workers, len(todo))), start=1):
        built_images += summary["images"]
        log.info("[%d/%d] %s: %d images in %.1f s", n, len(todo), summary["dataset_id"], summary["images"],
                 summary["seconds"])
    hashes = {s.dataset_id: store.built_hash(s, root) for s in specs}
    missing = sorted(i for i, h in hashes.items() if h is None)
    report = {
        "datasets": len(specs),
        "built": len(todo),
        "images_built": built_images,
        "missing": missing,
        "seconds": time.monotonic() - started,
        "registry": None,
    }
    if missing:
        log.info("registry not written: %d datasets are not built yet (first: %s)", len(missing), missing[0])
        return report
    report["removed"] = remove_unplanned(root, {s.dataset_id for s in specs})
    entries = registry.build_registry(specs, hashes, rule, as_dict(config), command)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "registry.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
    contact_sheet.draw(contact_sheet.pick_rows(specs, rows_per_family=3), root, out_dir / "contact-sheet.png")
    report["registry"] = str(out_dir / "registry.json")
    report["totals"] = entries["totals"]
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="override file under configs/datasets/ (e.g. tiny)")
    parser.add_argument("--only", metavar="PREFIX", help="build only the datasets whose id starts with PREFIX")
    parser.add_argument("--workers", type=int, default=2, choices=(1, 2), help="processes (images do not depend on it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = load_config(DatasetsConfig(), "datasets", args.config)
    if args.config is None:
        root, out_dir = cache_dir() / "data", DATA_DIR
    else:
        root = out_dir = cache_dir() / f"data-{args.config}"
    command = "cd models && /usr/bin/python3 -m d2nwg datasets" + (f" --config {args.config}" if args.config else "")
    report = build(config, root, out_dir, only=args.only, workers=args.workers, command=command)
    lines = [
        f"built {report['built']} of {report['datasets']} datasets "
        f"({report['images_built']} images) in {report['seconds']:.0f} s"
    ]
    if report["registry"]:
        t = report["totals"]
        lines.append(
            f"seen: {t['seen']['datasets']} datasets, {t['seen']['classes']} classes; "
            f"unseen: {t['unseen']['datasets']} datasets, {t['unseen']['classes']} classes; "
            f"registry: {report['registry']}"
        )
    print("\n".join(lines))
    return 0
