"""Walk-forward predictions of a model recipe (FreqAI's sliding window): the bars are cut into
segments; for each, a fresh model of the recipe's family and hyper-parameters is trained on the
window before it and predicts the segment. Nothing is seen before its time:

- a training row's label needs the close ``horizon`` bars later, so the window ends ``horizon``
  bars before the segment (purged): every label used is known when the segment starts;
- features are computed bar by bar from earlier bars only (the feature engine has no lookahead);
- the model never sees the segment it predicts, nor anything after it.

The predictions become targets for the engine: P(up) above ``0.5 + threshold`` goes long, below
``0.5 - threshold`` goes short (flat when shorts are off), in between goes flat. Their hit rate is
reported next to the base rate (always predicting the majority direction): a model that is no
better than that has no edge and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from api.errors import ApplicationError

from .engine import FLAT, KEEP, LONG, SHORT


@dataclass(frozen=True)
class WalkForward:
    window: int = 500  # training rows per segment (the most recent ones; all earlier ones if expanding)
    step: int = 100  # bars predicted per trained model
    expanding: bool = False
    threshold: float = 0.0  # dead band around 0.5 (or around 0 for a return target)
    min_train: int = 100

    def check(self, bars: int) -> None:
        problems = {}
        if not 20 <= self.window <= 1_000_000:
            problems["window"] = "must be 20-1,000,000 bars"
        if not 1 <= self.step <= 1_000_000:
            problems["step"] = "must be 1-1,000,000 bars"
        if not 0 <= self.threshold < 0.5:
            problems["threshold"] = "must be in [0, 0.5)"
        if problems:
            raise ApplicationError("invalid_walk_forward", "Invalid walk-forward settings; see details.", problems)
        if bars < self.window + self.step + 1:
            raise ApplicationError(
                "too_few_bars",
                f"Walk-forward needs more than window + step = {self.window + self.step} usable bars; got {bars}. "
                "Shorten the window or load more history.",
                {"bars": bars, "needed": self.window + self.step + 1},
            )


def walk_forward(
    features: pd.DataFrame, *, labels: np.ndarray, horizon: int, task: str, build, wf: WalkForward,
    progress=None,
) -> dict:  # fmt: skip
    """``features`` per bar (NaN rows are skipped), ``labels`` per bar (NaN where unknown; each
    needs the bar ``horizon`` later), ``build()``
    -> an unfitted estimator. Returns per-bar ``target`` (engine codes), ``score`` (P(up) or the
    predicted return; NaN where not predicted), the first predicted bar, and the segments."""
    n = len(features)
    X = features.to_numpy(dtype=np.float64)
    usable = ~np.isnan(X).any(axis=1)
    first = int(np.argmax(usable)) if usable.any() else n
    wf.check(n - first)
    score = np.full(n, np.nan)
    target = np.full(n, KEEP, dtype=np.int8)
    segments = []
    starts = list(range(first + wf.window + horizon, n, wf.step))
    for k, s in enumerate(starts):
        end = min(s + wf.step, n)
        lo = first if wf.expanding else max(first, s - horizon - wf.window)
        rows = np.arange(lo, s - horizon)  # labels of these rows are known by bar s
        rows = rows[usable[rows] & ~np.isnan(labels[rows])]
        if len(rows) < wf.min_train or (task != "regression" and len(np.unique(labels[rows])) < 2):
            continue
        model = build()
        model.fit(X[rows], labels[rows].astype(np.int64) if task != "regression" else labels[rows])
        pred_rows = np.arange(s, end)
        pred_rows = pred_rows[usable[pred_rows]]
        if not len(pred_rows):
            continue
        if task == "regression":
            score[pred_rows] = model.predict(X[pred_rows])
        else:
            proba = model.predict_proba(X[pred_rows])
            classes = list(getattr(model, "classes_", range(proba.shape[1])))
            up = classes.index(max(classes))  # the highest label is "up" (direction: 1, ternary: 2)
            score[pred_rows] = proba[:, up]
        segments.append({"train_from": int(rows[0]), "train_to": int(rows[-1]), "rows": len(rows),
                         "predict_from": int(s), "predict_to": int(end - 1)})  # fmt: skip
        if progress:
            progress(int((k + 1) / len(starts) * 100), f"segment {k + 1}/{len(starts)}")
    centre = 0.0 if task == "regression" else 0.5
    known = ~np.isnan(score)
    target[known] = FLAT
    target[known & (score > centre + wf.threshold)] = LONG
    target[known & (score < centre - wf.threshold)] = SHORT
    return {"target": target, "score": score, "first_predicted": int(np.argmax(known)) if known.any() else n,
            "segments": segments, "horizon": horizon}  # fmt: skip


def hit_rate(score: np.ndarray, close: np.ndarray, *, horizon: int, task: str) -> dict:
    """How often the predicted direction was right over the horizon, next to the base rate."""
    fwd = np.full(len(close), np.nan)
    fwd[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    ok = ~np.isnan(score) & ~np.isnan(fwd) & (fwd != 0)
    if not ok.any():
        return {"predictions": 0, "hit_rate": None, "base_rate": None, "edge": None}
    up_pred = score[ok] > (0.0 if task == "regression" else 0.5)
    up_real = fwd[ok] > 0
    hit = float(np.mean(up_pred == up_real))
    base = float(max(np.mean(up_real), 1 - np.mean(up_real)))
    n = int(ok.sum())
    se = np.sqrt(base * (1 - base) / n)
    return {"predictions": n, "hit_rate": hit, "base_rate": base, "edge": bool(hit > base + 2 * se)}
