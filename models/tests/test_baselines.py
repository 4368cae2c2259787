"""The logistic-regression baseline fitted in the row space of its support set equals the plain fit."""

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from d2nwg.baselines import LogisticHead, normalise


def test_row_space_fit_predicts_like_the_full_dimensional_fit():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 300))
    y = np.repeat(np.arange(6), 5)
    x = normalise(centres[y] + 0.8 * rng.standard_normal((30, 300)))
    queries = normalise(centres[rng.integers(0, 6, 200)] + 0.8 * rng.standard_normal((200, 300)))
    for c in (1.0, 100.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = LogisticRegression(C=c, max_iter=2000, tol=1e-8).fit(x, y)
        reduced = LogisticHead(c)
        reduced.model.set_params(max_iter=2000, tol=1e-8)
        reduced.fit(x, y)
        assert reduced.basis.shape == (30, 300)
        np.testing.assert_array_equal(reduced.predict(queries), full.predict(queries))
        np.testing.assert_allclose(reduced.model.coef_ @ reduced.basis, full.coef_, atol=1e-3)
