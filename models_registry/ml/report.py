"""The honest report: out-of-sample metrics next to naive baselines, a significance test and a
trading readout net of fees, ending in one flag, ``no_edge``.

Why baselines: on market data a 51 % accuracy can be a skewed class balance (majority) or plain
autocorrelation of the labels (persistence) rather than skill. The model only "has an edge" if it
beats the BEST baseline significantly (one-sided exact test, p < 0.05) AND its signal makes money
after fees. Everything else says ``no_edge: True``, which is the expected answer for most series.

Baselines never look ahead: the majority class / prior of a row comes from the training rows that
preceded its fold; persistence predicts the label at ``t - h``, the last label known at ``t``.

All values are plain Python numbers, lists and dicts; anything undefined (a single-class AUC, a
zero-variance Sharpe) is None, never NaN, so the dict goes straight into a JSONField.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

EPS = 1e-15
ALPHA = 0.05


def clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


# --- baselines from the folds --------------------------------------------------------------------


def fold_baselines(
    y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], *, task: str, horizon: int, n_classes: int = 0
) -> dict[str, np.ndarray]:
    """Per OOS row (test blocks concatenated): ``prior`` (n, K) class frequencies of the fold's own
    training rows (classification) and ``persistence``, the label at ``t - h`` (known at ``t``)."""
    y = np.asarray(y, dtype=np.float64)
    priors, persistence = [], []
    for train_idx, test_idx in splits:
        if task != "regression":
            counts = np.bincount(y[train_idx].astype(np.int64), minlength=n_classes)[:n_classes].astype(np.float64)
            prior = counts / counts.sum() if counts.sum() else np.full(n_classes, 1.0 / n_classes)
            priors.append(np.tile(prior, (test_idx.size, 1)))
        prev = test_idx - horizon
        persistence.append(np.where(prev >= 0, y[np.maximum(prev, 0)], np.nan))
    out = {"persistence": np.concatenate(persistence)}
    if task != "regression":
        out["prior"] = np.concatenate(priors)
    return out


# --- metric blocks -------------------------------------------------------------------------------


def _classification_metrics(y: np.ndarray, proba: np.ndarray, *, hard: bool = False) -> dict:
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    out: dict[str, Any] = {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": None,
        "log_loss": None,
        "roc_auc": None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    if not hard:  # a hard 0/1 prediction has infinite log loss: not a meaningful number
        out["log_loss"] = float(-np.mean(np.log(np.clip(proba[np.arange(y.size), y], EPS, 1.0))))
    try:
        if n_classes == 2:
            out["roc_auc"] = float(roc_auc_score(y, proba[:, 1])) if np.unique(y).size == 2 else None
        elif np.unique(y).size == n_classes:
            out["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=range(n_classes)))
    except ValueError:
        out["roc_auc"] = None
    if n_classes == 2:
        out["brier"] = float(np.mean((proba[:, 1] - y) ** 2))
    return out


def _calibration(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict:
    """Binary: P(up) vs observed up frequency. Multiclass: top-label confidence vs accuracy."""
    if proba.shape[1] == 2:
        conf, hit, kind = proba[:, 1], (y == 1).astype(np.float64), "p_up"
    else:
        conf, hit, kind = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(np.float64), "top_label"
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        count = int(m.sum())
        rows.append(
            {
                "bin": [b / bins, (b + 1) / bins],
                "mean_predicted": float(conf[m].mean()) if count else None,
                "observed_frequency": float(hit[m].mean()) if count else None,
                "count": count,
            }
        )
    return {"kind": kind, "bins": rows}


def _exact_test(model_correct: np.ndarray, base_correct: np.ndarray | None, chance: float) -> dict:
    """One-sided: McNemar's exact test (binomial on discordant rows) against a baseline's predictions,
    or a binomial test against the chance rate for the random baseline."""
    n = int(model_correct.size)
    if base_correct is None:
        k = int(model_correct.sum())
        p = binomtest(k, n, chance, alternative="greater").pvalue if n else 1.0
        return {"test": "binomial_exact", "n": n, "correct": k, "chance": chance, "p_value": float(p)}
    b = int(np.sum(model_correct & ~base_correct))
    c = int(np.sum(~model_correct & base_correct))
    p = binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    return {"test": "mcnemar_exact", "n": n, "model_only_correct": b, "baseline_only_correct": c, "p_value": float(p)}


def trading_readout(position: np.ndarray, forward_returns: np.ndarray, *, horizon: int, fee_bps: float) -> dict:
    """Long / short / flat on each prediction, held ``h`` bars; every h-th row only, so holding periods
    do not overlap. Fees: ``fee_bps`` per unit of position change (flat -> long 1 unit; long -> short 2
    units), including the entry from flat; the final exit is not charged."""
    sel = np.arange(0, position.size, horizon)
    pos, ret = position[sel].astype(np.float64), forward_returns[sel]
    changes = np.abs(np.diff(np.concatenate([[0.0], pos])))
    fees = changes * fee_bps / 1e4
    gross = pos * ret
    net = gross - fees
    active = pos != 0
    std = float(np.std(net, ddof=1)) if net.size > 1 else 0.0
    sharpe = float(np.mean(net) / std) if std > 0 else None
    return {
        "periods": int(net.size),
        "bars_per_period": int(horizon),
        "trades": int(np.count_nonzero(changes)),
        "exposure": float(np.mean(active)) if net.size else None,
        "hit_rate": float(np.mean(gross[active] > 0)) if active.any() else None,
        "gross_return": float(np.prod(1 + gross) - 1),
        "fees_paid": float(fees.sum()),
        "total_return": float(np.prod(1 + net) - 1),
        "sharpe_per_period": sharpe,
        # per bar under iid periods; annualise with sqrt(bars per year)
        "sharpe_per_bar": None if sharpe is None else sharpe / math.sqrt(horizon),
        "buy_and_hold_return": float(np.prod(1 + ret) - 1),
        "fee_bps": float(fee_bps),
    }


# --- the report ----------------------------------------------------------------------------------


def honest_report(
    y_true: np.ndarray,
    oos_pred: np.ndarray,
    *,
    task: str,
    forward_returns: np.ndarray,
    fee_bps: float = 10.0,
    classes: list | None = None,
    horizon: int = 1,
    baseline_prior: np.ndarray | None = None,
    baseline_persistence: np.ndarray | None = None,
) -> dict:
    """Metrics over the given OOS rows (time-ordered). ``oos_pred`` is (n, K) probabilities for
    classification or (n,) predicted returns. ``baseline_prior`` (n, K): class frequencies of each row's
    preceding training data; ``baseline_persistence`` (n,): the label at t - h (see
    :func:`fold_baselines`). Without them the baselines are built from ``y_true`` itself (expanding, no
    lookahead; the first h rows fall back to the uniform prior)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    forward_returns = np.asarray(forward_returns, dtype=np.float64)
    n = y_true.size
    if baseline_persistence is None:
        baseline_persistence = np.full(n, np.nan)
        baseline_persistence[horizon:] = y_true[:-horizon] if horizon < n else []
    if task == "regression":
        return clean(
            _regression_report(
                y_true, np.asarray(oos_pred, np.float64), forward_returns, horizon, fee_bps, baseline_persistence
            )
        )
    proba = np.asarray(oos_pred, dtype=np.float64)
    n_classes = proba.shape[1]
    classes = list(classes) if classes is not None else list(range(n_classes))
    y = y_true.astype(np.int64)
    if baseline_prior is None:
        counts = np.zeros((n, n_classes))
        for t in range(horizon, n):  # labels up to t - h are known at t
            counts[t] = counts[t - 1]
            counts[t, y[t - horizon]] += 1
        sums = counts.sum(axis=1, keepdims=True)
        baseline_prior = np.where(sums > 0, counts / np.maximum(sums, 1), 1.0 / n_classes)

    model = _classification_metrics(y, proba)
    prior = np.asarray(baseline_prior, dtype=np.float64)
    majority = _classification_metrics(y, prior)  # probabilities = prior; hard prediction = majority class
    persist_label = np.where(np.isnan(baseline_persistence), prior.argmax(axis=1), baseline_persistence).astype(int)
    persistence = _classification_metrics(y, np.eye(n_classes)[persist_label], hard=True)
    random = {
        "accuracy": 1.0 / n_classes,
        "balanced_accuracy": 1.0 / n_classes,
        "log_loss": math.log(n_classes),
        "roc_auc": 0.5,
        **({"brier": 0.25} if n_classes == 2 else {}),
        "note": "expected metrics of uniform random guessing",
    }
    baselines = {"majority": majority, "persistence": persistence, "random": random}
    correct = proba.argmax(axis=1) == y
    candidates = {
        "majority": prior.argmax(axis=1) == y,
        "persistence": persist_label == y,
    }
    best_name = max(("majority", "persistence", "random"), key=lambda k: baselines[k]["accuracy"])
    significance = {
        "against": best_name,
        "model_accuracy": model["accuracy"],
        "baseline_accuracy": baselines[best_name]["accuracy"],
        **_exact_test(correct, candidates.get(best_name), 1.0 / n_classes),
    }
    pred = proba.argmax(axis=1)
    if n_classes == 2:
        position = np.where(pred == 1, 1.0, -1.0)
    else:  # down / flat / up
        position = np.select([pred == 0, pred == n_classes - 1], [-1.0, 1.0], 0.0)
    trading = trading_readout(position, forward_returns, horizon=horizon, fee_bps=fee_bps)
    edge = (
        significance["p_value"] < ALPHA
        and model["accuracy"] > significance["baseline_accuracy"]
        and trading["total_return"] > 0
    )
    return clean(
        {
            "task": task,
            "rows": n,
            "classes": classes,
            "oos": model,
            "baselines": baselines,
            "significance": significance,
            "trading": trading,
            "calibration": _calibration(y, proba),
            "confusion": {
                "labels": classes,
                "matrix": confusion_matrix(y, pred, labels=list(range(n_classes))).tolist(),
                "note": "rows: true class, columns: predicted class",
            },
            "no_edge": not edge,
        }
    )


