"""The noise schedule and the DDIM sampler (Song, Meng & Ermon, ICLR 2021), apart from any model.

Training uses the DDPM forward process (Ho et al. 2020):
    (1)  x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε,   ε ~ N(0, I),   ᾱ_t = ∏_{s≤t} (1 − β_s)
and sampling the DDIM update, numbered as in the DDIM paper:
    (12) x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε_θ) / sqrt(ᾱ_t)
    (16) σ_t = η sqrt((1 − ᾱ_prev) / (1 − ᾱ_t)) sqrt(1 − ᾱ_t / ᾱ_prev)
    (12) x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 − ᾱ_prev − σ_t²) ε_θ + σ_t z
and classifier-free guidance (Ho & Salimans 2022) over a conditional and an
unconditional ε̂:
    ε = ε_∅ + g (ε_c − ε_∅)
The TypeScript `DdimScheduler` (src/engine/ddim.ts) implements the same
arithmetic. `sample_guided` is the one sampling loop of the factory: both
families' generators, the evaluations and the exported parity traces run it
(a trace is its `record` hook), and `trace()` records a run with a synthetic ε
that the engine's tests replay.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .rng import Mulberry32

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    train_steps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 2e-2

    def alphas_cumprod(self) -> np.ndarray:  # ᾱ_t for t = 0 … T−1, float64
        if self.beta_schedule == "linear":
            betas = np.linspace(self.beta_start, self.beta_end, self.train_steps, dtype=np.float64)
        elif self.beta_schedule == "scaled_linear":
            betas = np.linspace(self.beta_start**0.5, self.beta_end**0.5, self.train_steps, dtype=np.float64) ** 2
        elif self.beta_schedule == "cosine":  # Nichol & Dhariwal 2021, s = 0.008, β clipped at 0.999
            steps = np.arange(self.train_steps + 1, dtype=np.float64) / self.train_steps
            f = np.cos((steps + 0.008) / 1.008 * np.pi / 2) ** 2
            betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
        else:
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; choose one of {BETA_SCHEDULES}")
        return np.cumprod(1.0 - betas)


def timesteps(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    """The `steps` timesteps DDIM visits, descending, evenly spaced ("leading" spacing)."""
    if not 1 <= steps <= schedule.train_steps:
        raise ValueError(f"steps must be in 1..{schedule.train_steps}, got {steps}")
    ratio = schedule.train_steps // steps
    return (np.arange(steps, dtype=np.int64) * ratio)[::-1].copy()


def add_noise(schedule: NoiseSchedule, x0: np.ndarray, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(1): the forward process at integer timesteps t ([B]) for x0 [B, ...]."""
    a = schedule.alphas_cumprod()[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    return np.sqrt(a) * x0 + np.sqrt(1 - a) * noise


def ddim_step(
    schedule: NoiseSchedule, steps: int, eps: np.ndarray, t: int, x: np.ndarray, eta: float, rng: Mulberry32 | None
) -> tuple[np.ndarray, np.ndarray]:
    """One DDIM update from timestep t; returns (x_prev, x̂_0). Noise (η > 0) is drawn from `rng`."""
    alphas = schedule.alphas_cumprod()
    prev_t = t - schedule.train_steps // steps
    a_t = alphas[t]
    a_prev = alphas[prev_t] if prev_t >= 0 else 1.0  # the last step lands on x_0
    pred_x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)  # (12)
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t)) * np.sqrt(1 - a_t / a_prev)  # (16)
    prev = np.sqrt(a_prev) * pred_x0 + np.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps  # (12)
    if sigma > 0:
        if rng is None:
            raise ValueError("eta > 0 needs a random source")
        prev = prev + sigma * rng.normals(x.size).reshape(x.shape)
    return prev, pred_x0


