"""Backtests as a service: a built-in strategy with parameters on a frame of bars, simulated
and summarised; per tenant, validated when requested and run as a job."""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from api.errors import ApplicationError
from compliance.services import actor_display, audit_record
from models_registry.models import JobState

from . import stats as stats_mod
from .engine import BrokerConfig, Result, run
from .models import BacktestRun, BacktestTrade
from .strategies import strategy_get

log = logging.getLogger(__name__)
EQUITY_POINTS = 2_000
MODEL = "model"  # the strategy name of a model version's walk-forward backtest
RULES = "rules"  # rules over a feature set's columns (backtesting/rules.py)
CONSENSUS = "consensus"  # the tenant's live agents + consensus, bar by bar (backtesting/consensus.py)


@dataclass
class Backtest:
    strategy: str
    params: dict
    result: Result
    stats: dict
    start: int

    def trades_json(self) -> list[dict]:
        t = self.result.trades
        return [
            {
                "entry_bar": int(r.entry_bar),
                "exit_bar": int(r.exit_bar),
                "entry_time": r.entry_time.isoformat(),
                "exit_time": r.exit_time.isoformat(),
                "entry_price": float(r.entry_price),
                "exit_price": float(r.exit_price),
                "size": float(r.size),
                "pnl": float(r.pnl),
                "return_pct": float(r.trade_return) * 100,
                "commission": float(r.commission),
                "reason": r.reason,
            }
            for r in t.itertuples(index=False)
        ]

    def open_trade_json(self) -> dict | None:
        open_trade = self.result.open_trade
        return None if open_trade is None else {**open_trade, "entry_time": open_trade["entry_time"].isoformat()}

    def as_json(self) -> dict:
        return {
            "strategy": self.strategy,
            "params": self.params,
            "broker": self.result.config.as_dict(),
            "stats": self.stats,
            "trades": self.trades_json(),
            "open_trade": self.open_trade_json(),
            "equity_final": self.result.equity_final,
        }


def bars_check(bars: pd.DataFrame) -> None:
    """Prices a backtest can trade on: present, finite and positive, high >= low."""
    if bars.empty:
        raise ApplicationError("no_bars", "No bars in the chosen range; widen it or import data first.")
    values = bars[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values <= 0).any(axis=1) | (values[:, 1] < values[:, 2])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ApplicationError(
            "invalid_bars",
            f"Bar {i + 1} ({bars.index[i]}) has a missing, non-positive or inconsistent price; "
            "fix or drop it before backtesting.",
            {"row": i + 1, "time": str(bars.index[i])},
        )


def _simulated(
    bars: pd.DataFrame, target: np.ndarray, start: int, *, strategy: str, params: dict, broker: BrokerConfig,
    mc_runs: int = 1000, seed: int = 0, **extra_stats,
) -> Backtest:  # fmt: skip
    """``target`` through the engine, summarised; ``extra_stats`` join the stats (walk-forward, consensus)."""
    result = run(bars, target, broker, start=start)
    stats = {**stats_mod.compute(result, bars, start=start, mc_runs=mc_runs, seed=seed), **extra_stats}
    return Backtest(strategy=strategy, params=params, result=result, stats=stats, start=start)


def backtest_run(
    bars: pd.DataFrame, *, strategy: str, params: dict | None = None, broker: BrokerConfig | None = None,
    mc_runs: int = 1000, seed: int = 0,
) -> Backtest:  # fmt: skip
    s = strategy_get(strategy)
    resolved = s.resolve(params)
    bars_check(bars)
    target, start = s.run(bars, resolved)
    return _simulated(bars, target, start, strategy=strategy, params=resolved, broker=broker or BrokerConfig(),
                      mc_runs=mc_runs, seed=seed)  # fmt: skip


# --- per tenant: request, job, results ---------------------------------------------------------


