"""A seeded random source that TypeScript reproduces bit for bit (src/engine/rng.ts).

Sampling must give the same weights for the same seed in the factory, in
Node and in the page, so the generator's noise does not come from torch or
numpy but from this: mulberry32 (32-bit state, uniform floats in [0, 1)),
and normals by the Box–Muller transform, two per pair of uniforms. The
uniforms agree exactly between the languages (integer arithmetic); the
normals to within an ulp or so (log, sin and cos come from different maths
libraries), far below the float32 precision of everything downstream.
"""

from __future__ import annotations

import math

import numpy as np

MASK = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    """JavaScript's Math.imul: the low 32 bits of a * b, as unsigned."""
    return (a * b) & MASK


class Mulberry32:
    def __init__(self, seed: int):
        self.state = seed & MASK
        self._spare: float | None = None

    def uniform(self) -> float:
        self.state = (self.state + 0x6D2B79F5) & MASK
        t = self.state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & MASK
        return ((t ^ (t >> 14)) & MASK) / 4294967296.0

    def normal(self) -> float:
        if self._spare is not None:
            value, self._spare = self._spare, None
            return value
        u1 = 1.0 - self.uniform()  # (0, 1]: log is finite
        u2 = self.uniform()
        radius = math.sqrt(-2.0 * math.log(u1))
        self._spare = radius * math.sin(2.0 * math.pi * u2)
        return radius * math.cos(2.0 * math.pi * u2)

    def normals(self, count: int) -> np.ndarray:
        return np.array([self.normal() for _ in range(count)], dtype=np.float64)
