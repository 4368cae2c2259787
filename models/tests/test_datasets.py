"""The datasets stage: deterministic images, the on-disk format, and a partition that cannot leak.

Builds use the `tiny` config (a couple of datasets per family, five images
per class): the session's tiny cache (conftest.py), which the tiny pipeline
shares, and temporary folders for rebuilds with other seeds; the partition
tests read the committed release registry.
"""

import dataclasses
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from d2nwg import datasets
from d2nwg.config import DATA_DIR, load_config
from d2nwg.data import emoji, folders, glyphs, mnist_like, partition, store
from d2nwg.data.registry import FAMILY_ORDER
from d2nwg.hashing import sha256_file

GENERATED_FAMILIES = ("glyph-digits", "glyph-letters", "emoji", "fashion-mnist", "digits-8x8")
FOLDER_FAMILIES = ("clipart", "stamps")


@pytest.fixture(scope="module")
def tiny_config() -> datasets.DatasetsConfig:
    return load_config(datasets.DatasetsConfig(), "datasets", "tiny")


@pytest.fixture(scope="module")
def tiny_build(tiny_cache, tiny_config):
    """(data root, report, specs) of the session's tiny build (by the stage's command), the report that of
    building it again as the stage would (nothing left to build; the same registry rewritten)."""
    root = tiny_cache / "data-tiny"
    report = datasets.build(tiny_config, root, root, workers=1,
                            command="cd models && /usr/bin/python3 -m d2nwg datasets --config tiny")
    specs, _ = datasets.plan(tiny_config)
    return root, report, specs


def png_files(root: Path, dataset_id: str) -> dict[str, bytes]:
    folder = store.dataset_dir(root, dataset_id)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def class_images(root: Path, index: dict, class_index: int, size: int = 32) -> np.ndarray:
    """The class's images resized to size × size, as floats: [N, size, size, 3]."""
    folder = store.dataset_dir(root, index["dataset_id"])
    files = [i["file"] for i in index["images"] if i["class_index"] == class_index]
    images = [Image.open(folder / f).convert("RGB").resize((size, size)) for f in files]
    return np.stack([np.asarray(image, dtype=np.float32) for image in images])


# --- the build ---------------------------------------------------------------------------------


def test_tiny_build_covers_every_family_and_writes_registry_and_sheet(tiny_build):
    root, report, specs = tiny_build
    assert report["missing"] == []
    assert {s.family for s in specs} == set(FAMILY_ORDER)
    assert {s.partition for s in specs} == {"seen", "unseen"}
    registry = json.loads((root / "registry.json").read_text())
    assert sorted(d["id"] for d in registry["datasets"]) == sorted(s.dataset_id for s in specs)
    assert (root / "contact-sheet.png").stat().st_size > 0


def test_rebuild_skips_every_complete_dataset(tiny_build):
    _, report, specs = tiny_build
    assert report["built"] == 0 and report["missing"] == []
    assert report["datasets"] == len(specs) and report["removed"] == []


def test_a_changed_dataset_config_is_rebuilt(tiny_build):
    root, _, specs = tiny_build
    spec = specs[0]
    assert store.built_hash(spec, root) is not None
    assert store.built_hash(dataclasses.replace(spec, params={**spec.params, "seed": -1}), root) is None


# --- determinism -------------------------------------------------------------------------------


def one_per_family(specs):
    return [next(s for s in specs if s.family == family) for family in FAMILY_ORDER]


def test_same_seed_gives_byte_identical_pngs_and_content_hash(tiny_build, tmp_path):
    root, _, specs = tiny_build
    for spec in one_per_family(specs):
        datasets.build_one(spec, tmp_path)
        assert png_files(tmp_path, spec.dataset_id) == png_files(root, spec.dataset_id), spec.dataset_id
        again = store.read_index(tmp_path, spec.dataset_id)
        assert again == store.read_index(root, spec.dataset_id)


def test_a_different_seed_gives_different_images(tiny_build, tiny_config, tmp_path):
    root, _, specs = tiny_build
    reseeded, _ = datasets.plan(dataclasses.replace(tiny_config, seed=tiny_config.seed + 1))
    by_id = {s.dataset_id: s for s in reseeded}
    for spec in one_per_family(specs):
        other = by_id[spec.dataset_id]
        datasets.build_one(other, tmp_path)
        hashes = [store.read_index(r, spec.dataset_id)["content_hash"] for r in (tmp_path, root)]
        assert hashes[0] != hashes[1], spec.dataset_id
        assert png_files(tmp_path, spec.dataset_id) != png_files(root, spec.dataset_id), spec.dataset_id


def test_png_files_carry_no_metadata_chunks(tiny_build):
    root, _, specs = tiny_build
    for spec in one_per_family(specs):
        data = next(iter(png_files(root, spec.dataset_id).values()))
        chunks, at = [], 8
        while at < len(data):
            length = int.from_bytes(data[at : at + 4], "big")
            chunks.append(data[at + 4 : at + 8].decode())
            at += 12 + length
        assert set(chunks) == {"IHDR", "IDAT", "IEND"}, (spec.dataset_id, chunks)


# --- index.json format -------------------------------------------------------------------------