def broker_from(data: dict | None) -> BrokerConfig:
    """A BrokerConfig from request fields (unknown ones named in the error)."""
    data = dict(data or {})
    known = {f.name for f in fields(BrokerConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ApplicationError("invalid_broker", f"Unknown broker settings {', '.join(unknown)}.", {"unknown": unknown})
    try:
        return BrokerConfig(**data)
    except TypeError as exc:
        raise ApplicationError("invalid_broker", f"Invalid broker settings: {exc}.") from exc


def _bars(*, symbol: str, timeframe: str | None, start, end):
    from marketdata import selectors as md_selectors

    instrument = md_selectors.instrument_get(symbol=symbol)
    timeframe = timeframe or md_selectors.only_timeframe(instrument=instrument, hint="say which timeframe to test")
    if start and end and start >= end:
        raise ApplicationError("invalid_range", "start must be before end.")
    bars = md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, start=start, end=end)
    if bars.empty:
        raise ApplicationError(
            "no_bars",
            f"{instrument.symbol} has no {timeframe} bars in that range; widen it or import data first.",
            {"symbol": instrument.symbol, "timeframe": timeframe},
        )
    return instrument, timeframe, bars


def backtest_create(
    *, tenant, actor, strategy: str, symbol: str, params: dict | None = None, broker: dict | None = None,
    timeframe: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None,
    name: str = "", grid: dict | None = None, metric: str = "sharpe", search: str = "grid", n_trials: int = 100,
    enqueue: bool = True,
) -> BacktestRun:  # fmt: skip
    """Validate everything a run needs (strategy, parameters, broker, bars in range, enough for
    the warm-up) and queue it. Nothing is written when any of it is wrong."""
    from tenants import limits, metering

    config = broker_from(broker)
    version = model_version_resolve(ref=(params or {}).get("model", "")) if strategy == MODEL else None
    instrument, timeframe, bars = _bars(
        symbol=symbol, timeframe=timeframe or (version.timeframe if version else None), start=start, end=end
    )
    bars_check(bars)
    if strategy == MODEL:
        wf = _walk_forward_from(params)
        wf.check(len(bars) - _warmup(version, timeframe))
        resolved = {"model": version.ref, **wf.__dict__}
    elif strategy == CONSENSUS:
        from intelligence.agents.features import agent_feature_spec

        unknown = sorted(set(params or {}) - {"use_model", "replay", "environment"})
        if unknown:
            raise ApplicationError(
                "unknown_param",
                f"A consensus backtest takes use_model, environment and replay only; not {', '.join(unknown)}.",
                {"unknown": unknown},
            )  # fmt: skip
        from configuration.selectors import environment_check

        environment = (params or {}).get("environment", "prod")
        if not isinstance(environment, str):
            raise ApplicationError("unknown_environment", "environment is dev, staging or prod.")
        environment_check(environment)  # 404 unknown_environment
        resolved = {"use_model": bool((params or {}).get("use_model", True)), "environment": environment}
        if (params or {}).get("replay"):
            from intelligence.rerun import replay_plan

            # the live period's recorded decisions and the checkpoint before them (4xx when absent)
            replay_plan(symbol=instrument.symbol, timeframe=timeframe, start=start, end=end)
            resolved = {"replay": True}
        warmup = agent_feature_spec(timeframe).warmup(timeframe)
        if not resolved.get("replay") and len(bars) < warmup + 20:
            raise ApplicationError(
                "too_few_bars", f"The agents' features need {warmup} bars of warm-up; {len(bars)} in range. "
                "Widen the range or load more history.", {"bars": len(bars), "warmup": warmup},
            )  # fmt: skip
    elif strategy == RULES:
        resolved = _rules_prepare(params, bars, timeframe)[0]
    elif grid is not None:
        from .sweep import sweep_check

        resolved = dict(params or {})
        sweep_check(bars, strategy=strategy, grid=grid, metric=metric, base=resolved, search=search, n_trials=n_trials)
    else:
        s = strategy_get(strategy)
        resolved = s.resolve(params)
        s.run(bars, resolved)  # the warm-up fits (too_few_bars otherwise)
    # the plan's monthly bars: every bar simulated counts, once per combination of a sweep
    combinations = 1
    if grid is not None:
        combinations = n_trials if search == "optuna" else int(np.prod([len(v) for v in grid.values()]))
    limits.limit_check(tenant, "backtest_bars_per_month", len(bars) * combinations)
    metering.units_add(tenant, "backtest_bar", len(bars) * combinations)
    with transaction.atomic():
        run_row = BacktestRun.objects.create(
            name=name[:120], strategy=strategy, params=resolved, broker=config.as_dict(), symbol=instrument.symbol,
            timeframe=timeframe, start=start, end=end, bars=len(bars), created_by=actor_display(actor),
            message="queued", grid=grid, metric=metric if grid is not None else "",
            search=search if grid is not None else "", n_trials=n_trials if search == "optuna" else 0,
        )  # fmt: skip
        audit_record(actor, "backtest.created", run_row, {"strategy": strategy, "symbol": instrument.symbol})
        if enqueue:
            transaction.on_commit(lambda: backtest_enqueue(run_row))
    return run_row


def backtest_enqueue(run_row: BacktestRun) -> None:
    from .tasks import run_backtest

    run_backtest.delay(str(run_row.pk))


class Cancelled(Exception):
    pass


def _progress(run_row: BacktestRun, percent: int, message: str) -> None:
    """Record progress; raises ``Cancelled`` when someone asked to cancel the run meanwhile."""
    run_row.percent, run_row.message = percent, message
    BacktestRun.objects.filter(pk=run_row.pk).update(percent=percent, message=message)
    if BacktestRun.objects.filter(pk=run_row.pk, cancel_requested=True).exists():
        raise Cancelled


def backtest_cancel(*, run: BacktestRun, actor=None) -> BacktestRun:
    """A queued run is cancelled at once; a running one stops at its next progress step."""
    if run.finished:
        raise ApplicationError("job_finished", f"The backtest already {run.state}; nothing to cancel.", status=409)
    with transaction.atomic():
        locked = BacktestRun.objects.select_for_update().get(pk=run.pk)
        if locked.state == JobState.QUEUED:
            locked.state, locked.message, locked.finished_at = JobState.CANCELLED, "cancelled", timezone.now()
        locked.cancel_requested = True
        locked.save(update_fields=["state", "message", "finished_at", "cancel_requested"])
        audit_record(actor, "backtest.cancelled", locked, {"state": locked.state})
    return locked


def _equity_points(result: Result) -> list[list]:
    equity = result.equity
    dd = stats_mod.drawdown_series(equity.to_numpy()) * 100
    step = max(1, int(np.ceil(len(equity) / EQUITY_POINTS)))
    picks = list(range(0, len(equity), step))
    if picks[-1] != len(equity) - 1:
        picks.append(len(equity) - 1)
    return [[equity.index[i].isoformat(), float(equity.iloc[i]), float(dd[i])] for i in picks]


def _lock_key(run_id) -> int:
    return zlib.crc32(f"{connection.schema_name}:backtest:{run_id}".encode()) - 2**31


def backtest_execute(*, run_id) -> str:
    """Run one queued backtest to its end; safe to deliver any number of times. A run holds a
    PostgreSQL advisory lock for its whole duration (released by the server when the worker's
    connection dies, kill -9 included), so two deliveries never run it at once; a finished run is
    left as it is; a run whose worker died (``running``, lock free) is started over by the next
    delivery -- the worker's own on reject_on_worker_lost, or the beat sweep's (:func:`backtests_reap`)
    -- and its trades are replaced, never added to."""
    key = _lock_key(run_id)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cur.fetchone()[0]:
            return "running elsewhere"
    try:
        return _execute_locked(run_id)
    finally:
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [key])
        except Exception:  # noqa: BLE001 - a broken connection took the lock with it
            log.warning("could not release the lock of backtest %s", run_id, exc_info=True)


