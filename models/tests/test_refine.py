"""The refine stage: the MAP optimum, its limits, λ choice, and the fixture the engine replays."""

import json

import numpy as np

from d2nwg.config import MODELS_DIR, RELEASE_DIR
from d2nwg.refine import DEFAULT_LAMBDA, LAMBDA_GRID, choose_lambda, refine_fixture, refine_head


def support(classes: int, per_class: int, seed: int, dim: int = 24):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = np.repeat(centres, per_class, axis=0) + 0.8 * rng.normal(size=(classes * per_class, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(classes), per_class)


def full_gradient(w, b, prior_w, prior_b, x, y, lam):
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return max(np.abs(p.T @ x + lam * (w - prior_w)).max(), np.abs(p.sum(0) + lam * (b - prior_b)).max())


def test_refine_reaches_the_optimum_and_moves_between_prior_and_fit():
    x, y = support(4, 5, 1)
    rng = np.random.default_rng(2)
    prior_w, prior_b = 3 * rng.normal(size=(4, 24)), rng.normal(size=4)
    for lam in (0.01, 1.0, 10.0):
        w, b = refine_head(prior_w, prior_b, x, y, lam)
        assert full_gradient(w, b, prior_w, prior_b, x, y, lam) < 1e-5, lam
    strong_w, _ = refine_head(prior_w, prior_b, x, y, 1e4)
    assert np.abs(strong_w - prior_w).max() < 0.01
    weak_w, weak_b = refine_head(prior_w, prior_b, x, y, 1e-3)
    assert ((x @ weak_w.T + weak_b).argmax(1) == y).all()
    assert not ((x @ prior_w.T + prior_b).argmax(1) == y).all()


def test_lambda_by_cross_validation_or_the_default():
    rng = np.random.default_rng(3)
    heads = [(rng.normal(size=(3, 24)), rng.normal(size=3)) for _ in range(2)]
    x, y = support(3, 2, 4)
    assert choose_lambda(heads, x, y) == DEFAULT_LAMBDA
    x, y = support(3, 6, 5)
    assert choose_lambda(heads, x, y) in LAMBDA_GRID


def test_committed_fixture_is_what_refine_gives():
    committed = json.loads((MODELS_DIR / "fixtures" / "refine.json").read_text())
    fresh = refine_fixture(RELEASE_DIR / "head" / "trace.json", committed["lambda"])
    for key in ("weight", "bias"):
        a, b = np.asarray(committed[key]["data"]), np.asarray(fresh[key]["data"])
        assert np.abs(a - b).max() <= 1e-6 * max(1.0, np.abs(b).max()), key