def test_index_json_has_exactly_the_documented_keys_and_valid_files(tiny_build):
    root, _, specs = tiny_build
    for spec in specs:
        index = store.read_index(root, spec.dataset_id)
        assert list(index) == ["dataset_id", "family", "partition", "classes", "images", "content_hash"]
        assert index["dataset_id"] == spec.dataset_id
        assert (index["family"], index["partition"]) == (spec.family, spec.partition)
        assert index["partition"] in ("seen", "unseen")
        assert all(list(c) == ["name", "slug"] for c in index["classes"])
        assert len({c["slug"] for c in index["classes"]}) == len(index["classes"])
        assert re.fullmatch(r"[0-9a-f]{64}", index["content_hash"])
        folder = store.dataset_dir(root, spec.dataset_id)
        splits_per_class = {i: set() for i in range(len(index["classes"]))}
        for image in index["images"]:
            assert list(image) == ["file", "class_index", "split", "sha256"]
            slug = index["classes"][image["class_index"]]["slug"]
            assert re.fullmatch(rf"{re.escape(slug)}/(train|test)-\d+\.png", image["file"])
            assert image["file"].split("/")[1].startswith(image["split"] + "-")
            assert sha256_file(folder / image["file"]) == image["sha256"]
            splits_per_class[image["class_index"]].add(image["split"])
        assert all(s == {"train", "test"} for s in splits_per_class.values()), spec.dataset_id
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
        assert on_disk == {i["file"] for i in index["images"]}


def test_class_order_is_fixed_by_a_stable_key(tiny_build):
    root, _, specs = tiny_build
    for spec in specs:
        names = [c["name"] for c in store.read_index(root, spec.dataset_id)["classes"]]
        if spec.family.startswith("glyph-"):
            assert names == sorted(names, key=lambda n: ord(unicodedata.lookup(n)))
        elif spec.family in ("emoji", *FOLDER_FAMILIES):
            assert names == sorted(names)
        elif spec.family == "fashion-mnist":
            assert names == list(mnist_like.FASHION_CLASSES)
        else:
            assert names == [unicodedata.name(str(d)) for d in range(10)]


# --- images ------------------------------------------------------------------------------------


def test_images_have_the_specified_size_and_mode_and_are_not_blank(tiny_build, tiny_config):
    root, _, specs = tiny_build
    for spec in specs:
        index = store.read_index(root, spec.dataset_id)
        folder = store.dataset_dir(root, spec.dataset_id)
        for entry in index["images"]:
            with Image.open(folder / entry["file"]) as image:
                assert image.mode == "RGB", entry["file"]
                if spec.family in GENERATED_FAMILIES:
                    assert image.size == (tiny_config.image_size, tiny_config.image_size)
                else:
                    assert max(image.size) <= tiny_config.folder_max_side
                assert np.asarray(image, dtype=np.float32).std() > folders.BLANK_STD, (spec.dataset_id, entry["file"])


def test_mean_images_of_two_classes_differ(tiny_build):
    root, _, specs = tiny_build
    for spec in specs:
        index = store.read_index(root, spec.dataset_id)
        first, second = class_images(root, index, 0).mean(axis=0), class_images(root, index, 1).mean(axis=0)
        assert np.abs(first - second).mean() > 1.0, spec.dataset_id


# --- partition (committed release registry) ----------------------------------------------------


@pytest.fixture(scope="module")
def committed_registry() -> dict:
    return json.loads((DATA_DIR / "registry.json").read_text())


def by_partition(registry: dict, side: str) -> list[dict]:
    return [d for d in registry["datasets"] if d["partition"] == side]


def test_no_unseen_class_dataset_or_unit_appears_on_the_seen_side(committed_registry):
    seen, unseen = by_partition(committed_registry, "seen"), by_partition(committed_registry, "unseen")

    def identities(entries):
        return {(d["family"], c) for d in entries for c in d["classes"]}

    assert not identities(seen) & identities(unseen)
    assert not {d["id"] for d in seen} & {d["id"] for d in unseen}
    assert not {d["partition_unit"] for d in seen} & {d["partition_unit"] for d in unseen}
    # glyph classes are Unicode characters: none may cross the split even between the two glyph pools
    def glyph_names(entries):
        return {c for d in entries if d["family"].startswith("glyph-") for c in d["classes"]}

    assert not glyph_names(seen) & glyph_names(unseen)


def test_unseen_side_holds_the_benchmarks_and_enough_of_each_pool(committed_registry):
    unseen = by_partition(committed_registry, "unseen")
    for benchmark in ("fashion-mnist", "digits-8x8"):
        entries = [d for d in committed_registry["datasets"] if d["family"] == benchmark]
        assert entries and all(d["partition"] == "unseen" for d in entries)

    def units(family):
        return {d["partition_unit"] for d in unseen if d["family"] == family}

    assert len(units("glyph-digits")) >= 8
    assert len(units("emoji")) >= 3
    assert len(units("clipart")) >= 4


def test_seen_side_is_large_enough(committed_registry):
    seen = by_partition(committed_registry, "seen")
    assert len(seen) >= 100
    assert len({(d["family"], c) for d in seen for c in d["classes"]}) >= 1000
    totals = committed_registry["totals"]["seen"]
    assert totals["datasets"] == len(seen)


def test_committed_partition_follows_the_recorded_rule(committed_registry):
    """Re-deriving the partition from the packages and the rule gives the committed one."""
    config = datasets.DatasetsConfig(**committed_registry["config"])
    drafts = glyphs.plan(config) + emoji.plan(config) + folders.discover(config) + mnist_like.plan(config)
    specs, rule = partition.assign(drafts, config)
    expected = {s.dataset_id: s.partition for s in specs}
    assert {d["id"]: d["partition"] for d in committed_registry["datasets"]}.items() <= expected.items()
    assert rule == committed_registry["partition_rule"]


def test_partition_groups_join_linked_units_transitively():
    group_of = partition.groups({"glyph:Latin", "glyph:Cyrillic", "stamps:symbols", "glyph:Thai"})
    assert group_of["glyph:Latin"] == group_of["glyph:Cyrillic"] == group_of["stamps:symbols"] == group_of["digits-8x8"]
    assert group_of["glyph:Thai"] == "glyph:Thai"