def backtests_reap() -> int:
    """Queue again the runs a lost worker left: ``running`` for BACKTEST_STALE_S or more while
    nobody holds their lock (a live run always does). Returns how many were queued."""
    from django.conf import settings

    stale_before = timezone.now() - dt.timedelta(seconds=settings.BACKTEST_STALE_S)
    queued = 0
    for run_row in BacktestRun.objects.filter(state=JobState.RUNNING, started_at__lt=stale_before):
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(run_row.pk)])
            free = cur.fetchone()[0]
            if free:
                cur.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(run_row.pk)])
        if free:
            log.warning("backtest %s lost its worker; queued again", run_row.pk)
            backtest_enqueue(run_row)
            queued += 1
    return queued


def _execute_locked(run_id) -> str:
    with transaction.atomic():
        run_row = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
        if run_row is None or run_row.finished:
            return run_row.state if run_row else "missing"
        run_row.state, run_row.started_at = JobState.RUNNING, timezone.now()
        run_row.percent, run_row.message = 5, "loading bars"
        run_row.save(update_fields=["state", "started_at", "percent", "message"])
    try:
        _, _, bars = _bars(symbol=run_row.symbol, timeframe=run_row.timeframe, start=run_row.start, end=run_row.end)
        _progress(run_row, 30, f"simulating {len(bars):,} bars")
        broker = BrokerConfig(**run_row.broker)
        if run_row.grid is not None:
            return _sweep_execute(run_row, bars, broker)
        if run_row.strategy == CONSENSUS:
            bt = consensus_backtest_run(
                bars, params=run_row.params, broker=broker, symbol=run_row.symbol, timeframe=run_row.timeframe,
                progress=lambda pct, msg: _progress(run_row, 30 + pct // 2, msg),
            )  # fmt: skip
        elif run_row.strategy == RULES:
            bt = rules_backtest_run(bars, params=run_row.params, broker=broker, timeframe=run_row.timeframe)
        elif run_row.strategy == MODEL:
            bt = model_backtest_run(
                bars, params=run_row.params, broker=broker, timeframe=run_row.timeframe,
                progress=lambda pct, msg: _progress(run_row, 30 + pct // 2, msg),
            )  # fmt: skip
        else:
            bt = backtest_run(bars, strategy=run_row.strategy, params=run_row.params, broker=broker)
        _progress(run_row, 80, f"saving {len(bt.result.trades):,} trades")
        trades = [
            BacktestTrade(
                run=run_row,
                n=i + 1,
                entry_time=t.entry_time,
                exit_time=t.exit_time,
                entry_price=t.entry_price,
                exit_price=t.exit_price,
                size=t.size,
                pnl=t.pnl,
                return_pct=t.trade_return * 100,
                commission=t.commission,
                reason=t.reason,
            )  # fmt: skip
            for i, t in enumerate(bt.result.trades.itertuples(index=False))
        ]
        open_trade = bt.open_trade_json()
        with transaction.atomic():
            BacktestTrade.objects.filter(run=run_row).delete()  # a redelivered run starts its trades over
            BacktestTrade.objects.bulk_create(trades, batch_size=5_000)
            BacktestRun.objects.filter(pk=run_row.pk).update(
                state=JobState.SUCCEEDED, percent=100, message="done", stats=bt.stats,
                equity=_equity_points(bt.result), open_trade=open_trade, bars=len(bars), finished_at=timezone.now(),
            )  # fmt: skip
        return JobState.SUCCEEDED
    except Cancelled:
        BacktestRun.objects.filter(pk=run_row.pk).update(
            state=JobState.CANCELLED, message="cancelled", finished_at=timezone.now()
        )
        return JobState.CANCELLED
    except ApplicationError as exc:  # the data changed since the request was checked
        _fail(run_row, f"{run_row.symbol} {run_row.timeframe}: {exc.message}")
        return JobState.FAILED
    except Exception as exc:  # noqa: BLE001 - the run records what went wrong; the worker goes on
        log.exception("backtest %s failed", run_row.pk)
        _fail(run_row, f"{type(exc).__name__}: {exc}"[:500])
        return JobState.FAILED


def _sweep_execute(run_row: BacktestRun, bars: pd.DataFrame, broker: BrokerConfig) -> str:
    from .sweep import sweep

    report = sweep(
        bars, strategy=run_row.strategy, grid=run_row.grid, broker=broker, metric=run_row.metric,
        base=run_row.params, progress=lambda pct, msg: _progress(run_row, 30 + pct * 65 // 100, msg),
        search=run_row.search or "grid", n_trials=run_row.n_trials or 100,
    )  # fmt: skip
    BacktestRun.objects.filter(pk=run_row.pk).update(
        state=JobState.SUCCEEDED, percent=100, message="done", stats=report, bars=len(bars),
        finished_at=timezone.now(),
    )  # fmt: skip
    return JobState.SUCCEEDED


def _fail(run_row: BacktestRun, why: str) -> None:
    BacktestRun.objects.filter(pk=run_row.pk).update(
        state=JobState.FAILED, error=why, message="failed", finished_at=timezone.now()
    )


# --- a model version, walk-forward -------------------------------------------------------------


def model_version_resolve(*, ref: str):
    """``name`` (its production version, else its latest) or ``name@version``."""
    from models_registry import selectors as mr

    name, _, number = (ref or "").partition("@")
    if not name:
        raise ApplicationError("invalid_param", "Say which model: params.model is 'name' or 'name@version'.")
    model = mr.model_get(name=name)
    if number:
        if not number.isdigit():
            raise ApplicationError("invalid_param", "params.model is 'name' or 'name@version' (version a number).")
        return mr.version_get(model=model, version=int(number))
    aliases = mr.alias_map(model=model)
    version = aliases.get("production") or (mr.version_list(model=model).values_list("version", flat=True).first())
    if version is None:
        raise ApplicationError("no_version", f"{model.name} has no version yet; train it first.")
    return mr.version_get(model=model, version=version)


def _walk_forward_from(params: dict | None):
    from .walkforward import WalkForward

    p = dict(params or {})
    p.pop("model", None)
    known = set(WalkForward.__dataclass_fields__)
    unknown = sorted(set(p) - known)
    if unknown:
        raise ApplicationError(
            "unknown_param", f"A model backtest takes model and {', '.join(sorted(known))}; not {', '.join(unknown)}.",
            {"unknown": unknown},
        )  # fmt: skip
    try:
        return WalkForward(
            **{k: (bool(v) if k == "expanding" else type(getattr(WalkForward, k))(v)) for k, v in p.items()}
        )
    except (TypeError, ValueError) as exc:
        raise ApplicationError("invalid_walk_forward", f"Invalid walk-forward settings: {exc}.") from exc


def _warmup(version, timeframe: str) -> int:
    from features import selectors as fs_selectors

    return fs_selectors.feature_set_spec(version.feature_set).warmup(timeframe)


def model_backtest_run(bars: pd.DataFrame, *, params: dict, broker: BrokerConfig, timeframe: str, progress=None):
    """The model version's recipe (feature set, target, best trial's family and hyper-parameters)
    retrained walk-forward over ``bars``; its predictions traded by the engine."""
    from features import selectors as fs_selectors
    from features.engine import compute_batch
    from models_registry.ml.families import FAMILIES
    from models_registry.ml.targets import TargetSpec, make_labels

    from .walkforward import hit_rate, walk_forward

    version = model_version_resolve(ref=params["model"])
    wf = _walk_forward_from(params)
    spec = fs_selectors.feature_set_spec(version.feature_set)
    features = compute_batch(bars, spec, timeframe, direct=True)[list(version.feature_names)]
    target = TargetSpec.from_json(version.target)
    if target.dead_band_unit == "atr":
        raise ApplicationError(
            "invalid_target", "Walk-forward backtests of ATR dead-band targets are not supported yet."
        )
    close = bars["close"].to_numpy(dtype=np.float64)
    labels = make_labels(close, target)
    family = FAMILIES[version.params["family"]]
    n_classes = len(target.classes)
    out = walk_forward(
        features, labels=labels, horizon=target.horizon, task=target.task, wf=wf, progress=progress,
        build=lambda: family.build(version.params, target.task, n_classes, 0),
    )  # fmt: skip
    walk = {
        "model": version.ref, "family": version.params["family"], "segments": len(out["segments"]),
        "first_predicted_bar": out["first_predicted"], "horizon": target.horizon,
        **hit_rate(out["score"], close, horizon=target.horizon, task=target.task),
    }  # fmt: skip
    return _simulated(bars, out["target"], out["first_predicted"], strategy=MODEL, params=params, broker=broker,
                      walk_forward=walk)  # fmt: skip


COMPARED = (
    "return_pct", "buy_and_hold_return_pct", "annual_return_pct", "sharpe", "sortino", "calmar", "max_drawdown_pct",
    "trades", "win_rate_pct", "profit_factor", "sqn", "exposure_pct", "equity_final",
)  # fmt: skip


def backtest_compare(*, runs: list[BacktestRun]) -> dict:
    """Finished single runs side by side: their key figures, and which run is best on each."""
    rows = []
    for r in runs:
        if r.state != JobState.SUCCEEDED or r.grid is not None:
            raise ApplicationError(
                "not_comparable", "Only finished single backtests compare (not queued, failed or sweep runs).",
                {"id": str(r.pk), "state": r.state},
            )  # fmt: skip
        rows.append({"id": str(r.pk), "strategy": r.strategy, "params": r.params, "symbol": r.symbol,
                     "timeframe": r.timeframe, "bars": r.bars, **{k: r.stats.get(k) for k in COMPARED}})  # fmt: skip
    best = {}
    for key in COMPARED:
        if key in ("trades", "buy_and_hold_return_pct", "exposure_pct"):
            continue
        scored = [(row[key], row["id"]) for row in rows if row[key] is not None]
        if scored:
            best[key] = max(scored)[1]  # drawdown is negative: the max is the shallowest
    return {"runs": rows, "best": best}


# --- rules over a feature set ------------------------------------------------------------------


def _rules_prepare(params: dict | None, bars: pd.DataFrame, timeframe: str):
    """Validated rules (with the feature set's ref) and the signal they give on ``bars``."""
    from features import selectors as fs_selectors
    from features.engine import compute_batch

    from .rules import rules_check, rules_signal

    params = dict(params or {})
    fs = fs_selectors.feature_set_get(ref=params.get("feature_set") or "default")
    rules = {**rules_check(params, list(fs.columns)), "feature_set": fs.ref}
    features = compute_batch(bars, fs_selectors.feature_set_spec(fs), timeframe, direct=True)
    target, start = rules_signal(bars, features, rules)
    if start >= len(bars) - 1:
        raise ApplicationError(
            "too_few_bars", f"The rules' columns have no values until bar {start}; load a longer history.",
            {"bars": len(bars), "warmup": start},
        )  # fmt: skip
    return rules, target, start


def rules_backtest_run(bars: pd.DataFrame, *, params: dict, broker: BrokerConfig, timeframe: str) -> Backtest:
    rules, target, start = _rules_prepare(params, bars, timeframe)
    return _simulated(bars, target, start, strategy=RULES, params=rules, broker=broker)


def consensus_backtest_run(
    bars: pd.DataFrame, *, params: dict, broker: BrokerConfig, symbol: str, timeframe: str, progress=None
) -> Backtest:
    from tenants.selectors import tenant_current

    from .consensus import consensus_signals

    if params.get("replay"):
        out = _replay_signals(bars, symbol=symbol, timeframe=timeframe, progress=progress)
    else:
        out = consensus_signals(
            bars, tenant=tenant_current(), symbol=symbol, timeframe=timeframe,
            use_model=params.get("use_model", True), environment=params.get("environment", "prod"),
            progress=progress,
        )  # fmt: skip
    return _simulated(bars, out["target"], out["start"], strategy=CONSENSUS, params=params, broker=broker,
                      consensus=out["consensus"])  # fmt: skip


def _replay_signals(bars: pd.DataFrame, *, symbol: str, timeframe: str, progress=None) -> dict:
    """A recorded live period replayed (``intelligence.rerun``): the replayed decisions as targets,
    with the report of how many match what was recorded."""
    from intelligence.rerun import decisions_replay

    from .engine import FLAT, KEEP, LONG, SHORT

    out = decisions_replay(
        symbol=symbol, timeframe=timeframe, start=bars.index[0], end=bars.index[-1] + pd.Timedelta(seconds=1),
        progress=progress,
    )  # fmt: skip
    actions = out["actions"].get((symbol, timeframe), {})
    stamps = bars.index.as_unit("ns").asi8 // 1_000_000_000
    target = np.full(len(bars), KEEP, dtype=np.int8)
    sell = SHORT if out["allow_short"] else FLAT
    decided = [i for i, ts in enumerate(stamps) if int(ts) in actions]
    for i in decided:
        target[i] = {"BUY": LONG, "SELL": sell}.get(actions[int(stamps[i])], KEEP)
    counts = {a: sum(1 for x in actions.values() if x == a) for a in ("BUY", "SELL", "HOLD")}
    return {
        "target": target,
        "start": decided[0] if decided else len(bars),
        "consensus": {"replay": out["report"], "decisions": counts,
                      "note": "the live period replayed from its recorded state; exact when every decision matches"},
    }  # fmt: skip
