"""The backtest engine: a strategy's per-bar target positions, simulated through a broker with
cash, commission, spread, sizing, stops and leverage, in one compiled pass over the bars.

A strategy (``backtesting.strategies``) says, at the close of each bar, where it wants to be:
``LONG``, ``SHORT``, ``FLAT``, or ``KEEP`` (no order). The broker fills that order at the next
bar's open (``fill="next_open"``, the default) or at that bar's close (``fill="close"``), so a
signal never trades on a price it could not have seen.

Accounting (the conventions of backtesting.py, so its ``SmaCross`` example gives the same trades
and final equity with its defaults; see tests/backtesting/test_engine_golden.py):

- ``equity = cash + size * (close - entry_price)``; opening a trade does not move its notional
  out of cash (a margin account), and ``margin_available = equity - |size| * close / leverage``.
- A new position replaces the old one: the open trade is closed first (at the fill price), then
  the new one is sized on the margin then available.
- Entry price = fill price moved against the trader by ``spread`` (a fraction: buy higher, sell
  lower); exits fill at the raw price. Slippage moves every fill, entries and exits (signal, stop,
  take-profit, end), against the trader by ``slippage_bps`` basis points of the price plus
  ``slippage_atr`` times the ATR(14) known before the bar (a volatility-scaled cost: thin, fast
  markets slip more); both are 0 by default. Commission = ``commission_fixed + |size| * price *
  commission`` at entry (on the entry price) and at exit (on the exit price), out of cash.
- All-in sizing spends ``fraction`` (just under 1 by default) of the margin available, times the
  leverage, on units costing ``entry price + commission per unit``; whole units round down.
  ``risk`` sizing buys what loses ``risk`` of equity if the stop-loss is hit (capped at all-in).
- Stop-loss / take-profit (fractions of the entry price) trigger intra-bar from the entry bar on;
  when both could have triggered in one bar the stop-loss is assumed first (conservative), and a
  gap through a level fills at the open.
- A trade still open at the end stays open (its P&L is in the final equity, not in the trades)
  unless ``close_at_end``; equity at or below zero closes everything and stops the run.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field

import numba
import numpy as np
import pandas as pd

from api.errors import ApplicationError

LONG, SHORT, FLAT, KEEP = 1, -1, 0, 2
FULL = 1 - sys.float_info.epsilon  # backtesting.py's default order size: all but an epsilon

FILLS = ("next_open", "close")
SIZINGS = ("all_in", "fixed_fraction", "risk")


@dataclass(frozen=True)
class BrokerConfig:
    cash: float = 10_000.0
    commission: float = 0.0  # fraction of notional per side
    commission_fixed: float = 0.0  # cash per side
    spread: float = 0.0  # fraction of price, paid on entry
    slippage_bps: float = 0.0  # basis points of price, against the trader on every fill
    slippage_atr: float = 0.0  # multiples of ATR(14) (as of the previous bar), against the trader on every fill
    fill: str = "next_open"
    whole_units: bool = True
    sizing: str = "all_in"
    fraction: float = FULL  # of the margin available (all_in, fixed_fraction)
    risk: float = 0.01  # fraction of equity lost at the stop (risk sizing)
    stop_loss: float | None = None  # fraction below (long) / above (short) the entry price
    take_profit: float | None = None
    leverage: float = 1.0
    allow_short: bool = True
    close_at_end: bool = False

    def __post_init__(self):
        problems = {}
        if not (self.cash > 0 and math.isfinite(self.cash)):
            problems["cash"] = "must be a positive amount"
        if not -0.1 <= self.commission < 0.1:
            problems["commission"] = "is a fraction of notional per side, between -0.1 and 0.1 (0.001 = 0.1 %)"
        if self.commission_fixed < 0:
            problems["commission_fixed"] = "must be >= 0"
        if not 0 <= self.spread < 0.1:
            problems["spread"] = "is a fraction of price, between 0 and 0.1"
        if not 0 <= self.slippage_bps <= 500:
            problems["slippage_bps"] = "is basis points of price per fill, between 0 and 500"
        if not 0 <= self.slippage_atr <= 5:
            problems["slippage_atr"] = "is a multiple of ATR(14) per fill, between 0 and 5"
        if self.fill not in FILLS:
            problems["fill"] = f"is one of {', '.join(FILLS)}"
        if self.sizing not in SIZINGS:
            problems["sizing"] = f"is one of {', '.join(SIZINGS)}"
        if not 0 < self.fraction <= 1:
            problems["fraction"] = "must be in (0, 1]"
        if not 0 < self.risk < 1:
            problems["risk"] = "must be in (0, 1)"
        for name in ("stop_loss", "take_profit"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                problems[name] = "is a fraction of the entry price in (0, 1), or unset"
        if self.sizing == "risk" and self.stop_loss is None:
            problems["stop_loss"] = "is needed by risk sizing (the loss per unit if it is hit)"
        if not 1 <= self.leverage <= 100:
            problems["leverage"] = "must be between 1 and 100"
        if problems:
            raise ApplicationError(
                "invalid_broker",
                "Invalid broker settings: " + "; ".join(f"{k} {v}" for k, v in problems.items()),
                problems,
            )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    """What a run produced: closed trades, the equity curve, and the trade still open (if any)."""

    trades: pd.DataFrame  # entry_bar, exit_bar, entry_time, exit_time, entry_price, exit_price, size, pnl, ...
    equity: pd.Series  # per bar, indexed like the bars
    position: np.ndarray  # units held at each bar's close
    open_trade: dict | None
    config: BrokerConfig
    meta: dict = field(default_factory=dict)

    @property
    def equity_final(self) -> float:
        return float(self.equity.iloc[-1])


# ------------------------------------------------------------------------------- compiled core

_T_ENTRY_BAR, _T_EXIT_BAR, _T_ENTRY, _T_EXIT, _T_SIZE, _T_PNL, _T_COMM, _T_REASON = range(8)
REASONS = {0: "signal", 1: "stop_loss", 2: "take_profit", 3: "end", 4: "out_of_money"}


@numba.njit(cache=True)
def _commission(size, price, fixed, rel):
    return fixed + abs(size) * price * rel


@numba.njit(cache=True)
def _close(trades, count, entry_bar, bar, entry, price, size, fixed, rel, reason, slip_frac, slip_abs):
    """Record the open trade closed at ``price`` (moved against it by the slippage); returns the
    cash it brings back."""
    if slip_frac != 0.0 or slip_abs != 0.0:
        price = price - (1.0 if size > 0 else -1.0) * (price * slip_frac + slip_abs)
    exit_comm = _commission(size, price, fixed, rel)
    comm = exit_comm + _commission(size, entry, fixed, rel)
    trades[count, 0] = entry_bar
    trades[count, 1] = bar
    trades[count, 2] = entry
    trades[count, 3] = price
    trades[count, 4] = size
    trades[count, 5] = size * (price - entry) - comm
    trades[count, 6] = comm
    trades[count, 7] = reason
    return size * (price - entry) - exit_comm


@numba.njit(cache=True)
def _simulate(o, h, lo, c, target, start, cash, rel, fixed, spread, on_close, whole, sizing, fraction,
              risk, sl, tp, leverage, allow_short, close_at_end, slip_frac, slip_abs):  # fmt: skip
    n = len(c)
    equity = np.full(n, cash)
    held = np.zeros(n)
    trades = np.empty((2 * n + 1, 8))  # a bar can close two: at its open, and a stop after it
    count = 0
    size = 0.0  # units of the open trade (signed); 0: flat
    entry = 0.0
    entry_bar = -1
    stop = np.nan
    take = np.nan
    pending = KEEP  # the previous close's order, filled at this open
    for i in range(start, n):
        for phase in range(2):  # 0: fill at this bar's open, then stops; 1: fill at its close
            if phase == 0:
                order = KEEP if on_close else pending
                price = o[i]
            else:
                order = target[i] if on_close else KEEP
                price = c[i]
            if order != KEEP:
                want = order
                if want == SHORT and not allow_short:
                    want = FLAT
                held_dir = 0 if size == 0 else (1 if size > 0 else -1)
                if want != held_dir:
                    if size != 0:
                        cash += _close(trades, count, entry_bar, i, entry, price, size, fixed, rel, 0,
                                       slip_frac, slip_abs[i])  # fmt: skip
                        count += 1
                        size = 0.0
                    if want != FLAT:
                        adj = price * (1.0 + spread * want)
                        if slip_frac != 0.0 or slip_abs[i] != 0.0:
                            adj += want * (price * slip_frac + slip_abs[i])
                        per_unit = adj + fixed / fraction + price * rel
                        budget = max(0.0, cash) * leverage * fraction
                        if sizing == 2:  # risk: lose `risk` of equity if the stop is hit
                            units = min(cash * risk / (adj * sl), budget / per_unit)
                            if whole:
                                units = float(math.floor(units))
                        elif whole:
                            units = float(int(budget // per_unit))
                        else:
                            units = budget / per_unit
                        if units > 0:
                            size = units * want
                            entry = adj
                            entry_bar = i
                            cash -= _commission(size, adj, fixed, rel)
                            stop = adj * (1.0 - sl * want) if sl > 0 else np.nan
                            take = adj * (1.0 + tp * want) if tp > 0 else np.nan
            if phase == 0 and size != 0:  # stop-loss first when both could have hit; gaps fill at the open
                reason = 0
                hit = 0.0
                if size > 0:
                    if stop == stop and lo[i] <= stop:
                        reason, hit = 1, min(o[i], stop)
                    elif take == take and h[i] >= take:
                        reason, hit = 2, max(o[i], take)
                else:
                    if stop == stop and h[i] >= stop:
                        reason, hit = 1, max(o[i], stop)
                    elif take == take and lo[i] <= take:
                        reason, hit = 2, min(o[i], take)
                if reason > 0:
                    cash += _close(trades, count, entry_bar, i, entry, hit, size, fixed, rel, reason,
                                   slip_frac, slip_abs[i])  # fmt: skip
                    count += 1
                    size = 0.0
        pending = target[i]
        eq = cash + size * (c[i] - entry)
        if eq <= 0:  # out of money: what is open closes at this close and the run stops
            if size != 0:
                _close(trades, count, entry_bar, i, entry, c[i], size, fixed, rel, 4, slip_frac, slip_abs[i])
                count += 1
            equity[i:] = 0.0
            return equity, held, trades[:count], 0.0, 0.0, -1
        equity[i] = eq
        held[i] = size
    if close_at_end and size != 0:
        cash += _close(trades, count, entry_bar, n - 1, entry, c[n - 1], size, fixed, rel, 3, slip_frac,
                       slip_abs[n - 1])  # fmt: skip
        count += 1
        equity[n - 1] = cash
        held[n - 1] = 0.0
        size = 0.0
    return equity, held, trades[:count], size, entry, entry_bar


def _atr_slippage(bars: pd.DataFrame, k: float) -> np.ndarray:
    """Per bar, ``k`` times the ATR(14) known before it opens (the previous bar's; over the first
    bars, the mean true range so far): the price a fill on that bar slips by."""
    n = len(bars)
    if k == 0 or n == 0:
        return np.zeros(n)
    import talib

    h, lo, c = (np.ascontiguousarray(bars[col].to_numpy(dtype=np.float64)) for col in ("high", "low", "close"))
    atr = talib.ATR(h, lo, c, timeperiod=14)
    prev = np.concatenate([[c[0]], c[:-1]])
    tr = np.maximum(h - lo, np.maximum(np.abs(h - prev), np.abs(lo - prev)))
    early = np.cumsum(tr) / np.arange(1, n + 1)
    atr = np.where(np.isnan(atr), early, atr)
    known = np.concatenate([[atr[0]], atr[:-1]])  # before bar i opens, ATR through bar i-1
    return np.ascontiguousarray(k * known)


def run(bars: pd.DataFrame, target: np.ndarray, config: BrokerConfig, *, start: int = 0) -> Result:
    """Simulate ``target`` (one of LONG/SHORT/FLAT/KEEP per bar, decided at that bar's close) on
    ``bars`` (open/high/low/close columns, time index) from bar ``start`` (the strategy's warm-up:
    no order before it)."""
    arrays = [np.ascontiguousarray(bars[k].to_numpy(dtype=np.float64)) for k in ("open", "high", "low", "close")]
    target = np.ascontiguousarray(target, dtype=np.int8)
    if len(target) != len(bars):
        raise ValueError("one target per bar")
    cfg = config
    equity, held, rows, size, entry, entry_bar = _simulate(
        *arrays, target, int(start), float(cfg.cash), float(cfg.commission), float(cfg.commission_fixed),
        float(cfg.spread), cfg.fill == "close", cfg.whole_units, SIZINGS.index(cfg.sizing), float(cfg.fraction),
        float(cfg.risk), float(cfg.stop_loss or 0.0), float(cfg.take_profit or 0.0), float(cfg.leverage),
        cfg.allow_short, cfg.close_at_end, float(cfg.slippage_bps) / 10_000, _atr_slippage(bars, cfg.slippage_atr),
    )  # fmt: skip
    index = bars.index
    trades = pd.DataFrame(rows, columns=["entry_bar", "exit_bar", "entry_price", "exit_price", "size", "pnl",
                                         "commission", "reason"])  # fmt: skip
    for col in ("entry_bar", "exit_bar", "reason"):
        trades[col] = trades[col].astype(np.int64)
    trades.insert(2, "entry_time", index[trades["entry_bar"].to_numpy()])
    trades.insert(3, "exit_time", index[trades["exit_bar"].to_numpy()])
    trades["trade_return"] = trades["pnl"] / (trades["entry_price"] * trades["size"].abs())
    trades["reason"] = trades["reason"].map(REASONS)
    open_trade = None
    if size != 0:
        last = float(arrays[3][-1])
        open_trade = {
            "entry_bar": int(entry_bar),
            "entry_time": index[entry_bar],
            "entry_price": float(entry),
            "size": float(size),
            "unrealised_pnl": float(size * (last - entry)),
        }
    return Result(
        trades=trades, equity=pd.Series(equity, index=index, name="equity"), position=held,
        open_trade=open_trade, config=cfg,
    )  # fmt: skip