def _regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    return {
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)) if np.var(y) > 0 else None,
        "directional_accuracy": float(np.mean((pred > 0) == (y > 0))),
    }


def _regression_report(y, pred, forward_returns, horizon, fee_bps, persistence) -> dict:
    persist = np.where(np.isnan(persistence), 0.0, persistence)
    model = _regression_metrics(y, pred)
    baselines = {
        "zero_return": _regression_metrics(y, np.zeros_like(y)),
        "persistence": _regression_metrics(y, persist),
    }
    best_name = max(baselines, key=lambda k: baselines[k]["directional_accuracy"])
    base_pred = np.zeros_like(y) if best_name == "zero_return" else persist
    significance = {
        "against": best_name,
        "metric": "directional_accuracy",
        "model_accuracy": model["directional_accuracy"],
        "baseline_accuracy": baselines[best_name]["directional_accuracy"],
        **_exact_test((pred > 0) == (y > 0), (base_pred > 0) == (y > 0), 0.5),
    }
    trading = trading_readout(np.sign(pred), forward_returns, horizon=horizon, fee_bps=fee_bps)
    edge = (
        significance["p_value"] < ALPHA
        and model["directional_accuracy"] > significance["baseline_accuracy"]
        and trading["total_return"] > 0
    )
    return {
        "task": "regression",
        "rows": int(y.size),
        "oos": model,
        "baselines": baselines,
        "significance": significance,
        "trading": trading,
        "calibration": None,
        "confusion": None,
        "no_edge": not edge,
    }


