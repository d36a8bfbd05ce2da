"""Bias checks of a strategy, after freqtrade's lookahead and recursive analysis.

- **Lookahead**: the signal at bar k is recomputed from the bars up to k only (the data cut right
  after it) at many checkpoints; any difference from the full-data run means the strategy used a
  later bar to decide bar k.
- **Recursive**: signals near the end are recomputed with the history starting later (shorter
  start-up); indicators with memory (EMA, RSI, ATR...) drift with the start-up length, and a
  signal that changes says the warm-up is too short for that indicator to have converged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .strategies import Strategy, strategy_get


def _strategy(strategy: str | Strategy) -> Strategy:
    return strategy if isinstance(strategy, Strategy) else strategy_get(strategy)


def lookahead_analysis(
    bars: pd.DataFrame, *, strategy: str | Strategy, params: dict | None = None, checkpoints: int = 40
) -> dict:
    s = _strategy(strategy)
    resolved = s.resolve(params)
    full, start = s.run(bars, resolved)
    points = np.unique(np.linspace(start, len(bars) - 1, num=min(checkpoints, len(bars) - start)).astype(int))
    changed = []
    for k in points:
        cut, _ = s.signal(bars.iloc[: k + 1], **resolved)
        diff = np.flatnonzero(cut != full[: k + 1])
        if diff.size:
            changed.append({"cut_after_bar": int(k), "bar": int(diff[0]), "time": bars.index[diff[0]].isoformat(),
                            "full": int(full[diff[0]]), "cut": int(cut[diff[0]])})  # fmt: skip
    return {
        "strategy": s.name,
        "params": resolved,
        "checkpoints": len(points),
        "biased": bool(changed),
        "changes": changed[:20],
        "verdict": (
            f"lookahead bias: {len(changed)} of {len(points)} cuts changed an earlier signal"
            if changed
            else f"no lookahead: {len(points)} cuts, every earlier signal unchanged"
        ),
    }


def recursive_analysis(
    bars: pd.DataFrame, *, strategy: str | Strategy, params: dict | None = None, tail: int = 200,
    startups: tuple[int, ...] = (100, 200, 500, 1000, 2000),
) -> dict:  # fmt: skip
    """For each start-up length L: signals over the last ``tail`` bars computed from only the L
    bars before them, against those from the whole history; the share that differs."""
    s = _strategy(strategy)
    resolved = s.resolve(params)
    full, start = s.run(bars, resolved)
    tail = min(tail, len(bars) - start - 1)
    rows = []
    for length in startups:
        first = len(bars) - tail - length
        if first < 0:
            break
        part, part_start = s.signal(bars.iloc[first:], **resolved)
        if part_start > length:  # not even warmed up
            rows.append({"startup_bars": length, "differing_pct": None, "note": "shorter than the warm-up"})
            continue
        differ = float(np.mean(part[-tail:] != full[-tail:]) * 100)
        rows.append({"startup_bars": length, "differing_pct": differ})
    converged = next((r["startup_bars"] for r in rows if r["differing_pct"] == 0.0), None)
    return {
        "strategy": s.name,
        "params": resolved,
        "tail_bars": tail,
        "startups": rows,
        "converged_at": converged,
        "verdict": (
            f"signals stable from {converged} bars of start-up on"
            if converged is not None
            else "signals still depend on the start-up length: give the strategy a longer history"
        ),
    }
