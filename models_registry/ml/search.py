"""Hyper-parameter search over model families, scored out of sample on purged walk-forward folds.

One Optuna study (TPE, seeded) picks a family, then that family's params; a trial's score is the mean
out-of-sample loss over the folds of :func:`.cv.purged_walk_forward` (log loss for classification,
MSE for regression; both minimised). The running mean is reported after each fold and the
``MedianPruner`` stops trials that are worse than the median of earlier trials at the same fold.

Resuming. ``storage`` may be an RDB URL / storage object; the study is created with
``load_if_exists=True``, so a re-run Celery task continues the same study. Trials left RUNNING by a
killed worker are marked FAIL first (one job owns a study: nothing else can be running them).
Finished trials (COMPLETE and PRUNED, as in a fresh run where pruned trials count toward
``n_trials`` too) count toward ``n_trials``; FAILed ones do not. A study whose stored configuration
(task, families, horizon, folds, rows) differs from the call is refused rather than mixed.

Cost control on two cores: estimators are bounded and single-threaded (:mod:`.families`), the folds
of a trial are fitted ``n_workers`` (default 2) at a time in threads (the fits release the GIL;
reporting, pruning, progress and cancellation stay in the calling thread, so a Django callback keeps
its connection and schema), pruning drops bad trials after two folds, and each fold's fit uses at
most ``max_train_rows`` of its training rows — the most recent ones (the final model is refitted on
all rows by :mod:`.train`). Memory: one copy of X plus the fold fits in flight and the OOS
predictions of at most three trials.

Ensemble, and what its metrics mean. After the search the top K <= 3 distinct completed trials are
the candidate members; their out-of-sample (OOS) predictions over the concatenated test blocks are
blended with non-negative weights summing to 1 (a 0.05-step grid on the simplex) chosen to minimise
the loss on the FIRST half of the OOS rows only. The honest report (:mod:`.report`) is computed on the
SECOND half, which neither the weights nor the fits saw. One selection effect remains and is stated
in the report: which trials became members was decided by the mean loss over all folds, second half
included (choosing the best of ``n_trials`` configurations is mildly optimistic; with the few,
bounded families here the effect is small next to the fold-to-fold noise).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from api.errors import ApplicationError

from .cv import purged_walk_forward
from .families import FAMILIES, unprefix
from .sequence import MAX_WINDOW, windowed

logger = logging.getLogger(__name__)

TOP_K = 3
EPS = 1e-15
DEFAULT_MAX_TRAIN_ROWS = 20_000


class _Cancelled(Exception):
    """Raised inside a trial when ``should_stop()`` says so; the trial is recorded as FAIL."""


@dataclass
class SearchResult:
    study_name: str
    best_params: dict  # includes "family"
    best_score: float | None
    trials: list[dict]  # number, family, score, state, duration_s
    top: list[dict]  # params (with "family") of the ensemble candidates, best first
    metric: str  # "logloss" | "mse"
    splits: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    oos_index: np.ndarray = field(repr=False)  # row positions of the concatenated test blocks
    oos_pred: np.ndarray = field(repr=False)  # blended OOS predictions: (n, K) probabilities or (n,) values
    member_oos: list[np.ndarray] = field(repr=False)
    weights: list[float] = field(default_factory=list)
    blend_split: int = 0  # OOS rows [:blend_split] fitted the weights; [blend_split:] are reported
    last_fold_members: list[Any] = field(default_factory=list, repr=False)  # fitted on the last fold's train
    ensemble: dict = field(default_factory=dict)
    cancelled: bool = False


def loss(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    """Log loss (classification; ``pred`` is (n, K) probabilities, ``y`` labels 0..K-1) or MSE."""
    if task == "regression":
        return float(np.mean((np.asarray(y, dtype=np.float64) - pred) ** 2))
    p = pred[np.arange(len(y)), np.asarray(y, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(p, EPS, 1.0))))


def fit_predict(
    params: dict,
    task: str,
    n_classes: int,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    seed: int = 0,
):
    """Fit a fresh estimator of ``params["family"]`` and predict ``X_test``; returns (estimator, pred)."""
    estimator = FAMILIES[params["family"]].build(params, task, n_classes, seed)
    if task == "regression":
        estimator.fit(X_train, y_train)
        return estimator, np.asarray(estimator.predict(X_test), dtype=np.float64)
    y_int = y_train.astype(np.int64)
    present = np.unique(y_int)
    if present.size != n_classes:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))
        raise ApplicationError(
            "not_enough_data",
            f"A training fold has no example of class(es) {missing}: the class is too rare for walk-forward "
            "validation. Use a longer history or a narrower dead band.",
            {"missing_classes": missing},
        )
    estimator.fit(X_train, y_int)
    return estimator, np.asarray(estimator.predict_proba(X_test), dtype=np.float64)


def _recent(idx: np.ndarray, cap: int | None) -> np.ndarray:
    return idx if cap is None or idx.size <= cap else idx[-cap:]


def _blend_weights(task: str, y: np.ndarray, preds: list[np.ndarray], step: float = 0.05) -> list[float]:
    """Non-negative weights summing to 1 minimising the loss; a grid is enough for K <= 3 and never fails."""
    k = len(preds)
    if k == 1:
        return [1.0]
    units = round(1 / step)
    best, best_w = np.inf, None
    for combo in itertools.product(range(units + 1), repeat=k - 1):
        if sum(combo) > units:
            continue
        w = np.array([*combo, units - sum(combo)], dtype=np.float64) / units
        score = loss(task, y, sum(wi * p for wi, p in zip(w, preds, strict=True)))
        if score < best - 1e-12:
            best, best_w = score, w
    return [float(v) for v in best_w]


def _config(task, families, horizon, n_splits, n_rows) -> dict:
    return {"task": task, "families": sorted(families), "horizon": horizon, "n_splits": n_splits, "rows": n_rows}


def run_search(
    X: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    families: list[str],
    n_trials: int = 30,
    timeout: float | None = None,
    horizon: int = 1,
    n_splits: int = 5,
    storage=None,
    study_name: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float | None, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    n_classes: int | None = None,
    max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS,
    n_workers: int | None = None,
) -> SearchResult:
    """Search, then blend the top trials (see the module docstring for the scheme)."""
    unknown = [f for f in families if f not in FAMILIES]
    if not families or unknown:
        raise ApplicationError(
            "invalid_families",
            f"Unknown or no model families {unknown}; choose from {', '.join(FAMILIES)}.",
            {"available": list(FAMILIES)},
        )
    if n_trials < 1:
        raise ApplicationError("invalid_search", "n_trials must be at least 1.")
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError("X must be 2-D with one row per label")
    if not np.isfinite(X).all() or not np.isfinite(y).all():
        raise ValueError("X and y must be finite: drop warm-up rows and unknown labels first")
    if task != "regression" and n_classes is None:
        n_classes = 2 if task == "binary" else int(y.max()) + 1
    n_classes = n_classes or 0
    metric = "mse" if task == "regression" else "logloss"
    # a windowed family sees MAX_WINDOW - 1 earlier rows too: every family's folds purge for that
    window = MAX_WINDOW if windowed(families) else 1
    splits = purged_walk_forward(X.shape[0], n_splits=n_splits, horizon=horizon, window=window)
    families = list(dict.fromkeys(families))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_obj = optuna.storages.get_storage(storage)
    study = optuna.create_study(
        storage=storage_obj,
        study_name=study_name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        load_if_exists=True,
    )
    config = _config(task, families, horizon, n_splits, int(X.shape[0]))
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", config)
    elif stored != config:
        raise ApplicationError(
            "study_mismatch",
            f"Study {study.study_name!r} exists with a different configuration; use a new study name.",
            {"stored": stored, "requested": config},
        )
    study_id = storage_obj.get_study_id_from_name(study.study_name)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage_obj.get_trial_id_from_study_id_trial_number(study_id, stale.number)
        storage_obj.set_trial_state_values(trial_id, TrialState.FAIL)
        logger.info("study %s: marked trial %s left running by a dead worker as FAIL", study.study_name, stale.number)

    fold_cache: dict[int, np.ndarray] = {}  # trial number -> OOS predictions, kept for the current top K only
    workers = n_workers or min(2, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    def fit_fold(params: dict, fold: int) -> np.ndarray:
        train_idx, test_idx = splits[fold]
        tr = _recent(train_idx, max_train_rows)
        return fit_predict(params, task, n_classes, X[tr], y[tr], X[test_idx], seed)[1]

    def objective(trial: optuna.Trial) -> float:
        family = trial.suggest_categorical("family", families)
        params = {"family": family, **FAMILIES[family].suggest(trial)}
        scores, preds = [], []
        for group in range(0, len(splits), workers):
            if should_stop is not None and should_stop():
                raise _Cancelled()
            folds = range(group, min(group + workers, len(splits)))
            if pool is None:
                group_preds = [fit_fold(params, k) for k in folds]
            else:  # the fits release the GIL: folds run side by side, reports stay in this thread
                group_preds = list(pool.map(lambda k: fit_fold(params, k), folds))
            for k, pred in zip(folds, group_preds, strict=True):
                scores.append(loss(task, y[splits[k][1]], pred))
                preds.append(pred)
                trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        value = float(np.mean(scores))
        # remember OOS predictions of trials that may end up in the ensemble (saves refitting them)
        fold_cache[trial.number] = np.concatenate(preds)
        if len(fold_cache) > TOP_K:
            done = {t.number: t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
            done[trial.number] = value
            for n in sorted(fold_cache, key=lambda n: done.get(n, np.inf))[TOP_K:]:
                del fold_cache[n]
        return value

    def finished_count() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def best_value() -> float | None:
        try:
            return float(study.best_value)
        except ValueError:
            return None

    # ask/tell rather than study.optimize: progress, cancel and errors stay in this (the task's) thread
    cancelled = should_stop is not None and should_stop()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not cancelled and finished_count() < n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                break
            trial = study.ask()
            try:
                study.tell(trial, objective(trial))
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
            except _Cancelled:
                study.tell(trial, state=TrialState.FAIL)
                cancelled = True
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise  # data problems (ApplicationError) recur on every trial; bugs should surface
            done, best = min(finished_count(), n_trials), best_value()
            if progress is not None:
                shown = "-" if best is None else f"{best:.4f}"
                progress(done, n_trials, best, f"trial {done}/{n_trials} best {metric} {shown}")
            if should_stop is not None and should_stop():
                cancelled = True
    finally:
        if pool is not None:
            pool.shutdown(wait=True)

    trials = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        score = t.value
        if t.state != TrialState.COMPLETE:  # a pruned trial's last running score, if any
            steps = t.intermediate_values
            score = steps[max(steps)] if steps else None
        trials.append(
            {
                "number": t.number,
                "family": t.params.get("family"),
                "score": None if score is None or not np.isfinite(score) else float(score),
                "state": t.state.name,
                "duration_s": None if duration is None else round(duration, 3),
            }
        )
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    if not complete:
        if cancelled:
            raise ApplicationError("cancelled", "The search was cancelled before any trial completed.")
        raise ApplicationError(
            "search_failed", "No trial completed (all failed or were pruned); see the trials for errors."
        )
    top_trials, seen = [], set()
    for t in complete:
        key = tuple(sorted((k, repr(v)) for k, v in t.params.items()))
        if key not in seen:
            seen.add(key)
            top_trials.append(t)
        if len(top_trials) == TOP_K:
            break
    top = [unprefix(t.params["family"], t.params) for t in top_trials]

    # members' OOS predictions (from the cache when this process ran the trial) and last-fold fits
    member_oos, last_fold_members = [], []
    last_train, last_test = splits[-1]
    for t, params in zip(top_trials, top, strict=True):
        cached = fold_cache.get(t.number)
        if cached is None:
            preds = []
            for train_idx, test_idx in splits:
                tr = _recent(train_idx, max_train_rows)
                est, pred = fit_predict(params, task, n_classes, X[tr], y[tr], X[test_idx], seed)
                preds.append(pred)
            cached = np.concatenate(preds)
            last_fold_members.append(est)
        else:
            tr = _recent(last_train, max_train_rows)
            est, _ = fit_predict(params, task, n_classes, X[tr], y[tr], X[last_test[:1]], seed)
            last_fold_members.append(est)
        member_oos.append(cached)

    oos_index = np.concatenate([test for _, test in splits])
    y_oos = y[oos_index]
    half = oos_index.size // 2
    weights = _blend_weights(task, y_oos[:half], [p[:half] for p in member_oos])
    blend = sum(w * p for w, p in zip(weights, member_oos, strict=True))
    ensemble = {
        "members": [{"params": p, "cv_score": float(t.value)} for p, t in zip(top, top_trials, strict=True)],
        "weights": weights,
        "scheme": (
            "blend weights fitted on the first half of the out-of-sample rows; metrics reported on the "
            "second half only. Member selection used all folds (best of the trials)."
        ),
        "oos_rows": int(oos_index.size),
        "weights_rows": int(half),
        "report_rows": int(oos_index.size - half),
        "member_loss_report_half": [loss(task, y_oos[half:], p[half:]) for p in member_oos],
        "ensemble_loss_weights_half": loss(task, y_oos[:half], blend[:half]),
        "ensemble_loss_report_half": loss(task, y_oos[half:], blend[half:]),
        "metric": metric,
    }
    best = complete[0]
    return SearchResult(
        study_name=study.study_name,
        best_params=unprefix(best.params["family"], best.params),
        best_score=float(best.value),
        trials=trials,
        top=top,
        metric=metric,
        splits=splits,
        oos_index=oos_index,
        oos_pred=blend,
        member_oos=member_oos,
        weights=weights,
        blend_split=half,
        last_fold_members=last_fold_members,
        ensemble=ensemble,
        cancelled=cancelled,
    )
