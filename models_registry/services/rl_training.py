"""RL models through the ordinary training pipeline: a training job whose target is
``{"kind": "rl", "algo": "q_learning" | "dqn" | "actor_critic", "positions": "long_short" |
"long_flat", "n_lags": 2}`` trains a policy (:mod:`models_registry.rl`) instead of an AutoML
ensemble. ``n_trials`` is the number of training episodes per fit. Same job life cycle (lock,
progress on the WebSocket group, cancel, one version per job), same registry (a READY version with
its sealed artifact, ``task = "rl"``), same deploy gate: the version's ``no_edge`` comes from the
walk-forward out-of-sample comparison with buy & hold and flat.
"""

from __future__ import annotations

import hashlib

import numpy as np
from django.db import transaction

from api.errors import ApplicationError

RL_KIND = "rl"
RL_TASK = "rl"
TARGET_FIELDS = {"kind", "algo", "positions", "n_lags"}
MAX_EPISODES = 200


def is_rl(target) -> bool:
    return isinstance(target, dict) and target.get("kind") == RL_KIND


def rl_target_validate(target: dict) -> dict:
    """The normalised RL target, or ``invalid_target`` with per-field errors."""
    from ..rl.agents import ALGOS
    from ..rl.env import POSITION_SETS

    unknown = set(target) - TARGET_FIELDS
    if unknown:
        raise ApplicationError("invalid_target", f"Unknown target field(s): {', '.join(sorted(map(str, unknown)))}.")
    out = {
        "kind": RL_KIND,
        "algo": target.get("algo", "q_learning"),
        "positions": target.get("positions", "long_short"),
        "n_lags": target.get("n_lags", 2),
    }
    errors = {}
    if out["algo"] not in ALGOS:
        errors["algo"] = f"must be one of {', '.join(ALGOS)}"
    if out["positions"] not in POSITION_SETS:
        errors["positions"] = f"must be one of {', '.join(POSITION_SETS)}"
    if isinstance(out["n_lags"], bool) or not isinstance(out["n_lags"], int) or not 1 <= out["n_lags"] <= 6:
        errors["n_lags"] = "must be an integer 1-6"
    if errors:
        raise ApplicationError("invalid_target", "The RL target is invalid; see details.", {"errors": errors})
    return out


def rl_budget_check(n_trials: int) -> None:
    if not 1 <= n_trials <= MAX_EPISODES:
        raise ApplicationError(
            "invalid_budget", f"An RL job trains 1-{MAX_EPISODES} episodes (n_trials).", {"max": MAX_EPISODES}
        )


def train_rl(job, progress):
    """The RL branch of ``training._train``: walk-forward report, final policy, stored version."""
    from features import selectors as fs_selectors
    from marketdata.models import TIMEFRAME_SECONDS

    from ..rl import artifact
    from ..rl.evaluate import walk_forward
    from .registry import CHALLENGER, model_deploy, model_get_or_create, version_create
    from .training import Cancelled, _log, _starter, reference_distribution, training_data

    p = job.params
    target = rl_target_validate(p["target"])
    X, close, _atr, instrument, _fs = training_data(p)
    names = [c for c in X.columns if np.isfinite(X[c].to_numpy(dtype=float)).mean() > 0.5]
    feats = X[names].to_numpy(dtype=float)
    progress.step(5, f"{len(X):,} bars × {len(names)} features of {instrument.symbol} {p['timeframe']}: "
                     f"{target['algo']} over {p['n_trials']} episodes")  # fmt: skip
    episodes = int(p["n_trials"])

    def tick(frac: float, message: str) -> None:
        if progress.cancelled():
            raise Cancelled()
        progress(max(1, int(round(frac * episodes))), episodes, None, message)

    policy, report = walk_forward(
        close, feats, names, algo=target["algo"], positions=target["positions"], fee_bps=p.get("fee_bps", 10.0),
        episodes=episodes, seed=0, n_lags=target["n_lags"],
        periods_per_year=365 * 86400 / TIMEFRAME_SECONDS[p["timeframe"]], progress=tick,
    )  # fmt: skip
    if progress.cancelled(force=True):
        raise Cancelled()
    progress.step(94, "the consensus on the same out-of-sample bars")
    report["consensus"] = _consensus_on_oos(p, X, close, report, target)
    progress.step(96, "storing the version")
    data = artifact.dump(policy)
    with transaction.atomic():
        actor = _starter(job)
        model = model_get_or_create(name=job.model_name, actor=actor)
        if not model.recipe:
            model.recipe = {k: v for k, v in p.items() if k not in ("start", "end")}
            model.save(update_fields=["recipe"])
        version = version_create(
            model=model,
            training_job=job,
            artifact=data,
            task=RL_TASK,
            target=target,
            feature_set=fs_selectors.feature_set_get(ref=p["feature_set"]),
            feature_names=list(policy.spec.feature_names),
            symbol=instrument.symbol,
            timeframe=p["timeframe"],
            train_start=X.index[0].to_pydatetime(),
            train_end=X.index[-1].to_pydatetime(),
            rows_used=len(X),
            data_fingerprint=hashlib.sha256(np.ascontiguousarray(close).tobytes()).hexdigest(),
            params={"family": f"rl:{target['algo']}", **target, "episodes": episodes, **policy.params},
            report=report,
            reference=reference_distribution(X[names]),
            no_edge=bool(report["no_edge"]),
            actor=actor,
        )
        job.best_score = report["oos"]["total_return"]
        job.save(update_fields=["best_score"])
    if p.get("deploy_to") == CHALLENGER:
        try:
            model_deploy(model=model, version=version, alias=CHALLENGER, reason=f"trained by job {job.pk}")
        except ApplicationError as exc:
            _log(job, f"not deployed to challenger: {exc.message}")
    return version


def _consensus_on_oos(p: dict, X, close: np.ndarray, report: dict, target: dict) -> dict | None:
    """The tenant's consensus (its active flow, the technical agents only: a production model may
    have trained on these bars) replayed bar by bar over the job's bars, scored on the RL report's
    out-of-sample blocks. None (with the reason logged in the report's note) if it cannot run."""
    from backtesting.consensus import consensus_signals
    from marketdata import selectors as md_selectors
    from marketdata.models import TIMEFRAME_SECONDS
    from tenants.selectors import tenant_current

    from ..rl.evaluate import consensus_baseline

    folds = report.get("folds_detail") or []
    if not folds:
        return None
    start, end = folds[0]["test"][0], folds[-1]["test"][1]
    try:
        instrument = md_selectors.instrument_get(symbol=p["symbol"])
        bars = md_selectors.bars_frame(instrument=instrument, timeframe=p["timeframe"], limit=None)
        bars = bars.loc[X.index]
        out = consensus_signals(
            bars, tenant=tenant_current(), symbol=instrument.symbol, timeframe=p["timeframe"], use_model=False
        )
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is reported, the policy is still judged
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    stats = consensus_baseline(
        close, out["target"], start=start, end=end, positions=target["positions"], fee_bps=p.get("fee_bps", 10.0),
        periods_per_year=365 * 86400 / TIMEFRAME_SECONDS[p["timeframe"]],
        rl_total_return=report["oos"]["total_return"],
    )  # fmt: skip
    return {**stats, "flow": out["consensus"]["flow"], "bars": end - start, "model_votes": False}
