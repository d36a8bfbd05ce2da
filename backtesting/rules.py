"""A strategy written as rules over a feature set's columns (and the bars' own open/high/low/
close/volume), without code: e.g. long when ``rsi_14 < 30`` and ``close > sma_50``, flat when
``rsi_14 crosses_above 55``.

``{"long": [...], "short": [...], "exit": [...], "match": "all" | "any"}``; each condition is
``[column, op, number or column]`` with op one of ``<  <=  >  >=  crosses_above  crosses_below``.
At a bar where the long rules hold the target is long, the short rules short, the exit rules
flat; long and short together is no order. Rules read the bar's values at its close only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from api.errors import ApplicationError

from .engine import FLAT, KEEP, LONG, SHORT

OPS = ("<", "<=", ">", ">=", "crosses_above", "crosses_below")
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
MAX_CONDITIONS = 20


def rules_check(rules: dict, columns: list[str]) -> dict:
    """The rules, validated against the available ``columns``; errors name each bad condition."""
    if not isinstance(rules, dict):
        raise ApplicationError("invalid_rules", "Rules are an object with long / short / exit lists.")
    unknown = sorted(set(rules) - {"long", "short", "exit", "match", "feature_set"})
    problems: dict[str, str] = {}
    if unknown:
        problems["fields"] = f"unknown: {', '.join(unknown)}"
    match = rules.get("match", "all")
    if match not in ("all", "any"):
        problems["match"] = "is 'all' or 'any'"
    known = set(columns) | set(BAR_COLUMNS)
    out = {"match": match}
    for side in ("long", "short", "exit"):
        conditions = rules.get(side) or []
        if not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
            problems[side] = f"is a list of at most {MAX_CONDITIONS} conditions"
            continue
        for i, cond in enumerate(conditions):
            where = f"{side}[{i}]"
            if not (isinstance(cond, list | tuple) and len(cond) == 3):
                problems[where] = "is [column, op, number or column]"
                continue
            left, op, right = cond
            if left not in known:
                problems[where] = f"unknown column {left!r}"
            elif op not in OPS:
                problems[where] = f"op is one of {', '.join(OPS)}"
            elif isinstance(right, str) and right not in known:
                problems[where] = f"unknown column {right!r}"
            elif not isinstance(right, str | int | float) or isinstance(right, bool):
                problems[where] = "compares with a number or a column"
        out[side] = [list(c) for c in conditions]
    if not problems and not (out.get("long") or out.get("short")):
        problems["long"] = "long or short needs at least one condition"
    if problems:
        raise ApplicationError(
            "invalid_rules",
            "Invalid rules: " + "; ".join(f"{k} {v}" for k, v in problems.items())
            + f". Columns: {', '.join(sorted(known))}.",
            problems,
        )  # fmt: skip
    return out


def _side(frame: pd.DataFrame, conditions: list, match: str) -> tuple[np.ndarray, set[str]]:
    if not conditions:
        return np.zeros(len(frame), dtype=bool), set()
    used, parts = set(), []
    with np.errstate(invalid="ignore"):
        for left, op, right in conditions:
            a = frame[left].to_numpy(dtype=np.float64)
            b = frame[right].to_numpy(dtype=np.float64) if isinstance(right, str) else np.full(len(a), float(right))
            used |= {left} | ({right} if isinstance(right, str) else set())
            if op in ("crosses_above", "crosses_below"):
                hit = np.zeros(len(a), dtype=bool)
                if op == "crosses_above":
                    hit[1:] = (a[:-1] <= b[:-1]) & (a[1:] > b[1:])
                else:
                    hit[1:] = (a[:-1] >= b[:-1]) & (a[1:] < b[1:])
            else:
                hit = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
            parts.append(hit)
    stacked = np.vstack(parts)
    return (stacked.all(axis=0) if match == "all" else stacked.any(axis=0)), used


def rules_signal(bars: pd.DataFrame, features: pd.DataFrame, rules: dict) -> tuple[np.ndarray, int]:
    frame = pd.concat([bars[list(BAR_COLUMNS)], features], axis=1)
    long_, used_l = _side(frame, rules.get("long", []), rules["match"])
    short, used_s = _side(frame, rules.get("short", []), rules["match"])
    exit_, used_e = _side(frame, rules.get("exit", []), rules["match"])
    target = np.full(len(frame), KEEP, dtype=np.int8)
    target[exit_] = FLAT
    target[long_ & ~short] = LONG
    target[short & ~long_] = SHORT
    used = sorted(used_l | used_s | used_e)
    valid = ~frame[used].isna().any(axis=1).to_numpy()
    first = int(np.argmax(valid)) if valid.any() else len(frame)
    target[:first] = KEEP
    return target, first + 1  # a crossing needs the bar before
