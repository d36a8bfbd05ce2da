"""Anomaly scores: robust z-scores (median / MAD) and an IsolationForest over bar features.

Robust z: ``z = (x - median) / (1.4826 x MAD)``; 1.4826 makes the MAD a consistent estimate of
the sd for Gaussian data, so a threshold reads like an ordinary z. When more than half the values
are equal the MAD is 0; then the mean absolute deviation x 1.2533 stands in, and a series with no
spread at all has no anomalies."""

from __future__ import annotations

import numpy as np

MAD_SCALE = 1.4826
MEAN_AD_SCALE = 1.2533


def robust_z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float64")
    if x.size == 0:
        return x
    med = float(np.median(x))
    dev = np.abs(x - med)
    scale = MAD_SCALE * float(np.median(dev))
    if scale == 0.0:
        scale = MEAN_AD_SCALE * float(dev.mean())
    if scale == 0.0:
        return np.zeros_like(x)
    return (x - med) / scale


def flagged(z: np.ndarray, threshold: float) -> np.ndarray:
    return np.flatnonzero(np.abs(z) >= threshold)


def isolation_scores(features: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Anomaly score per row (higher = more isolated), ``-score_samples`` of a 200-tree forest."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed, n_jobs=1).fit(features)
    return -forest.score_samples(features)
