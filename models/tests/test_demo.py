"""The `demo` stage on a tiny synthetic cache (no datasets stage, no backbone, no zoo build): a few seen
and unseen datasets of 8×8 PNGs, class-structured 16-dimensional features and a hand-made head zoo whose
answers are known: which task each seen pick may take, which head is nearest to an unseen dataset and
which of its rows match which class."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from d2nwg import safetensors, zoo_store
from d2nwg.config import RELEASE_DIR, apply_overrides
from d2nwg.data.store import png_bytes
from d2nwg.data.spec import derive_seed
from d2nwg.demo import NEAREST_KIND, SEEN_KIND, DemoConfig, folder_name
from d2nwg.features import backbone_id

DIM = 16
# dataset id → (family, side, class names, grayscale images)
DATASETS = {
    "glyph-digits/a": ("glyph-digits", "seen", [f"A DIGIT {i}" for i in range(5)], True),
    "glyph-digits/b": ("glyph-digits", "seen", [f"B DIGIT {i}" for i in range(5)], True),
    "emoji/x": ("emoji", "seen", ["cat", "dog", "light & video", "sun", "moon", "tree"], False),
    "fashion-mnist": ("fashion-mnist", "unseen", ["T-shirt/top", "Trouser", "Pullover", "Dress"], True),
    "clipart/people": ("clipart", "unseen", ["people", "people/bodypart", "people/clothing/hats"], False),
}
TRAIN, TEST = 6, 7
VALIDATION = json.loads((RELEASE_DIR / "head" / "training.json").read_text())["validation_tasks"]


def centre(key: str) -> np.ndarray:
    """The unit centre of class "dataset#index" in feature space."""
    v = np.random.default_rng(derive_seed(key)).standard_normal(DIM)
    return v / np.linalg.norm(v)


def write_dataset(data_root: Path, features_root: Path, dataset_id: str) -> dict:
    family, side, names, gray = DATASETS[dataset_id]
    folder = data_root.joinpath(*dataset_id.split("/"))
    rng = np.random.default_rng(len(dataset_id))
    images, rows = [], []
    slugs = [f"{c}-{name.lower().replace('/', '-').replace(' ', '-')}" for c, name in enumerate(names)]
    for c, (name, slug) in enumerate(zip(names, slugs)):
        (folder / slug).mkdir(parents=True)
        for split, count in (("train", TRAIN), ("test", TEST)):
            for k in range(count):
                shape = (8, 8 + k % 3) if not gray else (8, 8)  # colour ones keep their aspect, like clipart
                pixels = rng.integers(0, 256, shape + ((1,) if gray else (3,)), dtype=np.uint8)
                pixels = np.repeat(pixels, 3, axis=2) if gray else pixels
                file = f"{slug}/{split}-{k}.png"
                (folder / file).write_bytes(png_bytes(Image.fromarray(pixels, "RGB")))
                images.append({"file": file, "class_index": c, "split": split, "sha256": "0"})
                rows.append(centre(f"{dataset_id}#{c}") * 3 + rng.standard_normal(DIM))
    index = {"dataset_id": dataset_id, "family": family, "partition": side,
             "classes": [{"name": n, "slug": s} for n, s in zip(names, slugs)], "images": images, "content_hash": f"hash-{dataset_id}"}
    (folder / "index.json").write_text(json.dumps(index))
    out = features_root.joinpath(*dataset_id.split("/"))
    out.mkdir(parents=True)
    np.save(out / "features.npy", np.array(rows, dtype=np.float32))
    (out / "meta.json").write_text(json.dumps({"key": {"dataset_content_hash": index["content_hash"]},
                                               "files": [i["file"] for i in images], "feature_dim": DIM}))
    return index


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_features(cache: Path, key: str) -> np.ndarray:
    dataset_id, index = key.rsplit("#", 1)
    folder = cache / "features" / "data" / backbone_id() / dataset_id
    files = json.loads((folder / "meta.json").read_text())["files"]
    x = np.load(folder / "features.npy")
    return unit(x[[i for i, f in enumerate(files) if f.startswith(f"{index}-") and "/test-" in f]])


test_features.__test__ = False  # a helper, not a test


def write_zoo(cache: Path) -> dict[str, list[str]]:
    """Tasks: an 8-way glyph task and a 5-way emoji task (the picks' only choices), a glyph task like the first
    but among the generator's validation tasks, a 3-way task, and a 6-way decoy whose rows are fashion-mnist's
    class centres in a known order. Returns each task's class keys."""
    fashion = [f"fashion-mnist#{i}" for i in range(4)]
    tasks = {
        "head-task-0-00001": ("glyph-digits", [f"glyph-digits/a#{i}" for i in (4, 0, 2, 1)] + [f"glyph-digits/b#{i}" for i in (3, 0, 1, 4)]),
        "head-task-0-00002": ("emoji", [f"emoji/x#{i}" for i in (2, 5, 0, 1, 3)]),
        "head-task-0-00003": ("glyph-digits", [f"glyph-digits/a#{i}" for i in (0, 1, 2)]),
        VALIDATION[0]: ("glyph-digits", [f"glyph-digits/b#{i}" for i in range(5)] + [f"glyph-digits/a#{i}" for i in range(3)]),
        "head-task-0-00004": ("emoji", [f"emoji/x#{i}" for i in range(6)]),
    }
    rows, tensors = [], {}
    for task_id, (family, keys) in tasks.items():
        names = [DATASETS[k.rsplit("#", 1)[0]][2][int(k.rsplit("#", 1)[1])] for k in keys]
        centres = np.stack([centre(k) for k in keys])
        if task_id == "head-task-0-00004":  # the decoy: rows 1, 4, 0, 3 are fashion-mnist's classes 0–3
            centres[[1, 4, 0, 3]] = [centre(f) for f in fashion]
        for seed in (0, 1):
            for epoch in (50, 60):
                weight = (centres * (5 + seed + epoch / 100)).astype(np.float32)
                bias = np.linspace(-0.1, 0.1, len(keys)).astype(np.float32) * seed
                x = np.concatenate([test_features(cache, k) for k in keys])
                y = np.concatenate([np.full(TEST, i) for i in range(len(keys))])
                model_id = f"{task_id}-s{seed}-e{epoch}"
                rows.append({
                    "model_id": model_id, "family": family, "arch": f"linear-{DIM}", "task_id": task_id,
                    "dataset_ids": sorted({k.rsplit("#", 1)[0] for k in keys}), "classes": keys, "class_names": names,
                    "fewshot": len(keys) == 5, "seed": seed, "epoch": epoch, "train_accuracy": 1.0,
                    "heldout_accuracy": float(((x @ weight.T + bias).argmax(1) == y).mean()),
                    "train_images": TRAIN * len(keys), "heldout_images": len(y), "wall_s": 0.0})
                tensors[model_id] = {"weight": weight, "bias": bias}
    zoo_store.write_shard(cache / "zoo" / "heads", "0000", "job", rows, tensors)
    zoo_store.write_table(cache / "zoo" / "heads")
    return {task_id: keys for task_id, (_, keys) in tasks.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory, stage):
    cache = tmp_path_factory.mktemp("demo-cache")
    data_root = cache / "data"
    features_root = cache / "features" / "data" / backbone_id()
    indexes = {d: write_dataset(data_root, features_root, d) for d in DATASETS}
    registry = cache / "registry.json"
    registry.write_text(json.dumps({"datasets": [{"id": d, "partition": DATASETS[d][1]} for d in DATASETS]}))
    tasks = write_zoo(cache)
    outs = []
    for name in ("first", "second"):
        outs.append(cache / name / "demo")
        stage(cache, "demo", "--out", str(outs[-1]), "--registry", str(registry))
    return {"cache": cache, "out": outs[0], "again": outs[1], "tasks": tasks, "indexes": indexes}


def test_index_has_exactly_the_page_schema(built):
    index = json.loads((built["out"] / "index.json").read_text())
    assert list(index) == ["rebuild_command", "inputs_sha256", "demos"]
    assert index["rebuild_command"].startswith("cd models && D2NWG_CACHE=")
    assert [d["side"] for d in index["demos"]] == ["seen", "seen", "unseen", "unseen"]
    for demo in index["demos"]:
        assert list(demo) == ["id", "title", "side", "description", "classes", "support", "query", "pretrained"]
        assert list(demo["pretrained"]) == ["file", "sha256", "bytes", "source", "kind", "query_accuracy"]
        assert list(demo["support"]) == demo["classes"] == list(demo["query"])
        assert all(len(files) == 5 for files in demo["support"].values())
        assert all(5 <= len(files) <= 10 for files in demo["query"].values())
        for split in ("support", "query"):
            for name, files in demo[split].items():
                assert all(f.startswith(f"{split}/{name}/") and (built["out"] / demo["id"] / f).is_file() for f in files)


def test_seen_demos_are_zoo_tasks_outside_the_validation_tasks(built):
    demos = json.loads((built["out"] / "index.json").read_text())["demos"]
    glyphs, emoji = demos[0], demos[1]
    assert glyphs["id"] == "seen-glyph-digits" and emoji["id"] == "seen-emoji"
    assert "head-task-0-00001" in glyphs["description"] and VALIDATION[0] not in glyphs["description"]
    assert glyphs["classes"] == ["A_DIGIT_4", "A_DIGIT_0", "A_DIGIT_2", "A_DIGIT_1",
                                 "B_DIGIT_3", "B_DIGIT_0", "B_DIGIT_1", "B_DIGIT_4"]  # the task's row order
    assert emoji["classes"] == ["light_video", "tree", "cat", "dog", "sun"]
    for demo, task in ((glyphs, "head-task-0-00001"), (emoji, "head-task-0-00002")):
        assert demo["pretrained"]["kind"] == SEEN_KIND
        assert demo["pretrained"]["source"] == f"zoo task {task}, seed 0, epoch 60"
        tensors, _ = safetensors.load(built["out"] / demo["id"] / "pretrained.safetensors")
        zoo = zoo_store.load_checkpoint(built["cache"] / "zoo" / "heads", {"model_id": f"{task}-s0-e60",
                                                                            "shard": "shard-0000.safetensors"})
        np.testing.assert_array_equal(tensors["weight"], zoo["weight"])
        np.testing.assert_array_equal(tensors["bias"], zoo["bias"])


def test_support_comes_from_train_and_query_from_test_images(built):
    for demo in json.loads((built["out"] / "index.json").read_text())["demos"]:
        for name in demo["classes"]:
            support = {Path(f).name for f in demo["support"][name]}
            query = {Path(f).name for f in demo["query"][name]}
            assert all(f.startswith("train-") for f in support) and all(f.startswith("test-") for f in query)


def test_unseen_pretrained_is_the_nearest_head_with_matched_rows(built):
    demos = {d["id"]: d for d in json.loads((built["out"] / "index.json").read_text())["demos"]}
    fashion = demos["unseen-fashion-mnist"]
    assert fashion["classes"] == ["T-shirt_top", "Trouser", "Pullover", "Dress"]
    assert fashion["pretrained"]["kind"] == NEAREST_KIND
    assert fashion["pretrained"]["source"].startswith("zoo task head-task-0-00004, seed ")
    assert "(rows [1, 4, 0, 3] of its 6)" in fashion["pretrained"]["source"]
    tensors, _ = safetensors.load(built["out"] / fashion["id"] / "pretrained.safetensors")
    assert tensors["weight"].shape == (4, DIM) and tensors["weight"].dtype == np.float32
    assert tensors["bias"].shape == (4,) and tensors["bias"].dtype == np.float32
    np.testing.assert_allclose(unit(tensors["weight"]), np.stack([centre(f"fashion-mnist#{i}") for i in range(4)]),
                               atol=1e-6)
    people = demos["unseen-clipart-people"]
    assert people["classes"] == ["people", "people_bodypart", "people_clothing_hats"]
    assert safetensors.load(built["out"] / people["id"] / "pretrained.safetensors")[0]["weight"].shape == (3, DIM)


def test_recorded_accuracies_are_measured_on_the_query_images(built):
    demos = json.loads((built["out"] / "index.json").read_text())["demos"]
    measured = {m["id"]: m for m in json.loads((built["out"] / "measurements.json").read_text())["demos"]}
    for demo in demos:
        head, _ = safetensors.load(built["out"] / demo["id"] / "pretrained.safetensors")
        x, y = [], []
        for c, name in enumerate(demo["classes"]):
            for path in demo["query"][name]:
                x.append(query_features(built, name)[Path(path).name])
                y.append(c)
        acc = float(((np.stack(x) @ head["weight"].T + head["bias"]).argmax(1) == np.array(y)).mean())
        assert demo["pretrained"]["query_accuracy"] == pytest.approx(acc, abs=1e-6)
        assert measured[demo["id"]]["pretrained_query_accuracy"] == demo["pretrained"]["query_accuracy"]
        assert 0 <= measured[demo["id"]]["ncm_query_accuracy"] <= 1
        assert measured[demo["id"]]["query_images"] == len(y)


def source_class(built, name: str) -> tuple[str, int]:
    """(dataset id, class index) of a demo class, by its folder name (unique in the synthetic datasets)."""
    found = [(dataset_id, c) for dataset_id, index in built["indexes"].items()
             for c, cls in enumerate(index["classes"]) if folder_name(cls["name"]) == name]
    assert len(found) == 1, name
    return found[0]


def query_features(built, name: str) -> dict[str, np.ndarray]:
    """A demo class's unit test features by file name."""
    dataset_id, c = source_class(built, name)
    folder = built["cache"] / "features" / "data" / backbone_id() / dataset_id
    files = json.loads((folder / "meta.json").read_text())["files"]
    x = unit(np.load(folder / "features.npy"))
    return {Path(f).name: x[i] for i, f in enumerate(files) if f.startswith(f"{c}-") and "/test-" in f}


def test_images_keep_their_pixels_and_grayscale_ones_are_mode_L(built):
    for demo in json.loads((built["out"] / "index.json").read_text())["demos"]:
        dataset_id, c = source_class(built, demo["classes"][0])
        gray = DATASETS[dataset_id][3]
        source = built["cache"] / "data" / dataset_id / built["indexes"][dataset_id]["classes"][c]["slug"]
        for path in demo["support"][demo["classes"][0]] + demo["query"][demo["classes"][0]]:
            with Image.open(built["out"] / demo["id"] / path) as image:
                assert image.mode == ("L" if gray else "RGB")
                pixels = np.asarray(image.convert("RGB"))
            with Image.open(source / Path(path).name) as original:
                np.testing.assert_array_equal(pixels, np.asarray(original.convert("RGB")))


def test_a_rerun_writes_byte_identical_files(built):
    first = {p.relative_to(built["out"]): p.read_bytes() for p in built["out"].rglob("*") if p.is_file()}
    second = {p.relative_to(built["again"]): p.read_bytes() for p in built["again"].rglob("*") if p.is_file()}
    assert sorted(first) == sorted(second)
    assert all(first[p] == second[p] for p in first)


def test_an_unknown_config_key_is_an_error():
    with pytest.raises(KeyError, match="unknown config keys"):
        apply_overrides(DemoConfig(), {"shots": 3})
