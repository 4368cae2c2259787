"""The factory pipeline end to end on the tiny configuration, in a fresh cache.

datasets → backbone features (the TypeScript engine, through npm) → few-shot
baselines → zoos → each family's generator (train, evaluate, export). Each stage is the command a person runs, run once for the whole
module by the `pipeline` fixture on the session's tiny cache (whose datasets
the datasets tests share); stages that do not depend on each other run side by
side. The tests check what each stage leaves behind and that the numbers mean
something.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from d2nwg import zoo_store
from d2nwg.cnn_generator import CnnGenerator
from d2nwg.cnn_zoo import base_meta, load_base
from d2nwg.features import features_root_for, load_features
from d2nwg.generation import SamplingSettings
from d2nwg.families import head as head_family


def in_parallel(stage, cache: Path, *chains: list[tuple[str, ...]]) -> None:
    """Runs each chain of stages in order, the chains side by side (they read what came before, and
    write apart)."""
    with ThreadPoolExecutor(len(chains)) as pool:
        for done in [pool.submit(lambda chain: [stage(cache, *args) for args in chain], c) for c in chains]:
            done.result()


@pytest.fixture(scope="module")
def cache(stage, tiny_cache) -> Path:
    stage(tiny_cache, "features", "--data", str(tiny_cache / "data-tiny"))
    in_parallel(stage, tiny_cache, [("baselines", "--config", "tiny")], [("zoo", "--config", "tiny")])
    in_parallel(
        stage, tiny_cache,
        [("train-generator", "--config", "tiny"), ("evaluate-generator", "--config", "tiny"),
         ("export-generator", "--config", "tiny")],
        [("train-generator", "--family", "cnn", "--config", "tiny"),
         ("evaluate-generator", "--family", "cnn", "--config", "tiny"),
         ("export-generator", "--family", "cnn", "--config", "tiny")],
    )
    return tiny_cache


def dataset_ids(cache: Path) -> list[str]:
    return [json.loads(p.read_text())["dataset_id"] for p in sorted((cache / "data-tiny").rglob("index.json"))]


def ids_on_side(cache: Path, partition: str) -> set[str]:
    indexes = [json.loads(p.read_text()) for p in (cache / "data-tiny").rglob("index.json")]
    return {index["dataset_id"] for index in indexes if index["partition"] == partition}


def unseen_support(cache: Path) -> list[np.ndarray]:
    data = load_features(sorted(ids_on_side(cache, "unseen"))[0], cache / "data-tiny")
    return [data.features[data.labels == c][:2] for c in range(len(data.classes))]


def test_every_dataset_has_one_feature_row_per_image(cache):
    ids = dataset_ids(cache)
    assert len(ids) >= 7
    for dataset_id in ids:
        data = load_features(dataset_id, cache / "data-tiny")
        assert data.features.shape == (len(data.files), 1792)
        assert np.isfinite(data.features).all()
        assert data.features.std(axis=0).max() > 0, "all images gave the same features"


def test_feature_cache_is_resumable(stage, cache):
    before = {p: p.stat().st_mtime_ns for p in features_root_for(cache / "data-tiny").rglob("features.npy")}
    result = stage(cache, "features", "--data", str(cache / "data-tiny"))
    assert "0 computed" in result.stderr
    after = {p: p.stat().st_mtime_ns for p in features_root_for(cache / "data-tiny").rglob("features.npy")}
    assert before == after


def test_baselines_cover_every_unseen_dataset_and_beat_chance(cache):
    report = json.loads((cache / "data-tiny" / "baselines.json").read_text())
    assert sorted(r["dataset_id"] for r in report["results"]) == sorted(ids_on_side(cache, "unseen"))
    # Three train images per class in the tiny build: every dataset has a 1-shot result, none a 5-shot one.
    one_shot = [r["shots"]["1"] for r in report["results"]]
    assert all("skipped" not in s for s in one_shot)
    assert all("fewer than 5 train images" in r["shots"]["5"]["skipped"] for r in report["results"])
    chance = np.mean([1 / r["classes"] for r in report["results"]])
    for method in ("ncm", "logistic"):
        assert np.mean([s[method]["mean"] for s in one_shot]) > chance + 0.1, method
    assert (cache / "data-tiny" / "BASELINES.md").read_text().startswith("# Few-shot baselines")


def test_head_zoo_heads_beat_chance_on_held_out_images_and_use_only_seen_classes(cache):
    folder = cache / "zoo-tiny" / "heads"
    rows = zoo_store.read_table(folder)
    assert len(rows) == 24 * 2 * 2  # tasks × seeds × snapshots
    seen = ids_on_side(cache, "seen")
    chance = np.mean([1 / len(r["classes"]) for r in rows])
    assert np.mean([r["heldout_accuracy"] for r in rows]) > chance + 0.2
    for row in rows:
        assert set(row["dataset_ids"]) <= seen
    checkpoint = zoo_store.load_checkpoint(folder, rows[0])
    assert checkpoint["weight"].shape == (len(rows[0]["classes"]), 1792)
    assert checkpoint["bias"].shape == (len(rows[0]["classes"]),)


def test_cnn_zoo_saves_the_last_epochs_of_every_run_and_fits_its_training_images(cache):
    folder = cache / "zoo-tiny" / "cnns"
    rows = zoo_store.read_table(folder)
    runs = {(r["task_id"], r["arch"], r["seed"]) for r in rows}
    assert {r["arch"] for r in rows} == {"cnn-s", "cnn-w"}
    assert len(rows) == len(runs) * 4  # the last 4 epochs of each run
    assert {r["epoch"] for r in rows} == set(range(9, 13))
    # The shared start: each arch's base, and members that fine-tuned it (they stay near it).
    for arch in ("cnn-s", "cnn-w"):
        base = {k: v.numpy() for k, v in load_base(folder / "bases" / f"{arch}.safetensors").items()}
        member = zoo_store.load_checkpoint(folder, next(r for r in rows if r["arch"] == arch))
        assert base_meta(folder / "bases" / f"{arch}.safetensors")["arch"] == arch
        body = [n for n in base if not n.startswith(("fc.", "fc2."))]
        change = np.sqrt(sum(((member[n] - base[n]) ** 2).sum() for n in body))
        assert 0 < change < 0.5 * np.sqrt(sum((base[n] ** 2).sum() for n in body))
    last = [r for r in rows if r["epoch"] == 12]
    # Three training images per class in the tiny build: enough to fit, too few to judge generalisation
    # (population training beats chance on held-out images in test_cnn_zoo.py).
    assert np.mean([r["train_accuracy"] for r in last]) > 0.5
    checkpoint = zoo_store.load_checkpoint(folder, rows[0])
    assert sum(v.size for v in checkpoint.values()) in (2464, 11018)
    seen = ids_on_side(cache, "seen")
    for row in rows:
        assert set(row["dataset_ids"]) <= seen


def test_zoo_build_resumes_without_retraining(stage, cache):
    result = stage(cache, "zoo", "--config", "tiny")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["heads"]["jobs_trained"] == 0
    assert summary["cnns"]["jobs_trained"] == 0


def test_generated_heads_beat_chance_on_held_out_images_of_seen_tasks(cache):
    folder = cache / "generator-tiny" / "head"
    metrics = json.loads((folder / "metrics.json").read_text())
    seen = metrics["seen"]["trained"]
    assert seen["tasks"] >= 5
    assert seen["generated"]["n"] == seen["tasks"]
    assert seen["generated"]["mean"] > seen["chance"] + 0.1, seen
    report = (folder / "REPORT.md").read_text()
    assert "| measure | target | measured |" in report
    assert "means over 3 generated heads" in report


def test_head_evaluation_runs_the_episode_protocol_and_calibrates_the_refine(cache):
    folder = cache / "generator-tiny" / "head"
    metrics = json.loads((folder / "metrics.json").read_text())
    one = metrics["protocol"]["shots"]["1"]
    assert one["datasets"] == len(one["per_dataset"]) == len(ids_on_side(cache, "unseen"))
    for method, macro in one["macro"].items():
        assert macro["low"] <= macro["mean"] <= macro["high"], method
    chance = np.mean([1 / r["classes"] for r in one["per_dataset"]])
    assert one["macro"]["logistic"]["mean"] > chance + 0.1
    assert one["pairs"]["refined - logistic"]["mean"] == pytest.approx(
        one["macro"]["refined"]["mean"] - one["macro"]["logistic"]["mean"])
    # Three train images a class in the tiny build: 5 and 20 shots are skipped and listed.
    assert {s["shots"] for s in metrics["protocol"]["skipped"]} == {5, 20}
    refine = json.loads((folder / "refine.json").read_text())["refine"]
    assert json.loads((folder / "manifest.json").read_text())["refine"] == refine
    # λ calibrated at every calibration shot count; cross-validation from some image count, or never,
    # whichever scored best on held-out zoo tasks.
    assert sorted(refine["lambda_by_shots"], key=int) == ["1", "2", "3"]
    assert refine["cv_min_images"] in (3, 5, 10, 20, 10**9)
    assert "## Episode protocol (unseen datasets)" in (folder / "REPORT.md").read_text()


def test_generator_checkpoint_rebuilds_and_generates_deterministically(cache):
    generator = head_family.load(cache / "generator-tiny" / "head")
    support = unseen_support(cache)
    settings = SamplingSettings(samples=3, steps=5, eta=0.5, seed=11, temperature=1.0)
    a = generator.generate_batch([support], settings, [11])
    b = generator.generate_batch([support], settings, [11])
    c = generator.generate_batch([support], settings, [12])
    assert a[0].shape == (1, 3, len(support), 1792) and a[1].shape == (1, 3, len(support))
    for same, again in zip(a, b):  # weight and bias, every sample
        np.testing.assert_array_equal(same, again)
    w = a[0][0]
    assert min(np.abs(w[i] - w[j]).max() for i in range(3) for j in range(i)) > 1e-4  # samples differ
    assert np.abs(a[0] - c[0]).max() > 1e-4  # so does another seed
    # At temperature 0 every sample is the deterministic path, and it differs from the reference alone.
    zero = generator.generate_batch([support], SamplingSettings(samples=2, steps=5, temperature=0.0), [0])
    np.testing.assert_array_equal(zero[0][0, 0], zero[0][0, 1])
    reference, _ = generator.reference_heads([support])
    assert np.abs(zero[0][0, 0] - reference[0]).max() > 1e-4


def test_the_exported_head_graphs_are_the_manifest_s_and_the_trace_has_every_step(cache):
    folder = cache / "generator-tiny" / "head"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["graphs"]) == ["decoder", "denoiser", "encoder"]
    for entry in [*manifest["graphs"].values(), manifest["support"]["statistics"]]:
        assert (folder / entry["file"]).stat().st_size == entry["bytes"]
    assert manifest["latent_dim"] == manifest["support"]["global_rank"] + len(manifest["support"]["basis"]) + 1
    trace = json.loads((folder / "trace.json").read_text())
    assert [s["t"] for s in trace["steps"]] == [750, 500, 250, 0]


def test_cnn_generator_trains_evaluates_and_exports_on_the_tiny_zoo(cache):
    folder = cache / "generator-tiny" / "cnn"
    metrics = json.loads((folder / "metrics.json").read_text())
    for arch in ("cnn-s", "cnn-w"):
        seen = metrics["seen"][arch]["trained"]
        assert seen["generated"]["n"] == seen["tasks"] >= 1
        assert seen["ratio"] == pytest.approx(seen["generated"]["mean"] / seen["zoo"]["mean"])
        assert seen["zoo"]["mean"] > seen["chance"]
        curves = metrics["unseen"]["archs"][arch]
        assert len(curves["generated"]["mean"]) == len(curves["random"]["mean"]) == 3  # epochs 0, 1, 2
        # The fine-tuning the evaluation measures does train: random init gains on the unseen dataset.
        assert curves["random"]["mean"][-1] > curves["random"]["mean"][0], curves["random"]
    report = (folder / "REPORT.md").read_text()
    assert "| measure | target | measured |" in report
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["layout"]["archs"]) == ["cnn-s", "cnn-w"]
    assert manifest["default_arch"] in manifest["layout"]["archs"]
    assert sorted(manifest["graphs"]) == ["decoder", "denoiser", "encoder"]
    for graph in manifest["graphs"].values():
        assert (folder / graph["file"]).stat().st_size == graph["bytes"]


def test_cnn_generator_checkpoint_generates_deterministically_for_any_class_count(cache):
    generator = CnnGenerator.load(cache / "generator-tiny" / "cnn")
    support = unseen_support(cache)
    a = generator.generate("cnn-s", support, SamplingSettings(samples=3, steps=5, eta=0.5, seed=11))
    b = generator.generate("cnn-s", support, SamplingSettings(samples=3, steps=5, eta=0.5, seed=11))
    assert len(a) == len(b) == 3
    assert a[0]["fc2.weight"].shape == (len(support), 20)
    for net, again in zip(a, b):  # every sample, every tensor
        assert list(net) == list(again)
        for name in net:
            np.testing.assert_array_equal(net[name], again[name])
    assert np.abs(a[0]["conv1.weight"] - a[1]["conv1.weight"]).max() > 1e-4  # samples differ


def test_a_built_dataset_becomes_support_and_query_class_folders(stage, cache, tmp_path):
    dataset_id = sorted(ids_on_side(cache, "unseen"))[0]
    stage(cache, "class-folder", "--dataset", dataset_id, "--shots", "2", "--query", "1",
              "--data", str(cache / "data-tiny"), "--out", str(tmp_path))
    data = load_features(dataset_id, cache / "data-tiny")
    support = sorted(p.name for p in (tmp_path / "support").iterdir())
    assert len(support) == len(data.classes)
    assert support[0].startswith("00-")
    for folder in (tmp_path / "support").iterdir():
        assert 1 <= len(list(folder.glob("*.png"))) <= 2
    assert sum(len(list(f.glob("*.png"))) for f in (tmp_path / "query").iterdir()) <= len(data.classes)
