"""Generated + refined: a generated head pulled toward the support images; and the batched solver.

The MAP problem of logistic regression whose prior mean is the generated head
instead of zero (issue 13), on unit-norm support features x_i:

    min_{W,b}  Σ_i CE(W x_i + b, y_i) + (λ/2) (‖W − W_g‖² + ‖b − b_g‖²)

Strictly convex for λ > 0, so its optimum is unique. `refine_head` solves it by
L-BFGS over the full W and b (scipy); the TypeScript engine (src/engine/refine.ts)
solves it in the span of the support rows. `refine_fixture` records one solve
for the parity test that ties the two (src/engine/refine.test.ts).

λ (`choose_lambda`, the rule the engine runs too, read from the manifest's
`refine` block, `RefineSpec`): 3-fold cross-validation on the support over
`LAMBDA_GRID` (folds dealt per class in image order; mean validation accuracy;
ties to the stronger prior) when every class has ≥ 3 images; otherwise the λ
calibrated on held-out zoo tasks for the largest calibrated shot count not
above the smallest class. The prior each fold refines (`cv_prior`) is either
the mean of the generated heads ("mean") or the closed-form reference head of
the fold's own training images ("fold_reference"). The generated heads saw
every support image, the validation fold's too, so with "mean" a strong prior
scores on images it was made from and cross-validation favours it; the
reference of the fold's training images has seen none of them. How the folds
score a λ (`cv_score`): mean validation accuracy with ties to the stronger
prior ("accuracy"), or ties broken by the lower mean validation log-loss
("accuracy_then_loss"; `best_lambda`).

The evaluation solves thousands of such problems, and logistic regression
(the same problem with prior 0, penalty on W only), so the second half of the
module solves many at once: `minimise` is L-BFGS over a batch of independent
problems that share a shape, in orthonormal coordinates of each support's row
space (the optimum's change lies there: every gradient term is a combination of
support rows), with a diagonal preconditioner that those coordinates make
exact for the quadratic part.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

# The λ grid cross-validation chooses from (the baselines' 1/C grid and a stronger prior).
LAMBDA_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
CV_MIN_IMAGES = 3
CV_FOLDS = 3
CV_PRIORS = ("mean", "fold_reference")
CV_SCORES = ("accuracy", "accuracy_then_loss")


@dataclasses.dataclass(frozen=True)
class RefineSpec:
    """The λ rule as the manifest's `refine` block states it (both languages run it)."""

    lambda_by_shots: dict[int, float]  # calibrated λ for a support whose smallest class has this many images
    lambda_grid: tuple[float, ...] = LAMBDA_GRID
    cv_min_images: int = CV_MIN_IMAGES
    cv_folds: int = CV_FOLDS
    cv_prior: str = "mean"  # one of CV_PRIORS (module docstring)
    # How a λ's folds are scored: mean validation accuracy, ties to the stronger prior ("accuracy"), or
    # ties broken by the lower mean validation log-loss first ("accuracy_then_loss"): with a few validation
    # images a class, most λ score the same accuracy, and "accuracy" then keeps the prior unchanged.
    cv_score: str = "accuracy"
    # Where the solves stop: sklearn's rule, the largest gradient entry of the mean loss ≤ solver_tol
    # (`solver_tolerance`); the evaluation measured the refine with it, and the engine stops there too.
    solver_tol: float = 1e-4

    def __post_init__(self) -> None:
        if self.cv_prior not in CV_PRIORS:
            raise ValueError(f"cv_prior {self.cv_prior!r} is not one of {CV_PRIORS}")
        if self.cv_score not in CV_SCORES:
            raise ValueError(f"cv_score {self.cv_score!r} is not one of {CV_SCORES}")

    def manifest(self) -> dict:
        return {"lambda_grid": [int(v) if float(v).is_integer() else float(v) for v in self.lambda_grid],
                "cv_min_images": self.cv_min_images, "cv_folds": self.cv_folds, "cv_prior": self.cv_prior,
                "cv_score": self.cv_score, "solver_tol": self.solver_tol,
                "lambda_by_shots": {str(k): float(v) for k, v in sorted(self.lambda_by_shots.items())}}

    @staticmethod
    def from_manifest(block: dict) -> "RefineSpec":
        return RefineSpec(lambda_by_shots={int(k): float(v) for k, v in block["lambda_by_shots"].items()},
                          lambda_grid=tuple(float(v) for v in block["lambda_grid"]),
                          cv_min_images=int(block["cv_min_images"]), cv_folds=int(block["cv_folds"]),
                          cv_prior=str(block.get("cv_prior", "mean")), cv_score=str(block.get("cv_score", "accuracy")),
                          solver_tol=float(block.get("solver_tol", 1e-4)))

    def uses_fold_prior(self, fold_prior: object) -> bool:
        """Whether each fold refines its own prior; raises when the rule needs one and none was given."""
        if self.cv_prior == "fold_reference" and fold_prior is None:
            raise ValueError("cv_prior 'fold_reference' needs fold_prior")
        return self.cv_prior == "fold_reference"

    def calibrated(self, images: int) -> float:
        """The calibrated λ of the largest shot count not above `images` (the smallest one below them all)."""
        shots = sorted(self.lambda_by_shots)
        below = [s for s in shots if s <= images]
        return self.lambda_by_shots[below[-1] if below else shots[0]]


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


