"""Parameter sweeps: every combination of a grid backtested on the first part of the bars, ranked
by a metric, with what selection does to that ranking said out loud.

Trying many combinations and keeping the best inflates its in-sample figures; two answers are
reported next to the ranking. The **holdout**: the best combination, chosen on the first
``1 - holdout`` of the bars, is run once on the rest, next to buy & hold there. The **deflated
Sharpe ratio** (Bailey & López de Prado, 2014): the probability that the best in-sample Sharpe
beats the best one expected from that many trials of a strategy with no skill, given the trials'
spread and the returns' skew and fat tails.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from api.errors import ApplicationError

from .engine import BrokerConfig, run
from .stats import compute
from .strategies import strategy_get

SEARCHES = ("grid", "optuna")
METRICS = ("sharpe", "sortino", "calmar", "return_pct", "equity_final", "profit_factor", "sqn", "win_rate_pct")
MAX_COMBINATIONS = 1_000
HOLDOUT = 0.3  # the latest share of the bars kept out of the search
EULER = 0.5772156649015329


def deflated_sharpe(best_returns: np.ndarray, trial_sharpes: np.ndarray) -> float | None:
    """P(true Sharpe > the best expected by luck among ``len(trial_sharpes)`` trials), per-bar units."""
    r = best_returns[np.isfinite(best_returns)]
    n = len(trial_sharpes)
    if len(r) < 3 or n < 2 or r.std(ddof=1) == 0:
        return None
    sr = r.mean() / r.std(ddof=1)
    var = float(np.var(trial_sharpes, ddof=1))
    sr0 = math.sqrt(var) * (
        (1 - EULER) * sps.norm.ppf(1 - 1 / n) + EULER * sps.norm.ppf(1 - 1 / (n * math.e))
    )  # expected maximum of n unskilled Sharpe estimates
    skew, kurt = float(sps.skew(r)), float(sps.kurtosis(r, fisher=False))
    denom = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    if denom <= 0:
        return None
    return float(sps.norm.cdf((sr - sr0) * math.sqrt(len(r) - 1) / math.sqrt(denom)))


def _grid(strategy, grid: dict[str, list]) -> list[dict]:
    unknown = sorted(set(grid) - set(strategy.params))
    if unknown:
        raise ApplicationError(
            "unknown_param",
            f"{strategy.name} has no parameter {', '.join(unknown)}; it takes {', '.join(strategy.params)}.",
            {"unknown": unknown},
        )
    if not grid or any(not isinstance(v, list | tuple) or not v for v in grid.values()):
        raise ApplicationError("invalid_grid", "A grid gives each swept parameter a non-empty list of values.")
    names = list(grid)
    count = math.prod(len(grid[n]) for n in names)
    if count > MAX_COMBINATIONS:
        raise ApplicationError(
            "invalid_grid", f"{count} combinations; sweep at most {MAX_COMBINATIONS} (coarsen the grid).",
            {"combinations": count, "limit": MAX_COMBINATIONS},
        )  # fmt: skip
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def _check(*, metric: str, search: str, holdout: float) -> None:
    if metric not in METRICS:
        raise ApplicationError("invalid_metric", f"metric is one of {', '.join(METRICS)}.", {"metrics": METRICS})
    if search not in SEARCHES:
        raise ApplicationError("invalid_search", f"search is one of {', '.join(SEARCHES)}.")
    if not 0 <= holdout < 0.9:
        raise ApplicationError("invalid_holdout", "holdout is the share of the latest bars kept out, 0-0.9.")


def sweep_check(
    bars: pd.DataFrame, *, strategy: str, grid: dict, metric: str, base: dict | None = None,
    search: str = "grid", n_trials: int = 100,
) -> None:  # fmt: skip
    """What a sweep request can be refused for before it runs: the strategy, metric, search and
    grid, and at least one combination whose warm-up fits the in-sample bars."""
    s = strategy_get(strategy)
    _check(metric=metric, search=search, holdout=HOLDOUT)
    if search == "optuna":
        _space(s, grid, n_trials)
        candidates = [{k: v[0] for k, v in grid.items()}, {k: v[1] for k, v in grid.items()}]
    else:
        candidates = _grid(s, grid)
    reasons = []
    for combo in candidates:
        try:
            s.run(bars.iloc[: int(len(bars) * (1 - HOLDOUT))], s.resolve({**(base or {}), **combo}))
            return
        except ApplicationError as exc:
            reasons.append(exc.message)
    raise ApplicationError("invalid_grid", "No combination of the grid is valid on these bars: " + reasons[0],
                           {"reasons": reasons[:5]})  # fmt: skip


def sweep(
    bars: pd.DataFrame, *, strategy: str, grid: dict[str, list], broker: BrokerConfig | None = None,
    metric: str = "sharpe", holdout: float = HOLDOUT, base: dict | None = None, progress=None,
    search: str = "grid", n_trials: int = 100, seed: int = 0,
) -> dict:  # fmt: skip
    """``search="grid"``: every combination of ``grid`` (lists of values). ``search="optuna"``: a
    seeded TPE search of ``n_trials`` over ``grid`` read as ``[low, high]`` ranges."""
    s = strategy_get(strategy)
    _check(metric=metric, search=search, holdout=holdout)
    broker = broker or BrokerConfig()
    split = int(len(bars) * (1 - holdout))
    train, test = bars.iloc[:split], bars.iloc[split:]
    rows, skipped, sharpes, returns = [], [], [], {}
    seen: dict[tuple, dict | None] = {}

    def evaluate(combo: dict) -> dict | None:
        key = tuple(sorted(combo.items()))
        if key in seen:
            return seen[key]
        try:
            params = s.resolve({**(base or {}), **combo})
            target, start = s.run(train, params)
        except ApplicationError as exc:
            skipped.append({"params": combo, "reason": exc.message})
            seen[key] = None
            return None
        result = run(train, target, broker, start=start)
        st = compute(result, train, start=start, mc_runs=0)
        eq = result.equity.to_numpy()
        bar_returns = np.diff(eq[start:]) / eq[start:-1]
        sd = bar_returns.std(ddof=1) if len(bar_returns) > 1 else 0.0
        sharpes.append(bar_returns.mean() / sd if sd > 0 else 0.0)
        returns[len(rows)] = bar_returns
        row = {"params": params, **{m: st[m] for m in METRICS}, "trades": st["trades"]}
        rows.append(row)
        seen[key] = row
        return row

    if search == "grid":
        combos = _grid(s, grid)
        for i, combo in enumerate(combos):
            evaluate(combo)
            if progress and (i % 10 == 0 or i == len(combos) - 1):
                progress(int((i + 1) / len(combos) * 100), f"{i + 1}/{len(combos)} combinations")
        tried = len(combos)
    else:
        tried = _optuna(s, grid, evaluate, metric=metric, n_trials=n_trials, seed=seed, progress=progress)
    if not rows:
        raise ApplicationError(
            "invalid_grid", "No combination of the grid is valid on these bars.", {"skipped": skipped}
        )
    order = sorted(range(len(rows)), key=lambda k: -math.inf if rows[k][metric] is None else rows[k][metric],
                   reverse=True)  # fmt: skip
    ranked = [rows[k] for k in order]
    best = ranked[0]
    out = {
        "strategy": s.name, "metric": metric, "search": search, "combinations": tried, "tested": len(rows),
        "skipped": skipped,
        "in_sample": {"start": train.index[0].isoformat(), "end": train.index[-1].isoformat(), "bars": len(train)},
        "ranking": ranked, "best": best,
        "deflated_sharpe": deflated_sharpe(returns[order[0]], np.asarray(sharpes)),
        "heatmap": _heatmap(rows, list(grid), metric),
    }  # fmt: skip
    if holdout and len(test) > 1:
        try:
            target, start = s.run(test, best["params"])
        except ApplicationError as exc:
            out["holdout"] = {"error": exc.message}
        else:
            result = run(test, target, broker, start=start)
            st = compute(result, test, start=start, mc_runs=0)
            out["holdout"] = {
                "start": test.index[0].isoformat(),
                "end": test.index[-1].isoformat(),
                "bars": len(test),
                **{m: st[m] for m in METRICS},
                "buy_and_hold_return_pct": st["buy_and_hold_return_pct"],
                "trades": st["trades"],
            }
    out["warning"] = _warning(out)
    return out


def _space(s, space: dict, n_trials: int) -> None:
    """An Optuna search's ranges ({param: [low, high]}) and trial count, checked."""
    unknown = sorted(set(space) - set(s.params))
    if unknown:
        raise ApplicationError(
            "unknown_param", f"{s.name} has no parameter {', '.join(unknown)}; it takes {', '.join(s.params)}.",
            {"unknown": unknown},
        )  # fmt: skip
    bad = [k for k, v in space.items() if not (isinstance(v, list | tuple) and len(v) == 2 and v[0] < v[1])]
    if not space or bad:
        raise ApplicationError(
            "invalid_grid", "An Optuna search gives each parameter a range [low, high] with low < high.",
            {"parameters": bad},
        )  # fmt: skip
    if not 1 <= n_trials <= MAX_COMBINATIONS:
        raise ApplicationError("invalid_grid", f"n_trials is 1-{MAX_COMBINATIONS}.")


