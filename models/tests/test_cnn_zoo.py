import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from d2nwg import cnn_zoo, networks
from d2nwg.data import store
from d2nwg.hashing import sha256_bytes

RECIPE = cnn_zoo.CnnRecipe(epochs=20, snapshot_epochs=2)


def write_digits(root, dataset_id, partition="seen", classes=10, train=40, test=20, seed=0, side=64):
    """A learnable dataset in the store format: PIL's bitmap digits (or letters past 10), randomly sized and placed."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    symbols = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:classes]
    folder = store.dataset_dir(root, dataset_id)
    entries = []
    for c, symbol in enumerate(symbols):
        (folder / f"{c}-{symbol.lower()}").mkdir(parents=True)
        for split, count in (("train", train), ("test", test)):
            for k in range(count):
                glyph = Image.new("L", (12, 14), 255)
                ImageDraw.Draw(glyph).text((2, 1), symbol, fill=0, font=font)
                glyph = glyph.crop(Image.eval(glyph, lambda v: 255 - v).getbbox())
                height = int(rng.integers(side // 2, side * 3 // 4))
                glyph = glyph.resize((max(1, glyph.width * height // glyph.height), height), Image.BILINEAR)
                image = Image.new("RGB", (side, side), "white")
                image.paste(glyph, (int(rng.integers(0, side - glyph.width)), int(rng.integers(0, side - glyph.height))))
                data = store.png_bytes(image)
                file = f"{c}-{symbol.lower()}/{split}-{k}.png"
                (folder / file).write_bytes(data)
                entries.append({"file": file, "class_index": c, "split": split, "sha256": sha256_bytes(data)})
    index = {
        "dataset_id": dataset_id,
        "family": dataset_id.split("/")[0],
        "partition": partition,
        "classes": [{"name": s, "slug": f"{c}-{s.lower()}"} for c, s in enumerate(symbols)],
        "images": entries,
        "content_hash": sha256_bytes(json.dumps(entries).encode()),
    }
    (folder / "index.json").write_text(json.dumps(index))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_digits(root, "synthetic/digits", seed=1)
    write_digits(root, "synthetic/shifted", seed=2, side=96)
    return root


@pytest.fixture(scope="module")
def job_records(data_root, tmp_path_factory):
    torch.set_num_threads(1)
    members = (
        ("synthetic/digits", None, 0),
        ("synthetic/digits", None, 1),
        ("synthetic/shifted", tuple(range(10)), 0),
        ("synthetic/digits", tuple(range(10)), 1),  # the second member again, its classes spelled out
    )
    job = cnn_zoo.CnnJob("job-test", "cnn-s", members, str(data_root), str(tmp_path_factory.mktemp("cache")), RECIPE)
    return job, cnn_zoo.train_cnn_job(job)


def test_grayscale_is_letterboxed_inverted_and_in_range(tmp_path):
    image = Image.new("RGB", (112, 56), "white")  # wide: letterboxing adds white above and below
    ImageDraw.Draw(image).rectangle((4, 4, 107, 51), fill="black")
    image.save(tmp_path / "bar.png")
    gray = cnn_zoo.to_grayscale_28(tmp_path / "bar.png")
    assert gray.shape == (28, 28) and gray.dtype == np.float32
    assert gray.min() >= 0 and gray.max() <= 1
    assert gray[14, 2:26].min() > 0.95  # ink high
    assert gray[:6].max() < 0.05 and gray[22:].max() < 0.05  # white page and letterbox: 0


def test_bright_ink_on_black_is_not_inverted(tmp_path):
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="white")
    image.save(tmp_path / "square.png")
    gray = cnn_zoo.to_grayscale_28(tmp_path / "square.png")
    assert gray[14, 14] > 0.95 and gray[0].max() < 0.05
    forced = cnn_zoo.to_grayscale_28(tmp_path / "square.png", dark_background=False)
    assert forced[14, 14] < 0.05 and forced[0].min() > 0.95


def test_dataset_loads_with_relabelled_subset_and_caches(data_root, tmp_path):
    x_train, y_train, x_test, y_test = cnn_zoo.load_dataset_28("synthetic/digits", data_root, [7, 2], cache_root=tmp_path)
    assert x_train.shape == (80, 1, 28, 28) and x_test.shape == (40, 1, 28, 28)
    assert sorted(set(y_train)) == [0, 1] and (y_test == 0).sum() == 20
    cached = list((tmp_path / "cnn28").glob("*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (600, 28, 28)
    again = cnn_zoo.load_dataset_28("synthetic/digits", data_root, [7, 2], cache_root=tmp_path)
    np.testing.assert_array_equal(again[0], x_train)
    all_classes = cnn_zoo.load_dataset_28("synthetic/digits", data_root, cache_root=tmp_path)
    np.testing.assert_array_equal(all_classes[0][all_classes[1] == 7], x_train[y_train == 0])


def test_population_training_matches_training_alone(data_root, tmp_path):
    torch.set_num_threads(1)
    recipe = cnn_zoo.CnnRecipe(epochs=2, snapshot_epochs=1)
    x_a, y_a, _, _ = cnn_zoo.load_dataset_28("synthetic/digits", data_root, cache_root=tmp_path)
    x_b, y_b = x_a[:300], y_a[:300]  # fewer batches per epoch: the masked steps must leave this model alone
    arch = networks.get_arch("cnn-s")
    together = cnn_zoo.train_population(arch, [x_a, x_b], [y_a, y_b], [0, 1], [10, 11], recipe)[2]
    for p, (x, y, seed, order) in enumerate(((x_a, y_a, 0, 10), (x_b, y_b, 1, 11))):
        alone = cnn_zoo.train_alone(arch, x, y, seed, order, recipe)[2]
        for name, _ in arch.layout():
            torch.testing.assert_close(together[name][p], alone[name], rtol=1e-3, atol=2e-4)


def test_job_learns_and_records_every_snapshot(job_records):
    job, records = job_records
    assert len(records) == 4 * 2 and len({r["model_id"] for r in records}) == 8
    assert sorted({r["epoch"] for r in records}) == [19, 20]
    for r in records:
        assert r["model_id"].startswith("job-test-")
        assert r["classes"] == list(range(10)) and r["class_names"] == list("0123456789")
        assert list(r["tensors"]) == [n for n, _ in networks.get_arch("cnn-s").layout()]
        assert all(v.dtype == np.float32 for v in r["tensors"].values())
        assert r["heldout_accuracy"] > 0.5 and r["train_accuracy"] > 0.5, r  # chance is 0.1
        assert r["wall_s"] > 0


def test_predict_reproduces_recorded_accuracy(job_records, data_root):
    job, records = job_records
    for r in records:
        _, _, x_test, y_test = cnn_zoo.load_dataset_28(r["dataset_id"], data_root, r["classes"], cache_root=job.cache_root)
        accuracy = (networks.predict(r["arch"], r["tensors"], x_test).argmax(1) == y_test).mean()
        assert accuracy == pytest.approx(r["heldout_accuracy"], abs=1e-9)


def test_seeds_are_deterministic_and_distinct(job_records):
    job, records = job_records
    last = [r["tensors"] for r in records if r["epoch"] == 20]
    assert not np.allclose(last[0]["fc2.weight"], last[1]["fc2.weight"])  # seeds 0 and 1 on one dataset
    assert not np.allclose(last[0]["fc2.weight"], last[2]["fc2.weight"])  # seed 0 on two datasets
    for name in last[1]:
        np.testing.assert_allclose(last[1][name], last[3][name], atol=1e-6)  # one seed, one dataset
    again = cnn_zoo.train_cnn_job(job)
    for r, s in zip(records, again):
        assert r["model_id"] == s["model_id"]
        for name in r["tensors"]:
            np.testing.assert_array_equal(r["tensors"][name], s["tensors"][name])


def test_cnn_datasets_takes_seen_ten_class_sets_and_subsets(tmp_path):
    write_digits(tmp_path, "pool/seen-10", train=2, test=1)
    write_digits(tmp_path, "pool/unseen-10", partition="unseen", train=2, test=1)
    write_digits(tmp_path, "pool/seen-25", classes=25, train=2, test=1)
    write_digits(tmp_path, "pool/unseen-36", partition="unseen", classes=36, train=2, test=1)
    write_digits(tmp_path, "pool/seen-7", classes=7, train=2, test=1)
    write_digits(tmp_path, "pool/seen-10-small", train=1, test=1)
    chosen = cnn_zoo.cnn_datasets(tmp_path, min_train_per_class=2)
    assert chosen == cnn_zoo.cnn_datasets(tmp_path, min_train_per_class=2)  # seeded
    assert [d for d, _ in chosen] == ["pool/seen-10", "pool/seen-25", "pool/seen-25"]
    assert chosen[0][1] == tuple(range(10))
    subsets = [set(c) for d, c in chosen if d == "pool/seen-25"]
    assert all(len(s) == 10 and s <= set(range(25)) for s in subsets) and not subsets[0] & subsets[1]


def test_class_mean_layer_is_the_nearest_class_mean_classifier():
    rng = np.random.default_rng(3)
    features = torch.tensor(rng.normal(size=(60, 7)), dtype=torch.float32)
    labels = np.repeat(np.arange(3), 20)
    features[labels == 1] += 1.5
    weight, bias = cnn_zoo.class_mean_layer(features, labels, 3)
    means = torch.stack([features[torch.from_numpy(labels == c)].mean(0) for c in range(3)])
    nearest = torch.cdist(features, means).argmin(1)
    torch.testing.assert_close((features @ weight.T + bias).argmax(1), nearest)


def test_shared_start_members_fine_tune_the_base(data_root, tmp_path):
    """The base learns a body every task can use through class means alone; each zoo member starts from
    it (last layer from its task's class means), so members stay near the base and near each other,
    unlike independently seeded members."""
    torch.set_num_threads(1)
    arch = networks.get_arch("cnn-s")
    tasks = [cnn_zoo.load_dataset_28(d, data_root, cache_root=tmp_path) for d in ("synthetic/digits", "synthetic/shifted")]
    base = cnn_zoo.train_base(arch, [t[0] for t in tasks], [t[1] for t in tasks], 0, cnn_zoo.BaseRecipe(epochs=20, batch_size=32))
    untrained = {k: v for k, v in networks.init_params(arch, 0).items()}
    for x, y, xq, yq in tasks:
        def accuracy(params):
            tensors = {k: v.numpy() for k, v in cnn_zoo.with_class_means(arch, params, x, y).items()}
            return (networks.predict(arch, tensors, xq).argmax(1) == yq).mean()
        assert accuracy(base) > 0.6 and accuracy(base) > accuracy(untrained) + 0.2
    path = tmp_path / "bases" / "cnn-s.safetensors"
    cnn_zoo.save_base(path, base, {"hash": "h", "tasks": 2})
    assert cnn_zoo.base_meta(path) == {"hash": "h", "tasks": 2}
    members = (("synthetic/digits", None, 0), ("synthetic/digits", None, 1))
    recipe = cnn_zoo.CnnRecipe(epochs=2, learning_rate=3e-3, snapshot_epochs=1)
    shared = cnn_zoo.train_cnn_job(cnn_zoo.CnnJob("shared", "cnn-s", members, str(data_root), str(tmp_path), recipe, str(path)))
    seeded = cnn_zoo.train_cnn_job(cnn_zoo.CnnJob("seeded", "cnn-s", members, str(data_root), str(tmp_path), recipe))

    def distance(a, b):
        return float(np.sqrt(sum(((a[n] - b[n]) ** 2).sum() for n, _ in arch.layout() if not n.startswith("fc2."))))

    base_np = {k: v.numpy() for k, v in base.items()}
    assert all(r["heldout_accuracy"] > 0.6 for r in shared)
    assert distance(shared[0]["tensors"], shared[1]["tensors"]) < 0.25 * distance(seeded[0]["tensors"], seeded[1]["tensors"])
    assert distance(shared[0]["tensors"], base_np) < 0.25 * distance(seeded[0]["tensors"], base_np)