def support_folds(y: np.ndarray, classes: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) indices of each fold: each class's images dealt in image order, image i of a
    class to fold i mod folds (the engine's `stratifiedFolds`); rows class by class."""
    per_class = [np.flatnonzero(y == c) for c in range(classes)]
    out = []
    for f in range(folds):
        val = np.concatenate([p[np.arange(len(p)) % folds == f] for p in per_class])
        train = np.concatenate([p[np.arange(len(p)) % folds != f] for p in per_class])
        out.append((train, val))
    return out


def smallest_class(y: np.ndarray, classes: int) -> int:
    return int(np.bincount(y, minlength=classes).min())


def choose_lambda(heads: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray, spec: RefineSpec,
                  fold_prior: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None) -> float:
    """λ by the rule (module docstring): cross-validation, or calibrated. The prior of each fold is the
    heads' mean, or with `cv_prior` "fold_reference" fold_prior(x[train], y[train]) → (W [C, F], b [C]).
    One scipy solve per fold and λ: the reference for `choose_lambda_batch`."""
    classes = heads[0][0].shape[0]
    images = smallest_class(y, classes)
    if images < spec.cv_min_images:
        return spec.calibrated(images)
    prior_w = np.mean([w.astype(np.float64) for w, _ in heads], axis=0)
    prior_b = np.mean([b.astype(np.float64) for _, b in heads], axis=0)
    grid = sorted(spec.lambda_grid, reverse=True)
    scores, losses = np.zeros(len(grid)), np.zeros(len(grid))
    for train, val in support_folds(y, classes, spec.cv_folds):
        if spec.uses_fold_prior(fold_prior):
            prior_w, prior_b = (np.asarray(a, np.float64) for a in fold_prior(x[train], y[train]))
        for g, lam in enumerate(grid):
            w, b = refine_head(prior_w, prior_b, x[train], y[train], lam)
            logits = x[val] @ w.T + b
            scores[g] += float((logits.argmax(axis=1) == y[val]).mean())
            losses[g] += validation_loss(torch.from_numpy(logits)[None, None], torch.from_numpy(y[val])[None])[0, 0].item()
    return grid[int(best_lambda(torch.from_numpy(scores)[None], torch.from_numpy(losses)[None], spec.cv_score)[0])]


# Accuracies closer than this count as tied: a mean over folds of counts ÷ fold sizes, summed in another order.
TIE = 1e-9


def best_lambda(scores: torch.Tensor, losses: torch.Tensor, cv_score: str) -> torch.Tensor:
    """The grid index [B] cross-validation picks from scores and losses [B, G] (grid strongest prior first):
    the best accuracy, ties to the stronger prior ("accuracy") or to the lower loss ("accuracy_then_loss")."""
    if cv_score == "accuracy":
        return scores.argmax(1)  # the first maximum: the strongest prior
    tied = scores >= scores.max(1, keepdim=True).values - TIE
    return torch.where(tied, losses, torch.inf).argmin(1)


def validation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy [B, S] of logits [B, S, m, C] on labels [B, m]."""
    log_p = torch.log_softmax(logits, -1)
    picked = log_p.gather(-1, labels[:, None, :, None].expand(-1, log_p.shape[1], -1, 1))
    return -picked[..., 0].mean(-1)


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


# ---- many problems at once ----------------------------------------------------------------------------
#
# Problem (b, s) — support b, s one of S problems on it (samples, λs) — over Θ [C, q]:
#     F(Θ) = Σ_i CE(o_i + Θ ψ_i, y_i) + ½ Σ_k p_k ‖Θ_{:,k}‖²
# with offsets o [n, C] (the prior's logits), coordinates ψ_i [q] of the support rows whose columns are
# orthogonal (ΨᵀΨ = diag(s)), and per-column penalties p. The quadratic part of F's Hessian in column k
# is p_k + (softmax curvature) s_k, so diag(1 / (p_k + s_k / C)) preconditions it (curvature 1/C:
# a uniform softmax). Two forms of Ψ:
#   refine (prior W_g, b_g; λ on W and b): the augmented rows [x_i, 1] span the change of [W, b];
#     K + 11ᵀ = P diag(σ²) Pᵀ, Ψ = P σ, and [W, b] = [W_g, b_g] + α [X, 1] with α = Θ σ⁻¹ Pᵀ.
#   logistic regression (prior 0; λ = 1/C on W only, bias free): W lies in the span of the centred
#     rows (the free bias makes Σ_i r_i = 0); H K H = P diag(σ²) Pᵀ with H = I − 11ᵀ/n, Ψ = [P σ, 1],
#     the last column unpenalised (it is orthogonal to the others); W = α X with α = Θ_{:, :q-1} σ⁻¹ Pᵀ H
#     and b = Θ_{:, q-1} − W x̄.


@dataclasses.dataclass
class Supports:
    """B support sets of one shape, n rows each, in solver coordinates. Built from the supports' Gram
    matrices (x is kept only to form full heads: `heads_from`)."""

    y: torch.Tensor  # [B, n] int64
    classes: int
    coords: torch.Tensor  # [B, n, q]
    curvature: torch.Tensor  # [B, q]: Σ_i ψ_ik²
    to_rows: torch.Tensor  # [B, q', n]: α = Θ[..., :q'] @ to_rows
    row_means: torch.Tensor  # [B, n]: x_i · x̄ (logistic form's centring)
    free_bias: bool  # logistic form: the last column is the bias, unpenalised
    x: torch.Tensor | None = None  # [B, n, D] float64, unit-norm rows

    @property
    def penalised(self) -> torch.Tensor:
        """[B, q]: 1 where a column carries the penalty."""
        mask = torch.ones_like(self.curvature)
        if self.free_bias:
            mask[:, -1] = 0
        return mask


def _eig_coords(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram [B, n, n] → (P σ [B, n, n], σ⁻¹ Pᵀ [B, n, n]) with directions of negligible σ² zeroed."""
    values, vectors = torch.linalg.eigh(gram)
    keep = values > values[:, -1:].clamp_min(1e-300) * 1e-10
    sigma = torch.where(keep, values.clamp_min(0).sqrt(), torch.zeros_like(values))
    inverse = torch.where(keep, 1 / sigma.clamp_min(1e-300), torch.zeros_like(values))
    return vectors * sigma[:, None, :], vectors.transpose(1, 2) * inverse[:, :, None]


def gram_of(x: torch.Tensor) -> torch.Tensor:
    return x @ x.transpose(1, 2)


def refine_supports(x: np.ndarray | torch.Tensor | None, y: np.ndarray | torch.Tensor, classes: int,
                    gram: torch.Tensor | None = None) -> Supports:
    """Supports x [B, n, D] (unit-norm rows; or their Gram matrix [B, n, n]), labels y [B, n], in the
    refine's coordinates."""
    x = None if x is None else torch.as_tensor(x, dtype=torch.float64)
    gram = gram_of(x) if gram is None else gram
    coords, to_rows = _eig_coords(gram + 1.0)
    return Supports(torch.as_tensor(y, dtype=torch.int64), classes, coords, (coords ** 2).sum(1), to_rows,
                    gram.mean(2), free_bias=False, x=x)


def logistic_supports(x: np.ndarray | torch.Tensor | None, y: np.ndarray | torch.Tensor, classes: int,
                      gram: torch.Tensor | None = None) -> Supports:
    """Supports in logistic regression's coordinates (centred rows, and a free bias column)."""
    x = None if x is None else torch.as_tensor(x, dtype=torch.float64)
    gram = gram_of(x) if gram is None else gram
    bsz, n = gram.shape[:2]
    row_means = gram.mean(2)
    centred = gram - row_means[:, :, None] - row_means[:, None, :] + row_means.mean(1)[:, None, None]  # H K H
    coords, to_rows = _eig_coords(centred)
    to_rows = to_rows - to_rows.mean(2, keepdim=True)  # σ⁻¹ Pᵀ H
    coords = torch.cat([coords, torch.ones(bsz, n, 1, dtype=torch.float64)], dim=2)
    return Supports(torch.as_tensor(y, dtype=torch.int64), classes, coords, (coords ** 2).sum(1), to_rows, row_means,
                    free_bias=True, x=x)


def _loss_and_residual(logits: torch.Tensor, y_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_i CE per problem, and softmax − onehot; logits [B, S, C, n] (class-major: the products with the
    coordinates run fastest that way)."""
    log_p = torch.log_softmax(logits, dim=-2)
    loss = -(log_p * y_hot).sum((-1, -2))
    return loss, log_p.exp_().sub_(y_hot)


def minimise(supports: Supports, offsets: torch.Tensor, penalty: torch.Tensor, start: torch.Tensor | None = None,
             gtol: float | torch.Tensor = 1e-8, max_iter: int = 2000, memory: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Θ [B, S, C, q] minimising every problem's F (above); offsets [B, S, n, C], penalty [B, S] (λ).
    Stops a problem when its largest gradient entry is ≤ gtol (a float, or [B, S]), or when a step no
    longer lowers F (float64's limit). Returns (Θ, iterations [B, S]). Supports whose problems have all
    stopped leave the batch, so the products shrink as the batch converges."""
    bsz, samples = offsets.shape[:2]
    classes, q = supports.classes, supports.coords.shape[2]
    out_theta = torch.zeros(bsz, samples, classes, q, dtype=torch.float64) if start is None else start.clone()
    out_iterations = torch.zeros(bsz, samples, dtype=torch.int64)
    live = torch.arange(bsz)  # the original index of each support still in the batch
    coords = supports.coords
    weights = (penalty[:, :, None] * supports.penalised[:, None, :])[:, :, None, :]  # [B, S, 1, q]
    precondition = 1 / (weights + supports.curvature[:, None, None, :] / classes)  # [B, S, 1, q]
    y_hot = torch.nn.functional.one_hot(supports.y, classes).to(torch.float64).transpose(1, 2)[:, None]  # [B, 1, C, n]
    gtol = torch.as_tensor(gtol, dtype=torch.float64).expand(bsz, samples)
    theta = out_theta.clone()

    def along(t: torch.Tensor) -> torch.Tensor:  # the logits' change for Θ's change t: [B, S, C, q] → [B, S, C, n]
        b = len(t)
        return (t.reshape(b, samples * classes, q) @ coords.transpose(1, 2)).reshape(b, samples, classes, -1)

    def gradient(residual: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = len(t)
        g = (residual.reshape(b, samples * classes, -1) @ coords).reshape(b, samples, classes, q)
        return g.addcmul_(weights, t)

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # per problem: [B, S]
        return (a * b).sum((-1, -2))

    def quadratic(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * dot(t, weights * t)

    logits = offsets.transpose(-1, -2) + along(theta)
    loss, residual = _loss_and_residual(logits, y_hot)
    value = loss + quadratic(theta)
    grad = gradient(residual, theta)
    s_hist = torch.zeros(memory, bsz, samples, classes, q, dtype=torch.float64)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(memory, bsz, samples, dtype=torch.float64)
    order: list[int] = []  # history slots, oldest first
    iterations = torch.zeros(bsz, samples, dtype=torch.int64)
    active = grad.abs().amax((-1, -2)) > gtol
    for _ in range(max_iter):
        running = active.any(1)
        if not running.any():
            break
        if running.sum() <= 0.6 * len(running):  # drop the finished supports from the batch
            out_theta[live], out_iterations[live] = theta, iterations
            keep = torch.nonzero(running)[:, 0]
            live = live[keep]
            coords, weights, precondition, y_hot, gtol = coords[keep], weights[keep], precondition[keep], y_hot[keep], gtol[keep]
            theta, iterations, active, value = theta[keep], iterations[keep], active[keep], value[keep]
            logits, residual, grad = logits[keep], residual[keep], grad[keep]
            s_hist, y_hist, rho = s_hist[:, keep], y_hist[:, keep], rho[:, keep]
        b = len(theta)
        # Two-loop recursion: d = −H g, H from the stored pairs and the preconditioner scaled by γ.
        d = grad.clone()
        alphas = []
        for j in reversed(order):
            a = rho[j] * dot(s_hist[j], d)
            d.addcmul_(y_hist[j], a[..., None, None], value=-1)
            alphas.append(a)
        gamma = torch.ones(b, samples, dtype=torch.float64)
        if order:
            last = order[-1]
            yy = dot(y_hist[last], precondition * y_hist[last])
            ok = (yy > 0) & (rho[last] > 0)
            gamma = torch.where(ok, 1 / (rho[last] * yy).clamp_min(1e-300), gamma)
        d.mul_(precondition).mul_(gamma[..., None, None])
        for j, a in zip(order, reversed(alphas)):
            beta = rho[j] * dot(y_hist[j], d)
            d.addcmul_(s_hist[j], (a - beta)[..., None, None])
        d.neg_().mul_(active[..., None, None])
        slope = dot(grad, d)
        # Backtracking (Armijo) along d: the logits move along one product, computed once; the
        # quadratic part is a parabola in the step.
        step_logits = along(d)
        q0, q1, q2 = quadratic(theta), dot(theta, weights * d), quadratic(d)
        step = torch.ones(b, samples, dtype=torch.float64)
        pending = active.clone()
        new_value, new_residual = value.clone(), residual
        for _ in range(60):
            trial_logits = torch.addcmul(logits, step_logits, step[..., None, None])
            trial_loss, trial_residual = _loss_and_residual(trial_logits, y_hot)
            trial_value = trial_loss + q0 + step * q1 + step * step * q2
            ok = pending & (trial_value <= value + 1e-4 * step * slope)
            if ok.any():
                new_value = torch.where(ok, trial_value, new_value)
                new_residual = torch.where(ok[..., None, None], trial_residual, new_residual)
            pending &= ~ok
            if not pending.any():
                break
            step = torch.where(pending, step * 0.5, step)
        moved = active & ~pending  # a failed line search: float64's limit; the problem stops
        s = d.mul_((step * moved)[..., None, None])
        theta += s
        logits.addcmul_(step_logits, (step * moved)[..., None, None])
        new_grad = gradient(new_residual, theta)
        yv = new_grad.sub_(grad).mul_(moved[..., None, None])
        sy = dot(s, yv)
        # A pair is kept only with clear positive curvature (near float64's limit it is noise).
        good = sy > 1e-10 * (dot(s, s) * dot(yv, yv)).sqrt()
        slot = order.pop(0) if len(order) == memory else len(order)
        order.append(slot)
        s_hist[slot] = s * good[..., None, None]
        y_hist[slot] = yv * good[..., None, None]
        rho[slot] = torch.where(good, 1 / sy.clamp_min(1e-300), torch.zeros_like(sy))
        grad += yv
        decreased = value - new_value > 1e-15 * value.abs()
        value = torch.where(moved, new_value, value)
        residual = new_residual
        iterations += moved.long()
        active = moved & decreased & (grad.abs().amax((-1, -2)) > gtol)
    out_theta[live], out_iterations[live] = theta, iterations
    return out_theta, out_iterations


def heads_from(supports: Supports, theta: torch.Tensor, prior_w: torch.Tensor | None = None,
               prior_b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Θ [B, S, C, q] → heads W [B, S, C, D], b [B, S, C] (refine: added to the prior)."""
    if supports.free_bias:
        alpha = theta[..., :-1] @ supports.to_rows[:, None]  # [B, S, C, n]
        w = alpha @ supports.x[:, None]
        b = theta[..., -1] - (w @ supports.x.mean(1)[:, None, :, None]).squeeze(-1)
        return w, b
    alpha = theta @ supports.to_rows[:, None]
    return prior_w + alpha @ supports.x[:, None], prior_b + alpha.sum(-1)


def query_logits(supports: Supports, theta: torch.Tensor, cross: torch.Tensor, prior_logits: torch.Tensor | None = None) -> torch.Tensor:
    """The solved heads' logits on queries without forming W, from cross = X_support X_queryᵀ [B, n, m]:
    [B, S, m, C] (refine: added to the prior's logits on the queries [B, S, m, C])."""
    if supports.free_bias:
        alpha = theta[..., :-1] @ supports.to_rows[:, None]  # [B, S, C, n]
        centred = cross - supports.row_means[:, :, None]  # x_i · (x_q − x̄)
        return (alpha @ centred[:, None]).transpose(-1, -2) + theta[..., -1][:, :, None, :]
    alpha = theta @ supports.to_rows[:, None]
    return prior_logits + (alpha @ (cross[:, None] + 1)).transpose(-1, -2)


def solver_tolerance(tol: float, rows: int) -> float:
    """sklearn's lbfgs stopping rule (largest gradient entry of the mean loss ≤ tol) for this module's
    summed objective."""
    return tol * rows


def refine_batch(supports: Supports, prior_w: np.ndarray | torch.Tensor, prior_b: np.ndarray | torch.Tensor,
                 lam: np.ndarray | torch.Tensor | float, start: torch.Tensor | None = None,
                 gtol: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refined heads for priors W_g [B, S, C, D], b_g [B, S, C] on supports prepared by
    `refine_supports`, λ [B, S] (or one float): (W [B, S, C, D], b [B, S, C], Θ for warm starts)."""
    prior_w = torch.as_tensor(prior_w, dtype=torch.float64)
    prior_b = torch.as_tensor(prior_b, dtype=torch.float64)
    lam = torch.as_tensor(lam, dtype=torch.float64).expand(prior_b.shape[:2])
    if not bool((lam > 0).all()):
        raise ValueError("λ must be positive")
    offsets = (supports.x[:, None] @ prior_w.transpose(-1, -2)) + prior_b[:, :, None, :]
    theta, _ = minimise(supports, offsets, lam, start, gtol)
    w, b = heads_from(supports, theta, prior_w, prior_b)
    return w, b, theta


def sklearn_lambda(c: torch.Tensor, classes: int, multinomial: bool = False) -> torch.Tensor:
    """The penalty λ of this module's softmax form that makes sklearn's LogisticRegression(C)'s decisions.
    With two classes sklearn fits one binary model, whose ½‖w‖² is the softmax pair's ¼‖w₁ − w₂‖²: λ = 2/C;
    otherwise (or with multi_class='multinomial') λ = 1/C."""
    return (2.0 if classes == 2 and not multinomial else 1.0) / c


def logistic_batch(supports: Supports, c: np.ndarray | torch.Tensor | float, multinomial: bool = False,
                   start: torch.Tensor | None = None, gtol: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's LogisticRegression(C) on supports prepared by `logistic_supports`, C [B, S] (or one
    float): (W [B, S, C, D], b [B, S, C], Θ)."""
    bsz = supports.x.shape[0]
    c = torch.as_tensor(c, dtype=torch.float64)
    c = c.expand(bsz, 1) if c.dim() == 0 else c
    offsets = torch.zeros(*c.shape, supports.x.shape[1], supports.classes, dtype=torch.float64)
    theta, _ = minimise(supports, offsets, sklearn_lambda(c, supports.classes, multinomial), start, gtol)
    w, b = heads_from(supports, theta)
    return w, b, theta


# ---- the λ rule and sklearn's C choice, for many supports of one shape ---------------------------------


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [B, S, m, C], labels [B, m] → [B, S]."""
    return (logits.argmax(-1) == labels[:, None]).to(torch.float64).mean(-1)


def prior_logits(x: torch.Tensor, prior_w: torch.Tensor, prior_b: torch.Tensor) -> torch.Tensor:
    """x [B, m, D], heads W [B, S, C, D], b [B, S, C] → [B, S, m, C]."""
    return x[:, None] @ prior_w.transpose(-1, -2) + prior_b[:, :, None, :]


def refined_query_logits(supports: Supports, cross: torch.Tensor, support_prior: torch.Tensor, query_prior: torch.Tensor,
                         lam: torch.Tensor, tol: float) -> torch.Tensor:
    """Prior heads refined with λ [B, S] on supports prepared by `refine_supports`, given the priors' logits
    on the support [B, S or 1, n, C] and on the queries [B, S or 1, m, C] and cross = X Xqᵀ: the refined
    heads' logits on the queries [B, S, m, C]. `tol`: sklearn's stopping rule."""
    shape = (-1, lam.shape[1], -1, -1)
    theta, _ = minimise(supports, support_prior.expand(shape), lam, gtol=solver_tolerance(tol, supports.coords.shape[1]))
    return query_logits(supports, theta, cross, query_prior.expand(shape))


def refined_logits(x: torch.Tensor, y: torch.Tensor, classes: int, prior_w: torch.Tensor, prior_b: torch.Tensor,
                   lam: torch.Tensor, xq: torch.Tensor, tol: float) -> torch.Tensor:
    """Every prior head W [B, S, C, D], b [B, S, C] (or S = 1: one prior for every λ) refined on support
    x [B, n, D], y [B, n] with λ [B, S]: the refined heads' logits on xq [B, m, D], [B, S, m, C]."""
    return refined_query_logits(refine_supports(x, y, classes), x @ xq.transpose(1, 2), prior_logits(x, prior_w, prior_b),
                                prior_logits(xq, prior_w, prior_b), lam, tol)


def choose_lambda_batch(x: torch.Tensor, y: torch.Tensor, classes: int, prior_w: torch.Tensor, prior_b: torch.Tensor,
                        spec: RefineSpec, tol: float, gram: torch.Tensor | None = None,
                        fold_prior: Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]] | None = None,
                        ) -> torch.Tensor:
    """`choose_lambda` for B supports with the same labels y [B, n] (so the same folds): λ [B] for the
    prior W [B, C, D], b [B, C] (the mean generated head); with `cv_prior` "fold_reference", each fold's
    prior is fold_prior(x[:, train], labels[train]) → (W [B, C, D], b [B, C]) instead."""
    bsz = x.shape[0]
    images = smallest_class(y[0].numpy(), classes)
    if not bool((y == y[0]).all()):
        raise ValueError("choose_lambda_batch needs supports with the same labels")
    if images < spec.cv_min_images:
        return torch.full((bsz,), spec.calibrated(images), dtype=torch.float64)
    grid = sorted(spec.lambda_grid, reverse=True)
    scores = torch.zeros(bsz, len(grid), dtype=torch.float64)
    losses = torch.zeros(bsz, len(grid), dtype=torch.float64)
    gram = gram_of(x) if gram is None else gram
    prior = prior_logits(x, prior_w[:, None], prior_b[:, None])  # [B, 1, n, C]
    labels = y[0].numpy()
    for train, val in support_folds(labels, classes, spec.cv_folds):
        if spec.uses_fold_prior(fold_prior):
            fold_w, fold_b = fold_prior(x[:, train], labels[train])
            prior = prior_logits(x, fold_w[:, None], fold_b[:, None])
        supports = refine_supports(None, y[:, train], classes, gram[:, train][:, :, train])
        cross = gram[:, train][:, :, val]
        theta = None  # down the grid, each solve starts from the previous λ's optimum (as the engine does)
        for g, lam in enumerate(grid):
            penalty = torch.full((bsz, 1), lam, dtype=torch.float64)
            theta, _ = minimise(supports, prior[:, :, train], penalty, theta, solver_tolerance(tol, len(train)))
            logits = query_logits(supports, theta, cross, prior[:, :, val])
            scores[:, g] += _accuracy(logits, y[:, val])[:, 0]
            losses[:, g] += validation_loss(logits, y[:, val])[:, 0]
    return torch.tensor(grid, dtype=torch.float64)[best_lambda(scores, losses, spec.cv_score)]


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """sklearn's StratifiedKFold(folds, shuffle=True, random_state=seed), as `baselines.choose_c` deals."""
    from sklearn.model_selection import StratifiedKFold
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % (2**32))
    return list(splitter.split(np.zeros(len(y)), y))


def logistic_query_logits(supports: Supports, cross: torch.Tensor, c: torch.Tensor, tol: float,
                          multinomial: bool = False) -> torch.Tensor:
    """LogisticRegression(C) for every C [B, S] on supports prepared by `logistic_supports`: logits on the
    queries of cross = X Xqᵀ, [B, S, m, C]."""
    n = supports.coords.shape[1]
    offsets = torch.zeros(*c.shape, n, supports.classes, dtype=torch.float64)
    theta, _ = minimise(supports, offsets, sklearn_lambda(c, supports.classes, multinomial), gtol=solver_tolerance(tol, n))
    return query_logits(supports, theta, cross)


def logistic_logits(x: torch.Tensor, y: torch.Tensor, classes: int, c: torch.Tensor, xq: torch.Tensor, tol: float,
                    multinomial: bool = False) -> torch.Tensor:
    """LogisticRegression(C) for every C [B, S] on support x [B, n, D], y [B, n]: logits on xq, [B, S, m, C]."""
    return logistic_query_logits(logistic_supports(x, y, classes), x @ xq.transpose(1, 2), c, tol, multinomial)


def choose_c_batch(x: torch.Tensor, y: torch.Tensor, classes: int, grid: tuple[float, ...], folds: int,
                   seeds: list[int], tol: float, gram: torch.Tensor | None = None) -> torch.Tensor:
    """`baselines.choose_c` for B supports (support b's folds from seeds[b]): C [B], ties to the smallest."""
    bsz = x.shape[0]
    k = min(folds, smallest_class(y[0].numpy(), classes))
    cs = sorted(grid)
    scores = torch.zeros(bsz, len(cs), dtype=torch.float64)
    dealt = [stratified_folds(y[b].numpy(), k, seeds[b]) for b in range(bsz)]
    gram = gram_of(x) if gram is None else gram
    rows = torch.arange(bsz)[:, None, None]
    for f in range(k):
        train = torch.as_tensor(np.stack([d[f][0] for d in dealt]))  # equal sizes: every support has the same counts
        val = torch.as_tensor(np.stack([d[f][1] for d in dealt]))
        supports = logistic_supports(None, y[rows[:, :, 0], train], classes, gram[rows, train[:, :, None], train[:, None, :]])
        cross = gram[rows, train[:, :, None], val[:, None, :]]
        offsets = torch.zeros(bsz, 1, train.shape[1], classes, dtype=torch.float64)
        theta = None  # up the grid of C, each fit starts from the previous one (baselines.choose_c's path)
        for i, c in enumerate(cs):
            penalty = sklearn_lambda(torch.full((bsz, 1), c, dtype=torch.float64), classes)
            theta, _ = minimise(supports, offsets, penalty, theta, solver_tolerance(tol, train.shape[1]))
            scores[:, i] += _accuracy(query_logits(supports, theta, cross), y[rows[:, :, 0], val])[:, 0]
    return torch.tensor(cs, dtype=torch.float64)[scores.argmax(1)]  # the first maximum: the smallest C