# --- importance ----------------------------------------------------------------------------------


def _gain(estimator, n_features: int) -> np.ndarray | None:
    import xgboost as xgb

    booster = estimator if isinstance(estimator, xgb.Booster) else getattr(estimator, "get_booster", lambda: None)()
    if booster is not None:
        scores = booster.get_score(importance_type="total_gain")
        out = np.zeros(n_features)
        for key, value in scores.items():
            idx = int(key[1:]) if key.startswith("f") and key[1:].isdigit() else None
            if idx is not None and idx < n_features:
                out[idx] = value
        return out
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "feature_importances_"):
        return np.asarray(final.feature_importances_, dtype=np.float64)
    if hasattr(final, "coef_"):  # on standardised inputs (the scaler is in the pipeline): comparable
        coef = np.abs(np.atleast_2d(final.coef_))
        return coef.mean(axis=0)
    return None


class _Fitted:
    """An already-fitted model seen through scikit-learn's estimator check (it wants a ``fit``);
    ``permutation_importance`` only calls the scorer, so nothing is ever refitted."""

    def __init__(self, model):
        self.model = model

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return self.model.predict(X)

    def predict_proba(self, X):
        return self.model.predict_proba(X)


def importance(
    model, X: np.ndarray, y: np.ndarray, feature_names: list[str], task: str, *, n_repeats: int = 3, seed: int = 0
) -> dict:
    """``gain``: each member's built-in importance (XGBoost total gain, impurity importance of forests,
    |coef| of linear models on standardised inputs), normalised to sum 1 and blended with the ensemble
    weights. ``permutation``: drop in score when a column is shuffled, on ``X, y`` — pass the last OOS
    fold and a model NOT trained on it, so it measures out-of-sample reliance. ``model`` is a
    :class:`.artifacts.ModelBundle` or a single fitted estimator."""
    from .artifacts import ModelBundle

    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    if isinstance(model, ModelBundle):
        members, weights = model.members, model.weights
    else:
        members, weights = [model], [1.0]
    gain = np.zeros(n_features)
    for member, w in zip(members, weights, strict=True):
        g = _gain(member, n_features)
        if g is not None and g.sum() > 0:
            gain += w * g / g.sum()

    if task == "regression":

        def scorer(est, X_, y_):
            return -float(np.mean((est.predict(X_) - y_) ** 2))
    else:

        def scorer(est, X_, y_):
            p = est.predict_proba(X_)
            return float(np.mean(np.log(np.clip(p[np.arange(y_.size), y_.astype(np.int64)], EPS, 1.0))))

    perm = permutation_importance(
        _Fitted(model), X, np.asarray(y), scoring=scorer, n_repeats=n_repeats, random_state=seed, n_jobs=1
    )
    order = np.argsort(-perm.importances_mean)
    return clean(
        {
            "features": list(feature_names),
            "gain": gain.tolist(),
            "permutation_mean": perm.importances_mean.tolist(),
            "permutation_std": perm.importances_std.tolist(),
            "permutation_metric": "mse" if task == "regression" else "log_loss",
            "ranking": [feature_names[i] for i in order],
        }
    )
