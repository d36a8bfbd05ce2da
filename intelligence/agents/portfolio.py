"""Portfolio allocation across instruments: risk parity, inverse volatility, mean-variance.

This is not a per-bar voter: allocation is a function of a returns matrix (rows = periods,
columns = instruments) run when the tenant asks for suggestions. Covariances are shrunk toward
their diagonal (``shrinkage``) because a sample covariance of a few hundred rows makes
mean-variance chase noise. The :class:`PortfolioAgent` only enforces a stored allocation per bar:
given ``settings["weights"]`` (symbol -> target weight, as :func:`allocate` returns) it caps a
trade's size at the instrument's target weight, and abstains for instruments without one.
"""

from __future__ import annotations

import numpy as np

from api.errors import ApplicationError
from intelligence.agents.base import Agent, Context, Vote, abstain, register

METHODS = ("risk_parity", "inverse_volatility", "mean_variance")


def _returns(returns) -> np.ndarray:
    r = np.asarray(returns, dtype=float)
    if r.ndim != 2 or r.shape[1] < 1 or r.shape[0] < 3:
        raise ApplicationError(
            "invalid_returns", "Returns must be a matrix of at least 3 periods (rows) x 1 instrument (columns)."
        )
    if not np.isfinite(r).all():
        raise ApplicationError("invalid_returns", "Returns contain NaN or infinite values.")
    if (r.std(axis=0, ddof=1) == 0).any():
        raise ApplicationError("invalid_returns", "An instrument has constant returns; its risk is undefined.")
    return r


def covariance(returns, shrinkage: float = 0.1) -> np.ndarray:
    r = _returns(returns)
    cov = np.atleast_2d(np.cov(r, rowvar=False))
    return (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))


def inverse_volatility(returns) -> np.ndarray:
    """Weights proportional to 1 / sigma: equal risk when instruments are uncorrelated."""
    vol = _returns(returns).std(axis=0, ddof=1)
    w = 1.0 / vol
    return w / w.sum()


def risk_parity(returns, shrinkage: float = 0.1, tol: float = 1e-10, max_iter: int = 500) -> np.ndarray:
    """Equal risk contribution (long only, sum 1): ``w_i (C w)_i`` equal for every i.

    Solved by the cyclical coordinate method of Griveau-Billion et al. on the convex problem
    ``min 1/2 w'Cw - sum(log w)``, whose minimiser normalised to sum 1 is the ERC portfolio."""
    cov = covariance(returns, shrinkage)
    n = cov.shape[0]
    w = 1.0 / np.sqrt(np.diag(cov))
    for _ in range(max_iter):
        prev = w.copy()
        for i in range(n):
            b = cov[i] @ w - cov[i, i] * w[i]
            w[i] = (-b + np.sqrt(b * b + 4 * cov[i, i])) / (2 * cov[i, i])
        if np.max(np.abs(w - prev)) < tol * np.max(np.abs(w)):
            break
    return w / w.sum()


def _project_simplex(v: np.ndarray, cap: float) -> np.ndarray:
    """Euclidean projection onto {w >= 0, w <= cap, sum w = 1} by bisection on the shift."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.clip(v - mid, 0.0, cap).sum() > 1.0:
            lo = mid
        else:
            hi = mid
    return np.clip(v - hi, 0.0, cap)


def mean_variance(returns, risk_aversion: float = 5.0, max_weight: float = 1.0, shrinkage: float = 0.1) -> np.ndarray:
    """Long-only ``max mu'w - (risk_aversion / 2) w'Cw`` with sum 1 and ``w <= max_weight``
    (projected gradient ascent; the problem is concave so it converges to the optimum)."""
    r = _returns(returns)
    n = r.shape[1]
    if risk_aversion <= 0 or not 1.0 / n <= max_weight <= 1.0:
        raise ApplicationError(
            "invalid_allocation", f"risk_aversion must be > 0 and max_weight in [1/{n}, 1] for {n} instruments."
        )
    mu = r.mean(axis=0)
    cov = covariance(r, shrinkage)
    step = 1.0 / (risk_aversion * np.linalg.eigvalsh(cov).max())
    w = np.full(n, 1.0 / n)
    for _ in range(2000):
        nxt = _project_simplex(w + step * (mu - risk_aversion * cov @ w), max_weight)
        if np.max(np.abs(nxt - w)) < 1e-12:
            w = nxt
            break
        w = nxt
    return w / w.sum()


def allocate(returns, symbols: list[str], method: str = "risk_parity", **options) -> dict[str, float]:
    """Suggested weights by symbol (sum 1). ``options`` go to the method (e.g. ``risk_aversion``)."""
    r = _returns(returns)
    if len(symbols) != r.shape[1] or len(set(symbols)) != len(symbols):
        raise ApplicationError("invalid_allocation", "Give one distinct symbol per returns column.")
    funcs = {"risk_parity": risk_parity, "inverse_volatility": inverse_volatility, "mean_variance": mean_variance}
    if method not in funcs:
        raise ApplicationError("invalid_allocation", f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    try:
        w = funcs[method](r, **options)
    except TypeError as exc:
        raise ApplicationError("invalid_allocation", f"Bad options for {method}: {exc}") from exc
    return dict(zip(symbols, (float(x) for x in w), strict=True))


@register
class PortfolioAgent(Agent):
    name = "portfolio"
    tier = "advanced"
    directional = False
    summary = "allocation across instruments (risk parity / mean-variance); caps a trade at the target weight"
    required_features = ()
    default_settings = {"weights": {}, "gross": 1.0}

    def vote(self, ctx: Context) -> Vote:
        p = self.params(ctx)
        weights = p["weights"] or {}
        target = weights.get(ctx.symbol)
        if target is None:
            return abstain("no allocation for this instrument")
        cap = max(0.0, float(target) * p["gross"])
        return Vote("HOLD", 0.0, f"target weight {cap:.3f} of equity", {"target_weight": cap}, size_cap=cap)
