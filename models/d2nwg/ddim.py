"""The noise schedule and the DDIM sampler (Song, Meng & Ermon, ICLR 2021), apart from any model.

Training uses the DDPM forward process (Ho et al. 2020):
    (1)  x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε,   ε ~ N(0, I),   ᾱ_t = ∏_{s≤t} (1 − β_s)
and sampling the DDIM update, numbered as in the DDIM paper:
    (12) x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε_θ) / sqrt(ᾱ_t)
    (16) σ_t = η sqrt((1 − ᾱ_prev) / (1 − ᾱ_t)) sqrt(1 − ᾱ_t / ᾱ_prev)
    (12) x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 − ᾱ_prev − σ_t²) ε_θ + σ_t z
The TypeScript `DdimScheduler` (src/engine/ddim.ts) implements the same
arithmetic; `trace()` records a run that its tests replay.
"""

from __future__ import annotations

import dataclasses

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


def trace(schedule: NoiseSchedule, steps: int, eta: float, seed: int, shape: tuple[int, ...]) -> dict:
    """A short DDIM run with a synthetic ε (a fixed function of x and t), every step recorded."""
    rng = Mulberry32(seed)
    x = rng.normals(int(np.prod(shape))).reshape(shape)
    record = {"schedule": dataclasses.asdict(schedule), "steps": steps, "eta": eta, "seed": seed,
              "shape": list(shape), "initial": x.ravel().tolist(), "trace": []}
    for t in timesteps(schedule, steps):
        eps = 0.3 * x + 0.1 * np.sin(np.arange(x.size).reshape(shape) + t)
        prev, pred_x0 = ddim_step(schedule, steps, eps, int(t), x, eta, rng)
        record["trace"].append({"t": int(t), "eps": eps.ravel().tolist(), "prev_sample": prev.ravel().tolist(),
                                "pred_x0": pred_x0.ravel().tolist()})
        x = prev
    return record
