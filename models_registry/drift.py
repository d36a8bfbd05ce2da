"""Drift of a version's inputs: the population stability index (PSI) of each feature between the
training data (decile bins recorded with the version) and the most recent window of stored bars,
and of the predicted-class distribution between the training period and that window.

PSI = Σ (recent% − train%) · ln(recent% / train%). Conventional reading: < 0.1 stable,
0.1–0.25 moderate, > 0.25 significant; shares are floored at 1e-4 so an empty bin stays finite.
"""

from __future__ import annotations

import numpy as np
from django.utils import timezone

from api.errors import ApplicationError

from .models import ModelAlert, ModelVersion

PSI_ALERT = 0.25
WINDOW = 250  # recent bars compared with the training distribution
_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=float), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    values = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def drift_check(*, version: ModelVersion, window: int = WINDOW, record: bool = True) -> dict:
    """PSI per feature on the last ``window`` bars; records the result on the version and, above
    ``PSI_ALERT``, a drift alert (once per check)."""
    from features import selectors as fs_selectors
    from marketdata import selectors as md_selectors

    reference = version.reference or {}
    if not reference:
        raise ApplicationError("no_reference", f"{version.ref} has no training distribution recorded.")
    instrument = md_selectors.instrument_get(symbol=version.symbol)
    feats = fs_selectors.stored_features(instrument=instrument, timeframe=version.timeframe, fs=version.feature_set)
    if version.train_end is not None:
        feats = feats[feats.index > version.train_end]
    recent = feats.iloc[-window:]
    if len(recent) < 30:
        raise ApplicationError(
            "not_enough_data",
            f"Only {len(recent)} bars after {version.ref}'s training period; drift needs at least 30.",
            status=409,
        )
    per_feature = {}
    for name, ref in reference.items():
        if name in recent.columns:
            per_feature[name] = round(psi(ref["shares"], shares(recent[name].to_numpy(float), ref["edges"])), 4)
    prediction = _prediction_drift(version, recent)
    worst = max(per_feature.items(), key=lambda kv: kv[1], default=(None, 0.0))
    result = {
        "checked_at": timezone.now().isoformat(),
        "window": len(recent),
        "from": recent.index[0].isoformat(),
        "to": recent.index[-1].isoformat(),
        "max_psi": worst[1],
        "worst_feature": worst[0],
        "features": per_feature,
        "prediction": prediction,
        "drifted": worst[1] > PSI_ALERT or (prediction or {}).get("psi", 0) > PSI_ALERT,
    }
    if record:
        ModelVersion.objects.filter(pk=version.pk).update(drift=result)
        version.drift = result
        if result["drifted"]:
            ModelAlert.objects.create(
                model=version.model,
                version=version,
                kind=ModelAlert.Kind.DRIFT,
                severity="warning",
                message=f"{version.ref}: input drift, PSI {worst[1]:.2f} on {worst[0]} over the last "
                f"{len(recent)} bars.",
                details=result,
            )
    return result


def _prediction_drift(version: ModelVersion, recent) -> dict | None:
    """PSI of the predicted-class shares: out-of-sample predictions at training (the confusion
    matrix's column sums) against the version's predictions on the recent window."""
    from .serving import bundle_get

    confusion = (version.report or {}).get("confusion") or {}
    matrix = np.asarray(confusion.get("matrix") or [], dtype=float)
    if version.task == "regression" or matrix.ndim != 2 or not matrix.sum():
        return None
    rows = recent[version.feature_names].dropna()
    if rows.empty or version.artifact is None:
        return None
    expected = matrix.sum(axis=0) / matrix.sum()
    predicted = bundle_get(version).predict(rows.to_numpy(dtype=float))
    actual = np.bincount(predicted.astype(int), minlength=len(expected))[: len(expected)] / len(predicted)
    return {
        "psi": round(psi(expected, actual), 4),
        "training": [round(float(x), 4) for x in expected],
        "recent": [round(float(x), 4) for x in actual],
        "classes": confusion.get("labels"),
    }
