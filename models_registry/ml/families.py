"""Model families the search may pick, each with a bounded hyper-parameter space.

Bounds keep one trial cheap on two cores (the search runs 50 trials x 5 folds on 50k rows in a few
minutes) and keep the final model fast to evaluate for a single row (:mod:`.artifacts`): few, shallow
trees. Every estimator is single-threaded (``n_jobs=1``): the search decides the parallelism (folds
side by side, :mod:`.search`) and live prediction must not spin up thread pools.

Scaling is part of the estimator (a ``Pipeline``), so it is fitted inside each fold on that fold's
training rows only — a scaler fitted on all rows would leak the test period's mean and variance into
training.

Parameter names in ``suggest`` are prefixed by the family (``xgboost_max_depth``) because Optuna
shares one namespace across the conditional branches of a study; ``build`` takes them unprefixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier, XGBRegressor

from . import sequence

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Family:
    name: str
    _suggest: Callable[[Any], dict]
    _build: Callable[[dict, str, int, int], Any]

    def suggest(self, trial) -> dict:
        """Unprefixed params for this family, sampled through ``trial`` (names prefixed in the study)."""
        return self._suggest(trial)

    def build(self, params: dict, task: str, n_classes: int, seed: int = 0) -> Any:
        """An unfitted estimator. ``params`` may hold ``family`` (ignored) and unprefixed keys."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        clean = {k: v for k, v in params.items() if k != "family"}
        return self._build(clean, task, n_classes, seed)


def _prefixed(family: str, trial, kind: str, name: str, *args, **kwargs):
    return getattr(trial, f"suggest_{kind}")(f"{family}_{name}", *args, **kwargs)


# --- xgboost ---------------------------------------------------------------------------------------


def _xgb_suggest(trial) -> dict:
    p = "xgboost"
    return {
        "n_estimators": _prefixed(p, trial, "int", "n_estimators", 50, 400, step=50),
        "max_depth": _prefixed(p, trial, "int", "max_depth", 2, 6),
        "learning_rate": _prefixed(p, trial, "float", "learning_rate", 0.01, 0.3, log=True),
        "subsample": _prefixed(p, trial, "float", "subsample", 0.5, 1.0),
        "colsample_bytree": _prefixed(p, trial, "float", "colsample_bytree", 0.5, 1.0),
        "min_child_weight": _prefixed(p, trial, "float", "min_child_weight", 1.0, 50.0, log=True),
        "reg_lambda": _prefixed(p, trial, "float", "reg_lambda", 1e-3, 10.0, log=True),
    }


def _xgb_build(params: dict, task: str, n_classes: int, seed: int):
    common = {
        "n_estimators": min(int(params.get("n_estimators", 200)), 400),
        "max_depth": min(int(params.get("max_depth", 3)), 6),
        "learning_rate": float(params.get("learning_rate", 0.05)),
        "subsample": float(params.get("subsample", 0.8)),
        "colsample_bytree": float(params.get("colsample_bytree", 0.8)),
        "min_child_weight": float(params.get("min_child_weight", 5.0)),
        "reg_lambda": float(params.get("reg_lambda", 1.0)),
        "tree_method": "hist",
        "max_bin": 64,  # coarser histograms: faster fits, and finer splits on noisy returns overfit anyway
        "n_jobs": 1,
        "random_state": seed,
        "verbosity": 0,
    }
    if task == "regression":
        return XGBRegressor(objective="reg:squarederror", **common)
    if task == "binary":
        return XGBClassifier(objective="binary:logistic", eval_metric="logloss", **common)
    return XGBClassifier(objective="multi:softprob", num_class=n_classes, eval_metric="mlogloss", **common)


# --- linear ----------------------------------------------------------------------------------------


def _linear_suggest(trial) -> dict:
    return {"C": _prefixed("logistic", trial, "float", "C", 1e-3, 10.0, log=True)}


def _linear_build(params: dict, task: str, n_classes: int, seed: int):
    c = float(params.get("C", 1.0))
    if task == "regression":
        # the same knob read as inverse regularisation strength, so one search space serves both
        return Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=1.0 / c))])
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=c, max_iter=500))])


# --- random forest / extra trees -------------------------------------------------------------------


def _forest_suggest(name: str) -> Callable[[Any], dict]:
    def suggest(trial) -> dict:
        return {
            "n_estimators": _prefixed(name, trial, "int", "n_estimators", 20, 60, step=10),
            "max_depth": _prefixed(name, trial, "int", "max_depth", 3, 8),
            "min_samples_leaf": _prefixed(name, trial, "int", "min_samples_leaf", 20, 200, log=True),
            "max_features": _prefixed(name, trial, "float", "max_features", 0.2, 0.6),
        }

    return suggest


def _forest_build(classifier, regressor, bootstrap: bool) -> Callable[[dict, str, int, int], Any]:
    def build(params: dict, task: str, n_classes: int, seed: int):
        kwargs = {
            "n_estimators": min(int(params.get("n_estimators", 40)), 60),
            "max_depth": min(int(params.get("max_depth", 6)), 8),
            "min_samples_leaf": max(int(params.get("min_samples_leaf", 50)), 20),
            "max_features": min(float(params.get("max_features", 0.4)), 0.6),
            "n_jobs": 1,
            "random_state": seed,
        }
        if bootstrap:
            # small bootstrap samples: sklearn's exact splitter sorts at every node, so a random forest is
            # the slowest family by far; a 30 % sample per tree makes it affordable and decorrelates trees
            kwargs["max_samples"] = 0.3
        cls = regressor if task == "regression" else classifier
        return cls(bootstrap=bootstrap, **kwargs)

    return build


FAMILIES: dict[str, Family] = {
    "xgboost": Family("xgboost", _xgb_suggest, _xgb_build),
    "logistic": Family("logistic", _linear_suggest, _linear_build),
    "random_forest": Family(
        "random_forest",
        _forest_suggest("random_forest"),
        _forest_build(RandomForestClassifier, RandomForestRegressor, True),
    ),
    "extra_trees": Family(
        "extra_trees",
        _forest_suggest("extra_trees"),
        _forest_build(ExtraTreesClassifier, ExtraTreesRegressor, False),
    ),
    # a neural network over a window of past rows (the sequence model; see .sequence)
    sequence.FAMILY: Family(sequence.FAMILY, sequence.suggest, sequence.build),
}


# the families that take any feature matrix; the windowed ones need lag columns (see .sequence)
TABULAR: tuple[str, ...] = tuple(f for f in FAMILIES if f not in sequence.WINDOWED_FAMILIES)


def unprefix(family: str, params: dict) -> dict:
    """Optuna's flat params (``family`` plus ``<family>_<name>``) -> ``{"family": ..., name: value}``."""
    prefix = f"{family}_"
    out: dict[str, Any] = {"family": family}
    for key, value in params.items():
        if key.startswith(prefix):
            out[key[len(prefix) :]] = value.item() if isinstance(value, np.generic) else value
    return out
