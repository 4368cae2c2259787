"""The head evaluation's own logic on synthetic numbers: the λ rule's choice on held-out tasks, the
cross-fitted calibration, the sampling settings, and that each support is built once (seconds; no cache)."""

import numpy as np
import pytest

from d2nwg import evaluate_head as eh
from d2nwg import residual_head as rh
from d2nwg.refine import RefineSpec
from test_residual_head import generator  # noqa: F401  (the untrained generator fixture, shared)

GRID = [10.0, 1.0, 0.1]  # strongest prior first, as the calibration orders it


def test_cross_fitted_scores_each_half_with_the_other_half_s_lambda():
    scores = np.array([[0.9, 0.1, 0.1],   # even tasks: λ index 0 is best
                       [0.1, 0.1, 0.9],   # odd tasks: index 2
                       [0.9, 0.1, 0.1],
                       [0.1, 0.1, 0.9]])
    np.testing.assert_array_equal(eh.cross_fitted(scores), [2, 0, 2, 0])
    np.testing.assert_array_equal(eh.cross_fitted(scores[:1]), [0])  # one task: its own best
    np.testing.assert_array_equal(eh.cross_fitted(np.full((4, 3), 0.5)), [0, 0, 0, 0])  # ties: the strongest prior


def task_scores(best: int, tasks: int = 6) -> np.ndarray:
    scores = np.full((tasks, len(GRID)), 0.5)
    scores[:, best] = 0.9
    return scores


@pytest.mark.parametrize("cv_good_from", [5, 20, None])
def test_the_rule_cross_validates_from_where_it_beats_the_calibrated_lambda(cv_good_from):
    per_task = {}
    for shots in (1, 2, 3, 5, 10, 20):
        best = shots % 3
        scores = task_scores(best)
        helps = cv_good_from is not None and shots >= cv_good_from
        if helps:  # task 0 wants another λ: the calibrated one misses it there, cross-validation finds it
            scores[0] = 0.5
            scores[0, (best + 1) % 3] = 1.0
            cv = scores.argmax(1)
        else:  # cross-validation picks a poor λ (as when its folds tie and the strongest prior wins)
            cv = np.full(len(scores), (best + 1) % 3)
        if shots < 3:
            cv = np.full(len(scores), -1)  # too few images a class to cross-validate
        per_task[shots] = {"scores": scores, "cv": cv, "fitted": eh.cross_fitted(scores), "images": np.full(len(scores), shots)}
    rule = eh.choose_rule(per_task, GRID, (1, 2, 3, 5, 10, 20))
    expected = eh.NEVER_CV if cv_good_from is None else cv_good_from
    assert rule["cv_min_images"] == expected
    assert sorted(int(k) for k in rule["lambda_by_shots"]) == [k for k in (1, 2, 3, 5, 10, 20) if k < expected]
    assert rule["lambda_by_shots"]["1"] == GRID[1]
    # What the manifest gets reads back as the same rule.
    spec, _ = eh.specs({"grid": GRID, "rules": {"generated": rule, "reference": rule}}, eh.EvaluationConfig())
    assert RefineSpec.from_manifest(spec.manifest()) == spec
    assert spec.cv_min_images == expected
    described = eh.describe_rule(spec)
    assert ("never cross-validated" in described) == (cv_good_from is None)


def test_temperature_zero_is_one_deterministic_sample():
    config = eh.EvaluationConfig(samples=8, eta=0.5, temperature=0.5)
    zero = eh.settings(config, 0, temperature=0.0)
    assert (zero.samples, zero.eta, zero.temperature, zero.guidance) == (1, 0.0, 0.0, 1.0)
    sampled = eh.settings(config, 3)
    assert (sampled.samples, sampled.eta, sampled.temperature, sampled.seed) == (8, 0.5, 0.5, 3)


DIM = 12  # test_residual_head's, whose untrained generator these tests share


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_each_support_is_built_once_and_the_heads_do_not_change(generator, monkeypatch):
    rng = np.random.default_rng(1)
    supports = [[unit(rng.standard_normal((3, DIM))) for _ in range(4)] for _ in range(3)]
    config = eh.EvaluationConfig(samples=2, steps=4, temperature=0.5)
    seeds = [5, 6, 7]
    plain = eh.episode_heads(generator, supports, config, seeds)[0]
    built = []
    original = rh.build_support
    monkeypatch.setattr(rh, "build_support", lambda *args: built.append(1) or original(*args))
    heads, seconds = eh.episode_heads(generator, supports, config, seeds)
    assert len(built) == len(supports)
    assert set(seconds) == {"generated", "latent_zero", "reference"}
    for name, (w, b) in heads.items():
        np.testing.assert_array_equal(w, plain[name][0])
        np.testing.assert_array_equal(b, plain[name][1])
    assert heads["generated"][0].shape == (3, 2, 4, DIM) and heads["latent_zero"][0].shape == (3, 1, 4, DIM)
    reference, _ = generator.reference_heads(supports)
    np.testing.assert_array_equal(heads["reference"][0][:, 0], reference)
