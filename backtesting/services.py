"""Backtests as a service: a built-in strategy with parameters on a frame of bars, simulated
and summarised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from api.errors import ApplicationError

from . import stats as stats_mod
from .engine import BrokerConfig, Result, run
from .strategies import strategy_get


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
