"""Generated + refined: a generated head pulled toward the support images.

The MAP problem of logistic regression whose prior mean is the generated head
instead of zero (issue 13), on unit-norm support features x_i:

    min_{W,b}  Σ_i CE(W x_i + b, y_i) + (λ/2) (‖W − W_g‖² + ‖b − b_g‖²)

Strictly convex for λ > 0, so its optimum is unique. This module solves it by
L-BFGS over the full W and b; the TypeScript engine (src/engine/refine.ts)
solves it in the span of the support rows. `refine_fixture` records one solve
for the parity test that ties the two (src/engine/refine.test.ts).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

# The λ grid cross-validation chooses from (the baselines' 1/C grid and a stronger
# prior), and the λ used where a class has fewer than 3 images: provisional until
# chosen per shot count on held-out zoo tasks.
LAMBDA_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
DEFAULT_LAMBDA = 1.0


def refine_head(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray,
                lam: float, gtol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """The refined (W [C, F], b [C]) for a head on unit-norm support rows x [n, F], labels y [n]."""
    if not lam > 0:
        raise ValueError(f"λ must be positive, got {lam}")
    weight = weight.astype(np.float64)
    bias = bias.astype(np.float64)
    x = x.astype(np.float64)
    classes, dim = weight.shape
    rows = np.arange(len(y))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: classes * dim].reshape(classes, dim)
        b = theta[classes * dim:]
        z = x @ w.T + b
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        residual = np.exp(log_p)
        residual[rows, y] -= 1
        dw, db = w - weight, b - bias
        loss = -log_p[rows, y].sum() + 0.5 * lam * ((dw ** 2).sum() + (db ** 2).sum())
        grad = np.concatenate([(residual.T @ x + lam * dw).ravel(), residual.sum(axis=0) + lam * db])
        return float(loss), grad

    start = np.concatenate([weight.ravel(), bias])
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 10_000, "gtol": gtol, "ftol": 1e-16, "maxcor": 20})
    theta = result.x
    return theta[: classes * dim].reshape(classes, dim), theta[classes * dim:]


def choose_lambda(heads: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray) -> float:
    """λ by cross-validation on the support, folds dealt per class in image order (as the
    engine does); mean accuracy over the heads; ties to the stronger prior."""
    per_class = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
    folds = min(3, *(len(p) for p in per_class))
    if folds < 3:
        return DEFAULT_LAMBDA
    grid = sorted(LAMBDA_GRID, reverse=True)
    scores = np.zeros(len(grid))
    for f in range(folds):
        val = np.concatenate([p[np.arange(len(p)) % folds == f] for p in per_class])
        train = np.concatenate([p[np.arange(len(p)) % folds != f] for p in per_class])
        for g, lam in enumerate(grid):
            for weight, bias in heads:
                w, b = refine_head(weight, bias, x[train], y[train], lam)
                scores[g] += float(((x[val] @ w.T + b).argmax(axis=1) == y[val]).mean())
    return grid[int(np.argmax(scores))]


def refine_fixture(trace_path: Path, lam: float = 0.5) -> dict:
    """One refine on the head trace's support, from the trace's first generated head with its
    class rows rotated by one: a head wrong on every class, so that the refine must move it
    (the generated head itself already fits these images, and would hardly move)."""
    trace = json.loads(trace_path.read_text())
    classes, images, dim = trace["features"]["shape"]
    features = np.asarray(trace["features"]["data"], dtype=np.float32).reshape(classes, images, dim)
    mask = np.asarray(trace["image_mask"]["data"]).reshape(classes, images) > 0
    x = np.concatenate([features[c][mask[c]] for c in range(classes)])
    y = np.concatenate([np.full(int(mask[c].sum()), c) for c in range(classes)])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    weight = np.asarray(trace["weight"]["data"], dtype=np.float32).reshape(trace["weight"]["shape"])[0]
    bias = np.asarray(trace["bias"]["data"], dtype=np.float32).reshape(trace["bias"]["shape"])[0]
    weight, bias = np.roll(weight, 1, axis=0), np.roll(bias, 1)
    w, b = refine_head(weight, bias, x, y, lam)
    return {"trace": trace_path.name, "sample": 0, "lambda": lam,
            "weight": {"shape": list(w.shape), "data": [float(v) for v in w.ravel()]},
            "bias": {"shape": list(b.shape), "data": [float(v) for v in b]}}
