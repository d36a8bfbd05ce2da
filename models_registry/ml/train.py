"""One AutoML run end to end, on arrays: labels -> search -> final refit -> honest report.

The Django job calls :func:`train` with the feature frame (from the feature engine), the close
series and a :class:`.targets.TargetSpec`, stores ``dump(result.bundle)`` and ``result.report``. Rows
with a NaN feature (indicator warm-up) or an unknown label (the last ``h`` bars) are dropped first;
the search and the report see only usable rows, in time order.

The report is computed on the out-of-sample rows the ensemble weights did not see (see
:mod:`.search`); the shipped model is refitted on ALL usable rows, so it is a slightly better-informed
model than the one the report describes — the usual and conservative direction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from api.errors import ApplicationError
from features.timeframes import TIMEFRAMES

from .artifacts import ModelBundle
from .cv import min_rows_needed
from .families import TABULAR
from .report import clean, fold_baselines, honest_report, importance
from .search import fit_predict, run_search
from .sequence import window_layout, windowed
from .targets import TargetSpec, forward_returns, make_labels


@dataclass
class TrainingResult:
    bundle: ModelBundle
    report: dict
    params: dict  # the best trial's params (with "family")
    best_score: float | None
    trials: list[dict]
    feature_names: list[str]
    rows_used: int
    train_start: pd.Timestamp | None
    train_end: pd.Timestamp | None
    fingerprint: str
    study_name: str = ""
    members: list[dict] = field(default_factory=list)  # params + weight of each shipped member


def fingerprint(X: np.ndarray, y: np.ndarray, index: pd.Index, feature_names: list[str], target: TargetSpec) -> str:
    """sha256 over the exact training rows: values, labels, timestamps, column names and target."""
    h = hashlib.sha256()
    h.update(json.dumps({"features": list(feature_names), "target": target.to_json()}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    if isinstance(index, pd.DatetimeIndex):
        h.update(np.ascontiguousarray(index.as_unit("ns").asi8).tobytes())
    else:
        h.update("\x1f".join(map(str, index)).encode())
    return h.hexdigest()


def train(
    X: pd.DataFrame,
    close: np.ndarray,
    target: TargetSpec,
    *,
    families: list[str],
    n_trials: int,
    timeout: float | None = None,
    atr: np.ndarray | None = None,
    storage=None,
    study_name: str | None = None,
    seed: int = 0,
    fee_bps: float = 10.0,
    progress: Callable[[int, int, float | None, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    n_splits: int = 5,
) -> TrainingResult:
    target.validate()
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        raise ApplicationError("invalid_features", "Features must be a DataFrame with at least one column.")
    close = np.asarray(close, dtype=np.float64)
    if close.shape != (len(X),):
        raise ApplicationError("invalid_features", "close must have one value per feature row.")
    if not (np.isfinite(fee_bps) and fee_bps >= 0):
        raise ApplicationError("invalid_fee", "fee_bps must be a number >= 0.")
    if windowed(families):  # block order: all features now, then one bar ago, ... (see .sequence)
        X = X[window_layout([str(c) for c in X.columns])]
    feature_names = [str(c) for c in X.columns]
    labels = make_labels(close, target, atr)
    fwd = forward_returns(close, target.horizon)
    values = X.to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.isfinite(values).all(axis=1) & np.isfinite(labels) & np.isfinite(fwd)
    Xu, yu, fwdu, index = values[usable], labels[usable], fwd[usable], X.index[usable]
    needed = min_rows_needed(n_splits=n_splits, horizon=target.horizon)
    if Xu.shape[0] < needed:
        raise ApplicationError(
            "not_enough_data",
            f"{Xu.shape[0]} usable rows (after dropping feature warm-up and the last {target.horizon} unlabelled "
            f"bars); at least {needed} are needed for {n_splits} walk-forward folds at horizon {target.horizon}.",
            {"rows": int(Xu.shape[0]), "rows_needed": int(needed)},
        )
    task, classes = target.task, target.classes
    n_classes = len(classes)

    result = run_search(
        Xu,
        yu,
        task=task,
        families=families,
        n_trials=n_trials,
        timeout=timeout,
        horizon=target.horizon,
        n_splits=n_splits,
        storage=storage,
        study_name=study_name,
        seed=seed,
        progress=progress,
        should_stop=should_stop,
        n_classes=n_classes or None,
    )
    if result.cancelled:
        raise ApplicationError("cancelled", "Training was cancelled.", status=409)

    kept = [(p, w, fm) for p, w, fm in zip(result.top, result.weights, result.last_fold_members, strict=True) if w > 0]
    total = sum(w for _, w, _ in kept)
    weights = [w / total for _, w, _ in kept]
    done = sum(1 for t in result.trials if t["state"] in ("COMPLETE", "PRUNED"))
    if progress is not None:
        progress(done, n_trials, result.best_score, f"refitting {len(kept)} member(s) on {Xu.shape[0]:,} rows")
    members = [fit_predict(p, task, n_classes, Xu, yu, Xu[:1], seed)[0] for p, _, _ in kept]
    params = [p for p, _, _ in kept]
    bundle = ModelBundle(members, weights, task, classes, feature_names, params=params)

    if progress is not None:
        progress(done, n_trials, result.best_score, "computing the out-of-sample report")
    half = result.blend_split
    rows = result.oos_index[half:]
    base = fold_baselines(yu, result.splits, task=task, horizon=target.horizon, n_classes=n_classes)
    report = honest_report(
        yu[rows],
        result.oos_pred[half:],
        task=task,
        forward_returns=fwdu[rows],
        fee_bps=fee_bps,
        classes=classes or None,
        horizon=target.horizon,
        baseline_prior=base["prior"][half:] if "prior" in base else None,
        baseline_persistence=base["persistence"][half:],
    )
    last_test = result.splits[-1][1]
    fold_bundle = ModelBundle([fm for _, _, fm in kept], weights, task, classes, feature_names)
    report["importance"] = importance(fold_bundle, Xu[last_test], yu[last_test], feature_names, task, seed=seed)
    report["ensemble"] = clean(
        {
            **result.ensemble,
            "shipped_members": [{"params": p, "weight": w} for p, w in zip(params, weights, strict=True)],
        }
    )
    report["period"] = clean(
        {
            "report_start": str(index[rows[0]]),
            "report_end": str(index[rows[-1]]),
            "rows": int(rows.size),
            "note": "out-of-sample rows the blend weights did not see (second half of the walk-forward test blocks)",
        }
    )
    report["search"] = clean(
        {
            "metric": result.metric,
            "best_score": result.best_score,
            "trials": len(result.trials),
            "study": result.study_name,
        }
    )
    report["target"] = target.to_json()
    return TrainingResult(
        bundle=bundle,
        report=report,
        params=result.best_params,
        best_score=result.best_score,
        trials=result.trials,
        feature_names=feature_names,
        rows_used=int(Xu.shape[0]),
        train_start=index[0] if len(index) else None,
        train_end=index[-1] if len(index) else None,
        fingerprint=fingerprint(Xu, yu, index, feature_names, target),
        study_name=result.study_name,
        members=[{"params": p, "weight": w} for p, w in zip(params, weights, strict=True)],
    )


# --- recommendations -------------------------------------------------------------------------------

_HORIZONS = {  # bars: roughly 1 bar, a session fraction / day, a few days — per bar size
    "1m": [5, 15, 60],
    "5m": [3, 12, 48],
    "15m": [1, 4, 16],
    "30m": [1, 2, 8],
    "1h": [1, 4, 24],
    "4h": [1, 3, 6],
    "1d": [1, 3, 5],
}


def recommend(n_rows: int, n_features: int, timeframe: str, past_runs: list[dict]) -> dict:
    """Families, trial budget and horizons that suit the data size, plus what earlier runs found.

    Small data cannot support flexible models: with under 2k rows, OOS noise (about ±2 accuracy points
    per 1k rows) swamps differences between configurations, so a few trials of a linear model and
    shallow boosting is all that is worth running."""
    notes: list[str] = []
    if n_rows < 2_000:
        families, trials = ["logistic", "xgboost"], 15
        notes.append("Under 2,000 rows: a linear model and shallow gradient boosting, few trials.")
    elif n_rows < 20_000:
        families, trials = list(TABULAR), 30
    else:
        families, trials = list(TABULAR), 50
    if n_rows >= 2_000:
        notes.append(
            "A sequence model (mlp_window: a neural network over the last few bars) may be added; "
            "it trains on the feature set with lags added (<name>-seq) and costs more per trial."
        )
    horizons = [h for h in _HORIZONS.get(timeframe, [1, 3, 5]) if min_rows_needed(horizon=h) <= n_rows]
    if timeframe not in TIMEFRAMES:
        notes.append(f"Unknown timeframe {timeframe!r}; horizons assume daily bars.")
    if not horizons:
        notes.append(f"Not enough rows to train: at least {min_rows_needed()} usable rows are needed.")
    if n_features * 50 > n_rows:
        notes.append(
            f"{n_features} features for {n_rows:,} rows: fewer than 50 rows per feature invites overfitting; "
            "consider a smaller feature set."
        )
    no_edge = []
    for run in past_runs or []:
        if not isinstance(run, dict):
            continue
        flag = run.get("no_edge", (run.get("report") or {}).get("no_edge"))
        if flag:
            no_edge.append({k: run.get(k) for k in ("id", "target", "families", "created_at") if k in run})
    if no_edge:
        notes.append(
            f"{len(no_edge)} of {len(past_runs)} earlier run(s) found no edge over the baselines; another search "
            "on the same data and target is unlikely to change that — try another horizon or other features."
        )
    return {
        "families": families,
        "n_trials": trials,
        "horizons": horizons,
        "target_kinds": ["direction", "ternary", "return"],
        "rows": int(n_rows),
        "features": int(n_features),
        "timeframe": timeframe,
        "past_runs_without_edge": no_edge,
        "notes": notes,
    }
