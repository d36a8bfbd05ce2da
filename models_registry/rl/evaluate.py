"""Walk-forward, out of sample: the policy answering each test block was trained only on bars
before it, then acts greedily on the block from flat. Its net returns are compared, on exactly the
same bars, with buy & hold (long from the block's first bar, entry fee paid) and flat. The policy
"has an edge" only if its OOS return beats the BEST baseline AND the per-bar excess over that
baseline is significant (one-sided t-test, p < 0.05); anything else is ``no_edge: True``.

No lookahead: a training environment ends at the test block's first bar ``a`` (its last reward
uses ``close[a]``), the state spec (return scale, feature mean/deviation) is fitted on bars
``<= a`` only, and test rewards start with ``close[a+1] / close[a]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.stats import ttest_1samp

from ..ml.report import clean
from .agents import Policy, run_policy, train
from .env import POSITION_SETS, StateSpec, TradingEnv

ALPHA = 0.05
CURVE_POINTS = 200


def _equity(r: np.ndarray) -> np.ndarray:
    return np.cumprod(1.0 + r)


def _stats(r: np.ndarray, periods_per_year: float) -> dict:
    eq = _equity(r)
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    sd = float(np.std(r))
    return {
        "total_return": float(eq[-1] - 1.0) if r.size else 0.0,
        "mean_bar_return": float(np.mean(r)) if r.size else 0.0,
        "sharpe": float(np.mean(r) / sd * np.sqrt(periods_per_year)) if sd > 0 else None,
        "max_drawdown": float(np.max(1.0 - eq / peak)) if r.size else 0.0,
    }


def _thin(x: np.ndarray, points: int = CURVE_POINTS) -> list[float]:
    if x.size <= points:
        return x.tolist()
    idx = np.unique(np.linspace(0, x.size - 1, points).round().astype(int))
    return x[idx].tolist()


def fit(
    close: np.ndarray,
    features: np.ndarray | None,
    names: list[str],
    *,
    algo: str,
    positions: str = "long_short",
    fee_bps: float = 10.0,
    episodes: int = 20,
    seed: int = 0,
    n_lags: int = 2,
    start: int | None = None,
    end: int | None = None,
    on_episode: Callable[[int, float], None] | None = None,
) -> tuple[Policy, list[float]]:
    """Train on bars ``start .. end`` (state spec fitted on bars ``<= end`` only)."""
    end = len(close) - 1 if end is None else end
    start = n_lags if start is None else max(start, n_lags)
    spec = StateSpec.fit(close[: end + 1], None if features is None else features[: end + 1], names, n_lags)
    market = spec.market_states(close, features)
    env = TradingEnv(close, market, positions=POSITION_SETS[positions], fee_bps=fee_bps, start=start, end=end)
    return train(algo, env, spec, episodes=episodes, seed=seed, on_episode=on_episode)


def walk_forward(
    close: np.ndarray,
    features: np.ndarray | None = None,
    names: list[str] | None = None,
    *,
    algo: str,
    positions: str = "long_short",
    fee_bps: float = 10.0,
    episodes: int = 20,
    seed: int = 0,
    n_lags: int = 2,
    folds: int = 4,
    min_train: float = 0.5,
    periods_per_year: float = 252.0,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[Policy, dict]:
    """The deployable policy (trained on all bars) and the honest report."""
    close = np.asarray(close, dtype=np.float64)
    names = list(names or [])
    n = close.size
    first = int(n * min_train)
    if n < 200 or first < 100:
        raise ValueError("walk-forward needs at least 200 bars")
    bounds = np.linspace(first, n - 1, folds + 1).round().astype(int)
    total_units = (folds + 1) * episodes
    done_units = [0]

    def tick(_ep, _reward):
        done_units[0] += 1
        if progress:
            progress(done_units[0] / total_units, f"episode {done_units[0]}/{total_units}")

    t0 = time.monotonic()
    rl, bh, flat, pos_all, fold_rows = [], [], [], [], []
    for k in range(folds):
        a, b = int(bounds[k]), int(bounds[k + 1])
        policy, _ = fit(close, features, names, algo=algo, positions=positions, fee_bps=fee_bps,
                        episodes=episodes, seed=seed + k, n_lags=n_lags, end=a, on_episode=tick)  # fmt: skip
        env = TradingEnv(
            close, policy.spec.market_states(close, features), positions=policy.positions, fee_bps=fee_bps,
            start=a, end=b,
        )  # fmt: skip
        r, pos = run_policy(policy, env)
        hold = env.next_ret[a:b].copy()
        hold[0] -= env.fee  # entering the position
        rl.append(r)
        bh.append(hold)
        flat.append(np.zeros_like(r))
        pos_all.append(pos)
        fold_rows.append({"train_end": a, "test": [a, b], "rl": _stats(r, periods_per_year),
                          "buy_and_hold": _stats(hold, periods_per_year)})  # fmt: skip
    r, hold, zero, pos = np.concatenate(rl), np.concatenate(bh), np.concatenate(flat), np.concatenate(pos_all)
    baselines = {"buy_and_hold": _stats(hold, periods_per_year), "flat": _stats(zero, periods_per_year)}
    best = max(baselines, key=lambda k: baselines[k]["total_return"])
    excess = r - (hold if best == "buy_and_hold" else zero)
    if excess.size > 2 and np.std(excess) > 0:
        test = ttest_1samp(excess, 0.0, alternative="greater")
        p_value, t_stat = float(test.pvalue), float(test.statistic)
    else:
        p_value, t_stat = 1.0, None
    oos = _stats(r, periods_per_year)
    beats = oos["total_return"] > baselines[best]["total_return"]
    no_edge = not (beats and p_value < ALPHA)
    wf_seconds = time.monotonic() - t0

    final, curve = fit(close, features, names, algo=algo, positions=positions, fee_bps=fee_bps,
                       episodes=episodes, seed=seed, n_lags=n_lags, on_episode=tick)  # fmt: skip
    changes = np.abs(np.diff(np.concatenate([[0], pos])))
    report = {
        "kind": "rl",
        "algo": algo,
        "positions": positions,
        "fee_bps": fee_bps,
        "episodes": episodes,
        "folds": folds,
        "oos_bars": int(r.size),
        "oos": {**oos, "trades": int((changes > 0).sum()), "exposure": float(np.mean(np.abs(pos)))},
        "baselines": baselines,
        "consensus": None,  # the consensus backtest is not replayed here (see the report's note)
        "best_baseline": best,
        "significance": {
            "test": "t_test_excess_vs_best_baseline",
            "baseline": best,
            "n": int(excess.size),
            "t": t_stat,
            "p_value": p_value,
            "alpha": ALPHA,
        },  # fmt: skip
        "beats_baselines": bool(beats),
        "no_edge": bool(no_edge),
        "folds_detail": fold_rows,
        "curves": {
            "episode_reward": [float(x) for x in curve],
            "oos_equity": _thin(_equity(r)),
            "buy_and_hold_equity": _thin(_equity(hold)),
        },
        "timing": {"walk_forward_seconds": wf_seconds, "final_fit_seconds": time.monotonic() - t0 - wf_seconds},
        "note": "Out of sample only: each test block is traded by a policy trained on earlier bars. "
        + (
            "No edge: it does not beat buy & hold and flat significantly, net of fees."
            if no_edge
            else f"Beats {best.replace('_', ' ')} (p = {p_value:.3g}), net of fees."
        ),  # fmt: skip
    }
    return final, clean(report)


def consensus_baseline(
    close: np.ndarray,
    target: np.ndarray,
    *,
    start: int,
    end: int,
    positions: str = "long_short",
    fee_bps: float = 10.0,
    periods_per_year: float = 252.0,
    rl_total_return: float | None = None,
) -> dict:
    """The consensus's paper returns on the RL report's out-of-sample bars ``[start, end)``, scored
    like the policy's: from flat at ``start``, the position its decision at bar t's close asked for
    held over the next bar, fees on every change. ``target`` is the consensus backtest's per-bar
    target (backtesting.engine LONG / SHORT / FLAT / KEEP = keep the position)."""
    from backtesting.engine import FLAT, KEEP, LONG, SHORT

    close = np.asarray(close, dtype=np.float64)
    next_ret = np.zeros(close.size)
    next_ret[:-1] = close[1:] / close[:-1] - 1.0
    fee = fee_bps / 1e4
    held, prev, out = 0, 0, np.zeros(max(0, end - start))
    for j, t in enumerate(range(start, end)):
        code = int(target[t])
        if code == LONG:
            held = 1
        elif code == SHORT:
            held = -1 if positions == "long_short" else 0
        elif code == FLAT:
            held = 0
        elif code != KEEP:
            raise ValueError(f"unknown target code {code}")
        out[j] = held * next_ret[t] - fee * abs(held - prev)
        prev = held
    stats = _stats(out, periods_per_year)
    if rl_total_return is not None:
        stats["rl_beats_it"] = bool(rl_total_return > stats["total_return"])
    return stats
