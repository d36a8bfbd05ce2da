"""Statistics of a backtest, next to the naive baseline (buy & hold over the same bars), and
bootstrap confidence bands for return and drawdown.

Annualisation uses the bars per year the data actually has (bars / years spanned), so daily bars
with weekends missing and 24/7 hourly bars are both annualised by what they are. Ratios use
per-bar returns of the equity curve with a zero risk-free rate; undefined values are None
(no trades: no win rate; no losing bar: no Sortino), never a made-up number."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .engine import Result

YEAR_SECONDS = 365.25 * 86_400


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Per bar, the fall from the highest equity so far (a fraction <= 0)."""
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, equity / peak - 1.0, 0.0)


def _drawdown(equity: np.ndarray) -> tuple[float, int]:
    """Max drawdown (a negative fraction, 0 if none) and its longest duration in bars."""
    dd = drawdown_series(equity)
    under = dd < 0
    longest = run = 0
    for flag in under:  # run lengths below a previous peak
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return float(dd.min()) if len(dd) else 0.0, longest


def bars_per_year(index: pd.DatetimeIndex) -> float | None:
    if len(index) < 2:
        return None
    span = (index[-1] - index[0]).total_seconds()
    return (len(index) - 1) / (span / YEAR_SECONDS) if span > 0 else None


def monte_carlo(trade_returns: np.ndarray, *, runs: int = 1000, seed: int = 0) -> dict | None:
    """Bootstrap of the trades (drawn with replacement, same count, compounded in order): the 5th,
    50th and 95th percentiles of total return and of max drawdown."""
    n = len(trade_returns)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = trade_returns[rng.integers(0, n, size=(runs, n))]
    paths = np.cumprod(1.0 + np.clip(draws, -1.0, None), axis=1)
    totals = paths[:, -1] - 1.0
    peaks = np.maximum.accumulate(np.concatenate([np.ones((runs, 1)), paths], axis=1), axis=1)[:, 1:]
    dds = (paths / peaks - 1.0).min(axis=1)

    def band(values: np.ndarray) -> dict:
        p5, p50, p95 = np.percentile(values, (5, 50, 95)) * 100
        return {"p5": float(p5), "p50": float(p50), "p95": float(p95)}

    return {"runs": runs, "return_pct": band(totals), "max_drawdown_pct": band(dds)}


def compute(result: Result, bars: pd.DataFrame, *, start: int = 0, mc_runs: int = 1000, seed: int = 0) -> dict:
    equity = result.equity.to_numpy()
    index = result.equity.index
    cash = result.config.cash
    trades = result.trades
    ppy = bars_per_year(index)
    years = (len(index) - 1) / ppy if ppy else None
    rets = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.array([])
    rets = rets[np.isfinite(rets)]
    total = equity[-1] / cash - 1.0
    annual = (1 + total) ** (1 / years) - 1 if years and total > -1 else None
    sd = rets.std(ddof=1) if len(rets) > 1 else 0.0
    downside = math.sqrt(float(np.mean(np.minimum(rets, 0.0) ** 2))) if len(rets) else 0.0
    mdd, mdd_bars = _drawdown(equity)
    close = bars["close"].to_numpy()
    pnl = trades["pnl"].to_numpy()
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    tr = trades["trade_return"].to_numpy()
    spacing = (index[-1] - index[0]) / (len(index) - 1) if len(index) > 1 else pd.Timedelta(0)
    stats = {
        "start": index[0].isoformat(),
        "end": index[-1].isoformat(),
        "bars": len(index),
        "first_tradable_bar": int(start),
        "equity_final": float(equity[-1]),
        "equity_peak": float(equity.max()),
        "return_pct": total * 100,
        "annual_return_pct": None if annual is None else annual * 100,
        "buy_and_hold_return_pct": (close[-1] / close[start] - 1.0) * 100,
        "volatility_annual_pct": sd * math.sqrt(ppy) * 100 if ppy else None,
        "sharpe": rets.mean() / sd * math.sqrt(ppy) if ppy and sd > 0 else None,
        "sortino": rets.mean() / downside * math.sqrt(ppy) if ppy and downside > 0 else None,
        "calmar": annual / -mdd if annual is not None and mdd < 0 else None,
        "max_drawdown_pct": mdd * 100,
        "max_drawdown_duration_bars": mdd_bars,
        "max_drawdown_duration": str(spacing * mdd_bars),
        "exposure_pct": float(np.mean(result.position[start:] != 0) * 100) if len(equity) > start else 0.0,
        "trades": len(trades),
        "win_rate_pct": len(wins) / len(pnl) * 100 if len(pnl) else None,
        "profit_factor": wins.sum() / -losses.sum() if len(losses) and losses.sum() < 0 else None,
        "expectancy": float(pnl.mean()) if len(pnl) else None,
        "avg_trade_pct": float(tr.mean() * 100) if len(tr) else None,
        "best_trade_pct": float(tr.max() * 100) if len(tr) else None,
        "worst_trade_pct": float(tr.min() * 100) if len(tr) else None,
        "sqn": math.sqrt(len(pnl)) * pnl.mean() / pnl.std(ddof=1) if len(pnl) > 1 and pnl.std(ddof=1) > 0 else None,
        "commissions": float(trades["commission"].sum()),
        "open_trade": result.open_trade is not None,
        "monte_carlo": monte_carlo(tr, runs=mc_runs, seed=seed) if mc_runs else None,
    }
    return {k: (_num(v) if isinstance(v, (float, np.floating)) else v) for k, v in stats.items()}
