"""The search: resuming a study after a killed worker, cancelling, progress, and the ensemble."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from api.errors import ApplicationError
from models_registry.ml.families import FAMILIES, TABULAR
from models_registry.ml.search import run_search


def _data(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = (0.4 * X[:, 0] + rng.standard_normal(n) > 0).astype(float)
    return X, y


def test_resume_marks_stale_running_trials_failed_and_counts_finished(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    X, y = _data()
    first = run_search(X, y, task="binary", families=["logistic"], n_trials=4, storage=storage, study_name="s")
    assert len(first.trials) == 4
    # a worker dies mid-trial: the trial stays RUNNING in storage
    study = optuna.load_study(study_name="s", storage=storage)
    study.ask()
    assert len(study.get_trials(states=(TrialState.RUNNING,))) == 1
    calls = []
    second = run_search(
        X,
        y,
        task="binary",
        families=["logistic"],
        n_trials=6,
        storage=storage,
        study_name="s",
        progress=lambda *a: calls.append(a),
    )
    states = [t["state"] for t in second.trials]
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 6  # 4 kept + 2 new, not 6 new
    assert [c[0] for c in calls] == [5, 6] and calls[-1][3].startswith("trial 6/6 best logloss")


def test_resume_with_other_settings_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    X, y = _data()
    run_search(X, y, task="binary", families=["logistic"], n_trials=1, storage=storage, study_name="s")
    with pytest.raises(ApplicationError) as exc:
        run_search(X, y, task="binary", families=["xgboost"], n_trials=1, storage=storage, study_name="s")
    assert exc.value.code == "study_mismatch"


def test_should_stop_cancels():
    X, y = _data()
    calls = []

    def stop():
        return len(calls) >= 2

    result = run_search(
        X, y, task="binary", families=["logistic"], n_trials=20, progress=lambda *a: calls.append(a), should_stop=stop
    )
    assert result.cancelled and len(calls) == 2


def test_ensemble_weights_and_oos_shape():
    X, y = _data(1500)
    result = run_search(X, y, task="binary", families=list(TABULAR), n_trials=8, seed=1)
    assert 1 <= len(result.top) <= 3 and len(result.weights) == len(result.top)
    assert all(w >= 0 for w in result.weights) and sum(result.weights) == pytest.approx(1)
    assert result.oos_pred.shape == (result.oos_index.size, 2)
    np.testing.assert_allclose(result.oos_pred.sum(axis=1), 1)
    assert result.best_params["family"] in FAMILIES and result.best_score == min(
        t["score"] for t in result.trials if t["state"] == "COMPLETE"
    )
    assert len(result.last_fold_members) == len(result.top)


def test_multiclass_and_regression_run():
    X, y = _data(1500)
    ternary = np.digitize(X[:, 0] + np.random.default_rng(1).standard_normal(1500), [-0.5, 0.5]).astype(float)
    r = run_search(X, ternary, task="multiclass", families=["xgboost", "logistic"], n_trials=3, n_classes=3)
    assert r.oos_pred.shape[1] == 3 and r.metric == "logloss"
    reg = run_search(X, 0.01 * X[:, 0] + 0.01 * y, task="regression", families=["logistic", "extra_trees"], n_trials=3)
    assert reg.oos_pred.ndim == 1 and reg.metric == "mse"


def test_unknown_family_is_refused():
    X, y = _data()
    with pytest.raises(ApplicationError) as exc:
        run_search(X, y, task="binary", families=["lightgbm"], n_trials=1)
    assert exc.value.code == "invalid_families"