def _optuna(s, space: dict, evaluate, *, metric: str, n_trials: int, seed: int, progress) -> int:
    """A seeded TPE search over ``space`` ({param: [low, high]}); returns the trials run."""
    import optuna

    _space(s, space, n_trials)

    def objective(trial) -> float:
        combo = {
            k: trial.suggest_int(k, int(lo), int(hi)) if s.params[k].integer else trial.suggest_float(k, lo, hi)
            for k, (lo, hi) in space.items()
        }
        row = evaluate(combo)
        if row is None:
            raise optuna.TrialPruned
        if progress and (trial.number % 10 == 0 or trial.number == n_trials - 1):
            progress(int((trial.number + 1) / n_trials * 100), f"{trial.number + 1}/{n_trials} trials")
        return -1e18 if row[metric] is None else float(row[metric])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    return n_trials


def _heatmap(rows: list[dict], names: list[str], metric: str) -> dict | None:
    """The metric over the first two swept parameters (the best over any others)."""
    if len(names) < 2:
        return None
    a, b = names[:2]
    xs = sorted({r["params"][a] for r in rows})
    ys = sorted({r["params"][b] for r in rows})
    cells = [[None] * len(ys) for _ in xs]
    for r in rows:
        i, j, v = xs.index(r["params"][a]), ys.index(r["params"][b]), r[metric]
        if v is not None and (cells[i][j] is None or v > cells[i][j]):
            cells[i][j] = v
    return {"x": a, "y": b, "x_values": xs, "y_values": ys, "values": cells}


def _warning(out: dict) -> str:
    n, best, metric = out["tested"], out["best"], out["metric"]
    parts = [f"{n} combinations were tried and the best by {metric} kept: its in-sample figures are inflated by "
             "that selection."]  # fmt: skip
    dsr = out["deflated_sharpe"]
    if dsr is not None:
        parts.append(
            f"Deflated Sharpe: {dsr:.2f} probability that it beats luck"
            + (" (below 0.95: not evidence of skill)." if dsr < 0.95 else ".")
        )
    h = out.get("holdout")
    if h and "error" not in h:
        parts.append(
            f"On the held-out last {h['bars']} bars it returned {h['return_pct']:.2f} % "
            f"(buy & hold {h['buy_and_hold_return_pct']:.2f} %; in-sample {best['return_pct']:.2f} %)."
        )
    return " ".join(parts)