# ε̂ for x [R, ...] (float64) at timestep t, row r scaled by condition_scale[r] (1: its condition, 0: none)
EpsFunction = Callable[[np.ndarray, int, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class GuidedStep:
    """One update of `sample_guided`, as its `record` hook sees it (arrays [B, ...], float64)."""

    t: int
    sample: np.ndarray  # x_t
    eps_conditional: np.ndarray
    eps_unconditional: np.ndarray | None  # None when guidance is 1: the unconditional half is not run
    eps: np.ndarray  # the guided ε the update used
    prev_sample: np.ndarray  # x_{t−1}
    pred_x0: np.ndarray


def sample_guided(
    schedule: NoiseSchedule,
    x_T: np.ndarray,
    eps_fn: EpsFunction,
    steps: int,
    eta: float,
    guidance: float,
    rng: Mulberry32 | list[Mulberry32] | None,
    record: Callable[[GuidedStep], None] | None = None,
    from_t: int | None = None,
) -> np.ndarray:
    """DDIM over `timesteps(schedule, steps)` from x_T [B, ...] (float64) to x_0, ε by guidance.

    With g ≠ 1 the conditional and the unconditional batch go through one `eps_fn` call: rows
    [x; x] with condition_scale [1…1; 0…0]; with g = 1 only the conditional batch runs. Row r of
    what `eps_fn` gets is conditioned like row r mod B.
    `rng`: where η > 0 draws its noise; a list of sources splits the B rows into equal groups, each
    drawing from its own (datasets batched together draw what separate runs would).
    `record(step)`: called after every update. `from_t`: x_T is a partly noised x_t; only the
    timesteps ≤ from_t run.
    """
    x = x_T
    rows = len(x)
    guided = guidance != 1.0
    scale = np.concatenate([np.ones(rows, np.float32), np.zeros(rows if guided else 0, np.float32)])
    for t in timesteps(schedule, steps):
        if from_t is not None and t > from_t:
            continue
        eps_all = eps_fn(np.concatenate([x, x]) if guided else x, int(t), scale)
        if guided:
            eps_c, eps_u = eps_all[:rows], eps_all[rows:]
            eps = eps_u + guidance * (eps_c - eps_u)
        else:
            eps_c, eps_u, eps = eps_all, None, eps_all
        prev, pred_x0 = _grouped_step(schedule, steps, eps, int(t), x, eta, rng)
        if record is not None:
            record(GuidedStep(int(t), x, eps_c, eps_u, eps, prev, pred_x0))
        x = prev
    return x


def _grouped_step(schedule: NoiseSchedule, steps: int, eps: np.ndarray, t: int, x: np.ndarray, eta: float,
                  rng: Mulberry32 | list[Mulberry32] | None) -> tuple[np.ndarray, np.ndarray]:
    """`ddim_step`, with one noise source per equal group of rows when `rng` is a list."""
    if not isinstance(rng, list):
        return ddim_step(schedule, steps, eps, t, x, eta, rng)
    if eta == 0.0:
        return ddim_step(schedule, steps, eps, t, x, eta, None)
    size = len(x) // len(rng)
    parts = [ddim_step(schedule, steps, eps[g * size : (g + 1) * size], t, x[g * size : (g + 1) * size], eta, source)
             for g, source in enumerate(rng)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([p for _, p in parts])


def trace(schedule: NoiseSchedule, steps: int, eta: float, seed: int, shape: tuple[int, ...]) -> dict:
    """A short DDIM run with a synthetic ε (a fixed function of x and t), every step recorded."""
    rng = Mulberry32(seed)
    x = rng.normals(int(np.prod(shape))).reshape(shape)
    record = {"schedule": dataclasses.asdict(schedule), "steps": steps, "eta": eta, "seed": seed,
              "shape": list(shape), "initial": x.ravel().tolist(), "trace": []}

    def synthetic_eps(x: np.ndarray, t: int, condition_scale: np.ndarray) -> np.ndarray:
        return 0.3 * x + 0.1 * np.sin(np.arange(x.size).reshape(x.shape) + t)

    def keep(step: GuidedStep) -> None:
        record["trace"].append({"t": step.t, "eps": step.eps.ravel().tolist(),
                                "prev_sample": step.prev_sample.ravel().tolist(), "pred_x0": step.pred_x0.ravel().tolist()})

    sample_guided(schedule, x, synthetic_eps, steps, eta, 1.0, rng, record=keep)
    return record
