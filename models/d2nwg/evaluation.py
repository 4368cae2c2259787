"""Measures both families' evaluations report: a mean with its spread, and how alike two models' errors are."""

from __future__ import annotations

import numpy as np


def stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def error_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two models' wrongly classified images (boolean masks); 1 when neither errs."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
