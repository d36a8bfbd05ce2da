"""Backtests as a service: a built-in strategy with parameters on a frame of bars, simulated
and summarised; per tenant, validated when requested and run as a job."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from django.db import transaction
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

    def as_json(self) -> dict:
        open_trade = self.result.open_trade
        if open_trade is not None:
            open_trade = {**open_trade, "entry_time": open_trade["entry_time"].isoformat()}
        return {
            "strategy": self.strategy,
            "params": self.params,
            "broker": self.result.config.as_dict(),
            "stats": self.stats,
            "trades": self.trades_json(),
            "open_trade": open_trade,
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


def backtest_run(
    bars: pd.DataFrame, *, strategy: str, params: dict | None = None, broker: BrokerConfig | None = None,
    mc_runs: int = 1000, seed: int = 0,
) -> Backtest:  # fmt: skip
    s = strategy_get(strategy)
    resolved = s.resolve(params)
    bars_check(bars)
    target, start = s.run(bars, resolved)
    result = run(bars, target, broker or BrokerConfig(), start=start)
    return Backtest(
        strategy=strategy, params=resolved, result=result, start=start,
        stats=stats_mod.compute(result, bars, start=start, mc_runs=mc_runs, seed=seed),
    )  # fmt: skip


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
    name: str = "", enqueue: bool = True,
) -> BacktestRun:  # fmt: skip
    """Validate everything a run needs (strategy, parameters, broker, bars in range, enough for
    the warm-up) and queue it. Nothing is written when any of it is wrong."""
    from tenants import limits

    s = strategy_get(strategy)
    resolved = s.resolve(params)
    config = broker_from(broker)
    instrument, timeframe, bars = _bars(symbol=symbol, timeframe=timeframe, start=start, end=end)
    bars_check(bars)
    s.run(bars, resolved)  # the warm-up fits (too_few_bars otherwise)
    limits.limit_check(tenant, "backtests_per_day")
    with transaction.atomic():
        run_row = BacktestRun.objects.create(
            name=name[:120], strategy=strategy, params=resolved, broker=config.as_dict(), symbol=instrument.symbol,
            timeframe=timeframe, start=start, end=end, bars=len(bars), created_by=actor_display(actor),
            message="queued",
        )  # fmt: skip
        audit_record(actor, "backtest.created", run_row, {"strategy": strategy, "symbol": instrument.symbol})
        if enqueue:
            transaction.on_commit(lambda: backtest_enqueue(run_row))
    return run_row


def backtest_enqueue(run_row: BacktestRun) -> None:
    from .tasks import run_backtest

    run_backtest.delay(str(run_row.pk))


def _progress(run_row: BacktestRun, percent: int, message: str) -> None:
    run_row.percent, run_row.message = percent, message
    BacktestRun.objects.filter(pk=run_row.pk).update(percent=percent, message=message)


def _equity_points(result: Result) -> list[list]:
    equity = result.equity
    peak = np.maximum.accumulate(equity.to_numpy())
    dd = np.where(peak > 0, equity.to_numpy() / peak - 1.0, 0.0) * 100
    step = max(1, int(np.ceil(len(equity) / EQUITY_POINTS)))
    picks = list(range(0, len(equity), step))
    if picks[-1] != len(equity) - 1:
        picks.append(len(equity) - 1)
    return [[equity.index[i].isoformat(), float(equity.iloc[i]), float(dd[i])] for i in picks]


def backtest_execute(*, run_id) -> str:
    """Run one queued backtest to its end; a finished run is left as it is (safe to redeliver)."""
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
        bt = backtest_run(bars, strategy=run_row.strategy, params=run_row.params, broker=BrokerConfig(**run_row.broker))
        _progress(run_row, 80, f"saving {len(bt.result.trades):,} trades")
        trades = [
            BacktestTrade(
                run=run_row,
                n=i + 1,
                entry_time=t["entry_time"],
                exit_time=t["exit_time"],
                entry_price=t["entry_price"],
                exit_price=t["exit_price"],
                size=t["size"],
                pnl=t["pnl"],
                return_pct=t["return_pct"],
                commission=t["commission"],
                reason=t["reason"],
            )  # fmt: skip
            for i, t in enumerate(bt.trades_json())
        ]
        open_trade = bt.as_json()["open_trade"]
        with transaction.atomic():
            BacktestTrade.objects.filter(run=run_row).delete()  # a redelivered run starts its trades over
            BacktestTrade.objects.bulk_create(trades, batch_size=5_000)
            BacktestRun.objects.filter(pk=run_row.pk).update(
                state=JobState.SUCCEEDED, percent=100, message="done", stats=bt.stats,
                equity=_equity_points(bt.result), open_trade=open_trade, bars=len(bars), finished_at=timezone.now(),
            )  # fmt: skip
        return JobState.SUCCEEDED
    except ApplicationError as exc:  # the data changed since the request was checked
        _fail(run_row, f"{run_row.symbol} {run_row.timeframe}: {exc.message}")
        return JobState.FAILED
    except Exception as exc:  # noqa: BLE001 - the run records what went wrong; the worker goes on
        log.exception("backtest %s failed", run_row.pk)
        _fail(run_row, f"{type(exc).__name__}: {exc}"[:500])
        return JobState.FAILED


def _fail(run_row: BacktestRun, why: str) -> None:
    BacktestRun.objects.filter(pk=run_row.pk).update(
        state=JobState.FAILED, error=why, message="failed", finished_at=timezone.now()
    )
