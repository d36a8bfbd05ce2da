"""A seeded synthetic market: the demo's sample data and the tests' ground truth.

Nothing is downloaded: the same seed always gives the same bars. The model is simple but has what
makes real series hard: regimes (a hidden Markov chain of bull / bear / sideways drift), volatility
clustering (GARCH(1,1) shocks with fat tails), and consistent OHLCV (high ≥ max(open, close),
low ≤ min(open, close), volume rising with |return|).

``planted_signal`` adds a known, learnable edge for tests of the ML pipeline: the sign of a bar's
return follows the sign of the return ``planted_lag`` bars earlier with probability
``0.5 + planted_signal`` (momentum). With lag 1 the naive persistence baseline ("tomorrow like
today") captures the whole edge; with lag 2 or more only a model that looks further back does.
With ``planted_signal=0`` nothing beats a coin, which honest models must say.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .models import TIMEFRAME_SECONDS

REGIMES = {  # annualised drift, volatility multiplier
    "bull": (0.35, 0.9),
    "bear": (-0.45, 1.4),
    "sideways": (0.0, 0.7),
}
# per-bar probability of staying in the regime is derived from the mean regime length in days
_MEAN_REGIME_DAYS = 60


def generate_bars(n: int, **kwargs) -> pd.DataFrame:
    """``n`` consecutive bars (no gaps) as a DataFrame indexed by open time (UTC)."""
    return generate_market(n, **kwargs)[0]


def generate_market(
    n: int,
    *,
    timeframe: str = "1d",
    seed: int = 0,
    start: str | pd.Timestamp = "2020-01-01",
    start_price: float = 100.0,
    annual_vol: float = 0.5,
    planted_signal: float = 0.0,
    planted_lag: int = 1,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The bars and the regime name of each bar (the hidden truth a regime agent can be tested on)."""
    if timeframe not in TIMEFRAME_SECONDS:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    if not 0 <= planted_signal < 0.5:
        raise ValueError("planted_signal is a probability edge in [0, 0.5)")
    rng = np.random.default_rng(seed)
    step = TIMEFRAME_SECONDS[timeframe]
    per_year = 365 * 86400 / step
    bar_vol = annual_vol / np.sqrt(per_year)

    # regimes: a 3-state Markov chain
    names = list(REGIMES)
    stay = 1 - step / (_MEAN_REGIME_DAYS * 86400)
    regime = np.empty(n, dtype=np.int8)
    state = rng.integers(3)
    switches = rng.random(n)
    picks = rng.integers(0, 2, n)
    for i in range(n):
        if switches[i] > stay:
            state = [s for s in range(3) if s != state][picks[i]]
        regime[i] = state
    drift = np.array([REGIMES[names[s]][0] for s in range(3)])[regime] / per_year
    vol_mult = np.array([REGIMES[names[s]][1] for s in range(3)])[regime]

    # GARCH(1,1) variance with Student-t shocks (df=5, unit variance)
    omega, alpha, beta = 0.02, 0.08, 0.9  # persistence 0.98; long-run variance omega / (1 - 0.98) = 1
    shocks = rng.standard_t(5, n) / np.sqrt(5 / 3)
    var = np.empty(n)
    ret = np.empty(n)
    v = 1.0
    prev = 0.0
    for i in range(n):
        v = omega + alpha * prev**2 + beta * v
        var[i] = v
        prev = shocks[i] * np.sqrt(v)
    ret = drift + bar_vol * vol_mult * shocks * np.sqrt(var)
    if planted_signal > 0:
        follow = rng.random(n) < 0.5 + planted_signal
        for i in range(planted_lag, n):
            same = np.sign(ret[i]) == np.sign(ret[i - planted_lag])
            if same != follow[i]:
                ret[i] = -ret[i]

    close = start_price * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[start_price], close[:-1]]) * np.exp(rng.normal(0, bar_vol * 0.05, n))
    span = np.abs(rng.normal(0, bar_vol * vol_mult * np.sqrt(var), (2, n)))
    high = np.maximum(open_, close) * np.exp(span[0] * 0.6)
    low = np.minimum(open_, close) * np.exp(-span[1] * 0.6)
    volume = np.round(1e6 * (1 + 25 * np.abs(ret) / max(bar_vol, 1e-12) * 0.04) * rng.lognormal(0, 0.3, n), 2)

    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    start_ts = start_ts.floor(f"{step}s")
    index = pd.DatetimeIndex(start_ts + pd.to_timedelta(np.arange(n) * step, unit="s"), name="ts")
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    return frame, np.array(names)[regime]


def as_csv(frame: pd.DataFrame) -> str:
    """The import format: timestamp,open,high,low,close,volume with ISO 8601 UTC timestamps."""
    out = frame.copy()
    out.index = out.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.index.name = "timestamp"
    return out.to_csv()  # shortest round-trip repr: reading it back gives the same floats
