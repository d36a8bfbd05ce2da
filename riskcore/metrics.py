"""Risk figures over a return series: pure NumPy, no I/O, each one hand-checked in
tests/riskcore/test_metrics.py.

Conventions (stated in every API answer under ``method``):

- returns are simple returns ``close[t] / close[t-1] - 1``;
- VaR and CVaR are reported as positive *losses* (a fraction of value) over one bar;
- historical VaR at level ``c`` is the loss at the ``1 - c`` empirical quantile (linear
  interpolation, NumPy's default), CVaR the mean loss of returns at or below that quantile;
- parametric VaR is Gaussian: ``-(mu + z * sigma)`` with ``z = Phi^-1(1 - c)``, CVaR
  ``-(mu - sigma * phi(z) / (1 - c))``; sigma is the sample standard deviation (ddof=1);
- volatility is annualised with ``sqrt(periods_per_year)``;
- beta is ``cov(r, r_b) / var(r_b)`` over the bars both series share;
- max drawdown is the largest fall from a running peak of the close, as a positive fraction;
- Amihud illiquidity is the mean of ``|r_t| / (close_t * volume_t)`` times 1e6 (per million of
  dollar volume).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

LEVELS = (0.95, 0.99)
_N = NormalDist()


def simple_returns(close: np.ndarray) -> np.ndarray:
    close = np.asarray(close, dtype="float64")
    if close.size < 2:
        return np.empty(0)
    return close[1:] / close[:-1] - 1.0


def periods_per_year(seconds: int, *, asset_class: str = "other") -> float:
    """Bars in a year: 252 trading days for equities, indices and futures (a day bar is a
    session); 365 calendar days for crypto, FX and anything else (markets that never close)."""
    days = 252 if asset_class in ("equity", "index", "future") else 365
    return days * 86400 / seconds


def volatility(returns: np.ndarray, *, periods: float) -> float | None:
    if returns.size < 2:
        return None
    return float(np.std(returns, ddof=1) * math.sqrt(periods))


def historical_var(returns: np.ndarray, level: float) -> tuple[float, float] | None:
    """(VaR, CVaR) as positive losses from the empirical distribution."""
    if returns.size < 2:
        return None
    q = float(np.quantile(returns, 1.0 - level))
    tail = returns[returns <= q]
    return -q, float(-tail.mean())


def parametric_var(returns: np.ndarray, level: float) -> tuple[float, float] | None:
    if returns.size < 2:
        return None
    mu, sigma = float(returns.mean()), float(np.std(returns, ddof=1))
    z = _N.inv_cdf(1.0 - level)
    var = -(mu + z * sigma)
    cvar = -(mu - sigma * _N.pdf(z) / (1.0 - level))
    return var, cvar


def beta(returns: np.ndarray, benchmark: np.ndarray) -> float | None:
    if returns.size < 2 or returns.size != benchmark.size:
        return None
    vb = float(np.var(benchmark, ddof=1))
    if vb == 0.0:
        return None
    return float(np.cov(returns, benchmark, ddof=1)[0, 1] / vb)


def drawdown_series(close: np.ndarray) -> np.ndarray:
    """The drawdown at every bar (0 at a new high, -0.25 when 25 % below the running peak)."""
    close = np.asarray(close, dtype="float64")
    if close.size == 0:
        return close
    peak = np.maximum.accumulate(close)
    return close / peak - 1.0


def max_drawdown(close: np.ndarray) -> float | None:
    dd = drawdown_series(close)
    return float(-dd.min()) if dd.size else None


def liquidity(close: np.ndarray, volume: np.ndarray) -> dict:
    close = np.asarray(close, dtype="float64")
    volume = np.asarray(volume, dtype="float64")
    dollar = close * volume
    out = {"avg_dollar_volume": float(dollar.mean()) if dollar.size else None, "amihud_illiquidity": None}
    if close.size >= 2:
        r = np.abs(simple_returns(close))
        dv = dollar[1:]
        ok = dv > 0
        if ok.any():
            out["amihud_illiquidity"] = float((r[ok] / dv[ok]).mean() * 1e6)
    return out


def risk_figures(
    close: np.ndarray, volume: np.ndarray, *, periods: float, benchmark_returns: np.ndarray | None = None
) -> dict:
    """Every figure for one close/volume series (benchmark returns already aligned to it)."""
    r = simple_returns(close)
    out: dict = {
        "observations": int(r.size),
        "volatility": volatility(r, periods=periods),
        "volatility_per_bar": float(np.std(r, ddof=1)) if r.size >= 2 else None,
        "mean_return_per_bar": float(r.mean()) if r.size else None,
        "var": {},
        "max_drawdown": max_drawdown(close),
        "liquidity": liquidity(close, volume),
        "beta": beta(r, benchmark_returns) if benchmark_returns is not None else None,
    }
    for level in LEVELS:
        h, p = historical_var(r, level), parametric_var(r, level)
        out["var"][f"{round(level * 100)}"] = {
            "historical_var": h[0] if h else None,
            "historical_cvar": h[1] if h else None,
            "parametric_var": p[0] if p else None,
            "parametric_cvar": p[1] if p else None,
        }
    return out
