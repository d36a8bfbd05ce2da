"""Built-in signal strategies: each turns bars into one target per bar (``LONG``/``SHORT``/``FLAT``
/``KEEP``, decided at that bar's close from that bar and earlier ones only) and the first bar it may
trade on (its warm-up). Vectorised: one pass of NumPy/TA-Lib over the whole history.

``sma_cross`` is backtesting.py's ``SmaCross`` example: SMA(fast) crossing above SMA(slow) goes
long, crossing below goes short, each closing the previous position; a cross is strict on both
bars (``fast[i-1] < slow[i-1] and fast[i] > slow[i]``), and trading starts once every indicator
has a value on the previous bar (``start = max(fast, slow)``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from api.errors import ApplicationError

from .engine import FLAT, KEEP, LONG, SHORT


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    integer: bool = True
    help: str = ""


@dataclass(frozen=True)
class Strategy:
    name: str
    title: str
    params: dict[str, Param]
    signal: Callable[..., tuple[np.ndarray, int]]
    check: Callable[[dict], str | None] = lambda p: None

    def resolve(self, given: dict | None) -> dict:
        """The full parameter set: defaults overlaid with ``given`` (validated)."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ApplicationError(
                "unknown_param",
                f"{self.name} has no parameter {', '.join(unknown)}; it takes {', '.join(self.params)}.",
                {"unknown": unknown, "params": list(self.params)},
            )
        out, problems = {}, {}
        for name, spec in self.params.items():
            value = given.get(name, spec.default)
            try:
                value = float(value)
            except (TypeError, ValueError):
                problems[name] = f"must be a number, got {value!r}"
                continue
            if spec.integer:
                if value != int(value):
                    problems[name] = f"must be a whole number, got {value:g}"
                    continue
                value = int(value)
            if not spec.low <= value <= spec.high:
                problems[name] = f"must be between {spec.low:g} and {spec.high:g}, got {value:g}"
                continue
            out[name] = value
        if not problems and (why := self.check(out)):
            problems["params"] = why
        if problems:
            raise ApplicationError(
                "invalid_param",
                f"Invalid {self.name} parameters: " + "; ".join(f"{k} {v}" for k, v in problems.items()),
                problems,
            )
        return out

    def run(self, bars: pd.DataFrame, params: dict) -> tuple[np.ndarray, int]:
        target, start = self.signal(bars, **params)
        if start >= len(bars) - 1:
            raise ApplicationError(
                "too_few_bars",
                f"{self.name} with {params} needs more than {start + 1} bars to trade (its warm-up); "
                f"got {len(bars)}. Load a longer history or use shorter periods.",
                {"bars": len(bars), "warmup": start + 1},
            )
        return target, start


def _sma(values: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(values).rolling(n).mean().to_numpy()


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """At each bar: ``a`` crossed above ``b`` (strictly below on the previous bar, strictly above now)."""
    out = np.zeros(len(a), dtype=bool)
    with np.errstate(invalid="ignore"):
        out[1:] = (a[:-1] < b[:-1]) & (a[1:] > b[1:])
    return out


def _first_valid(*arrays: np.ndarray) -> int:
    """Index of the first bar where every array has a value."""
    first = 0
    for a in arrays:
        valid = np.flatnonzero(~np.isnan(a))
        first = max(first, int(valid[0]) if valid.size else len(a))  # never valid: past the end
    return first


def _crossing(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, int]:
    target = np.full(len(fast), KEEP, dtype=np.int8)
    target[_cross(slow, fast)] = SHORT
    target[_cross(fast, slow)] = LONG
    return target, 1 + _first_valid(fast, slow)


def sma_cross(bars: pd.DataFrame, *, fast: int, slow: int) -> tuple[np.ndarray, int]:
    close = bars["close"].to_numpy(dtype=np.float64)
    return _crossing(_sma(close, fast), _sma(close, slow))


def ema_cross(bars: pd.DataFrame, *, fast: int, slow: int) -> tuple[np.ndarray, int]:
    import talib

    close = bars["close"].to_numpy(dtype=np.float64)
    return _crossing(talib.EMA(close, fast), talib.EMA(close, slow))


def macd_cross(bars: pd.DataFrame, *, fast: int, slow: int, signal: int) -> tuple[np.ndarray, int]:
    import talib

    line, sig, _ = talib.MACD(bars["close"].to_numpy(dtype=np.float64), fast, slow, signal)
    return _crossing(line, sig)


def rsi_reversion(
    bars: pd.DataFrame, *, length: int, lower: float, upper: float, exit: float
) -> tuple[np.ndarray, int]:
    """Long when RSI closes below ``lower``, short above ``upper``; flat when it crosses ``exit``."""
    import talib

    rsi = talib.RSI(bars["close"].to_numpy(dtype=np.float64), length)
    level = np.full(len(rsi), exit)
    target = np.full(len(rsi), KEEP, dtype=np.int8)
    target[_cross(rsi, level) | _cross(level, rsi)] = FLAT
    with np.errstate(invalid="ignore"):
        target[rsi < lower] = LONG
        target[rsi > upper] = SHORT
    return target, 1 + _first_valid(rsi)


def bollinger_breakout(bars: pd.DataFrame, *, length: int, std: float) -> tuple[np.ndarray, int]:
    """Long on a close above the upper band, short below the lower; flat when it crosses the middle."""
    import talib

    close = bars["close"].to_numpy(dtype=np.float64)
    up, mid, low = talib.BBANDS(close, length, std, std)
    target = np.full(len(close), KEEP, dtype=np.int8)
    target[_cross(close, mid) | _cross(mid, close)] = FLAT
    with np.errstate(invalid="ignore"):
        target[close > up] = LONG
        target[close < low] = SHORT
    return target, 1 + _first_valid(up, low)


def _fast_below_slow(p: dict) -> str | None:
    return None if p["fast"] < p["slow"] else f"fast ({p['fast']}) must be shorter than slow ({p['slow']})"


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "sma_cross",
            "SMA crossover (long above, short below)",
            {"fast": Param(10, 1, 10_000), "slow": Param(20, 2, 10_000)},
            sma_cross,
            _fast_below_slow,
        ),
        Strategy(
            "ema_cross",
            "EMA crossover (long above, short below)",
            {"fast": Param(12, 2, 10_000), "slow": Param(26, 3, 10_000)},
            ema_cross,
            _fast_below_slow,
        ),
        Strategy(
            "macd",
            "MACD line crossing its signal line",
            {"fast": Param(12, 2, 1_000), "slow": Param(26, 3, 1_000), "signal": Param(9, 2, 1_000)},
            macd_cross,
            _fast_below_slow,
        ),
        Strategy(
            "rsi_reversion",
            "RSI mean reversion (long oversold, short overbought, flat at the exit level)",
            {
                "length": Param(14, 2, 1_000),
                "lower": Param(30, 1, 99, integer=False),
                "upper": Param(70, 1, 99, integer=False),
                "exit": Param(50, 1, 99, integer=False),
            },
            rsi_reversion,
            lambda p: None if p["lower"] < p["exit"] < p["upper"] else "needs lower < exit < upper",
        ),
        Strategy(
            "bollinger_breakout",
            "Bollinger breakout (long above the upper band, short below the lower, flat at the middle)",
            {"length": Param(20, 2, 10_000), "std": Param(2.0, 0.1, 10, integer=False)},
            bollinger_breakout,
        ),
    )
}


def strategy_get(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ApplicationError(
            "unknown_strategy",
            f"No strategy '{name}'; built-ins: {', '.join(STRATEGIES)}.",
            {"strategies": list(STRATEGIES)},
        ) from None
