"""The episode protocol: deterministic, support and queries disjoint, skips as stated, the committed hashes,
and the bootstrap that summarises it."""

import json

import numpy as np
import pytest

from d2nwg import episodes as protocol
from d2nwg.config import DATA_DIR, cache_dir


def synthetic(dataset_id: str, classes: int, train: int, test: int, seed: int = 0) -> protocol.DatasetIndex:
    """A dataset whose images are shuffled, `train` train and `test` test images per class (class 0 has 2
    fewer test images than the others)."""
    labels, is_train = [], []
    for c in range(classes):
        count = test - 2 if c == 0 else test
        labels += [c] * (train + count)
        is_train += [True] * train + [False] * count
    order = np.random.default_rng(seed).permutation(len(labels))
    return protocol.DatasetIndex(dataset_id, classes, np.array(labels)[order], np.array(is_train)[order])


def check_episode(ep: protocol.Episode, index: protocol.DatasetIndex, shots: int, queries: int) -> None:
    assert len(set(ep.support.tolist())) == len(ep.support) == ep.ways * shots
    assert len(set(ep.query.tolist())) == len(ep.query)
    assert not set(ep.support.tolist()) & set(ep.query.tolist())
    assert index.is_train[ep.support].all() and not index.is_train[ep.query].any()
    np.testing.assert_array_equal(index.labels[ep.support], ep.classes[ep.support_labels])
    np.testing.assert_array_equal(index.labels[ep.query], ep.classes[ep.query_labels])
    for label, c in enumerate(ep.classes):
        available = int(((index.labels == c) & ~index.is_train).sum())
        assert (ep.query_labels == label).sum() == min(queries, available)


def test_dataset_episodes_are_deterministic_disjoint_and_independent_of_their_count():
    index = synthetic("synthetic/a", classes=4, train=8, test=20)
    first = protocol.dataset_episodes(index, 5, episodes=6, queries=15)
    again = protocol.dataset_episodes(index, 5, episodes=6, queries=15)
    fewer = protocol.dataset_episodes(index, 5, episodes=3, queries=15)
    assert protocol.episodes_sha256(first) == protocol.episodes_sha256(again)
    assert protocol.episodes_sha256(first[:3]) == protocol.episodes_sha256(fewer)
    assert len({tuple(ep.support) for ep in first}) == len(first)  # episodes differ
    for ep in first:
        np.testing.assert_array_equal(ep.classes, np.arange(4))  # N-way: every class, in order
        check_episode(ep, index, 5, 15)
    other_seed = protocol.dataset_episodes(index, 5, episodes=6, queries=15, seed=1)
    assert protocol.episodes_sha256(other_seed) != protocol.episodes_sha256(first)


def test_a_class_with_too_few_train_images_skips_the_shot_count():
    index = synthetic("synthetic/b", classes=3, train=4, test=6)
    assert protocol.skip_reason(index, 5) == "a class has 4 train images, fewer than 5"
    assert protocol.dataset_episodes(index, 5, episodes=3) == []
    assert protocol.skip_reason(index, 4) is None
    assert len(protocol.dataset_episodes(index, 4, episodes=3)) == 3


def test_slices_draw_five_classes_of_datasets_that_have_them():
    indexes = [synthetic("synthetic/small", 3, 8, 10, 1), synthetic("synthetic/six", 6, 8, 10, 2),
               synthetic("synthetic/nine", 9, 8, 10, 3)]
    slice_a = protocol.slice_episodes(indexes, "5-way 5-shot", episodes=40, queries=15)
    slice_b = protocol.slice_episodes(indexes, "5-way 5-shot", episodes=40, queries=15)
    assert protocol.episodes_sha256(slice_a) == protocol.episodes_sha256(slice_b)
    assert {ep.dataset_id for ep in slice_a} == {"synthetic/six", "synthetic/nine"}
    by_id = {i.dataset_id: i for i in indexes}
    for ep in slice_a:
        assert ep.ways == 5 and len(set(ep.classes.tolist())) == 5
        check_episode(ep, by_id[ep.dataset_id], 5, 15)
    assert protocol.slice_episodes(indexes[:1], "5-way 1-shot", episodes=5) == []


def test_bootstrap_gives_the_macro_mean_inside_its_interval_and_pairs_identical_methods_at_zero():
    rng = np.random.default_rng(0)
    per_dataset = {f"d{i}": {"a": rng.uniform(0.5, 1, 50), "b": rng.uniform(0.4, 0.9, 50)} for i in range(5)}
    for name in per_dataset:
        per_dataset[name]["a_again"] = per_dataset[name]["a"].copy()
    out = protocol.macro_bootstrap(per_dataset, ["a", "b", "a_again"], [("a", "b"), ("a", "a_again")], 500, 1)
    macro = out["macro"]["a"]
    assert macro["mean"] == pytest.approx(np.mean([d["a"].mean() for d in per_dataset.values()]))
    assert macro["low"] < macro["mean"] < macro["high"]
    assert out["pairs"]["a - a_again"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert out["pairs"]["a - b"]["low"] > 0  # a is drawn from a higher range
    again = protocol.macro_bootstrap(per_dataset, ["a", "b", "a_again"], [("a", "b")], 500, 1)
    assert again["macro"] == out["macro"]  # seeded
    ci = protocol.episode_intervals({"a": np.array([0.5, 1.0]), "b": np.array([0.5, 0.5])}, [("a", "b")])
    assert ci["intervals"]["a"] == pytest.approx({"mean": 0.75, "ci95": 1.96 * 0.25 / np.sqrt(2)})
    assert ci["pairs"]["a - b"]["mean"] == pytest.approx(0.25)


def test_committed_protocol_hashes_are_what_the_data_regenerates():
    committed = json.loads((DATA_DIR / "episodes.json").read_text())
    assert committed["rule"] == protocol.RULE and committed["seed"] == protocol.SEED
    data_root = cache_dir() / "data"
    if not (data_root / "digits-8x8" / "index.json").exists():
        pytest.skip("no data cache here (set D2NWG_CACHE to the cache with data/)")
    fresh = protocol.protocol(protocol.unseen_indexes(data_root))
    assert fresh == committed
