"""The tenant's consensus configuration backtested: the live agents and consensus engine
(``intelligence``), run bar by bar over stored bars.

Honest by construction:
- the engine starts from the flow's initial weights, never from today's learned state (which
  has seen outcomes after the period: that would be lookahead), and learns as it goes, each
  outcome recorded when its horizon has passed and before the next decision;
- agents read features computed from earlier bars only, and the risk agent reads a paper position
  kept by the same ledger rules as live;
- the ML agent votes with the model the flow would use (production, or the challenger for its
  traffic share), predicting bar by bar; bars inside that version's training range are counted
  and reported as in-sample, and ``use_model=False`` leaves the model out;
- agent time-outs are off, so the same bars always give the same decisions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .engine import FLAT, KEEP, LONG, SHORT


def consensus_signals(
    bars: pd.DataFrame,
    *,
    tenant,
    symbol: str,
    timeframe: str,
    use_model: bool = True,
    environment: str = "prod",
    progress=None,
) -> dict:
    from features.engine import compute_batch
    from intelligence import services as intel
    from intelligence.agents import Context
    from intelligence.agents.features import agent_feature_spec
    from intelligence.consensus import run_agents
    from intelligence.ledger import mark_peak, position_move, position_state
    from intelligence.models import Position

    pipeline = intel.pipeline_fresh(tenant, environment)  # the flow that environment runs (try staging first)
    flow = pipeline.flow
    features = compute_batch(bars, agent_feature_spec(timeframe), timeframe, direct=True)
    columns = list(features.columns)
    values = features.to_numpy(dtype=np.float64)
    close = bars["close"].to_numpy(dtype=np.float64)
    stamps = bars.index
    n = len(bars)

    ml = [None] * n
    model_info = None
    if use_model:
        ml, model_info = _model_votes(bars, symbol=symbol, timeframe=timeframe, flow=flow)

    valid = ~np.isnan(values).any(axis=1)
    start = int(np.argmax(valid)) if valid.any() else n
    target = np.full(n, KEEP, dtype=np.int8)
    position = Position(symbol=symbol, peak_equity=pipeline.ledger.equity)
    pending: list[tuple[int, object]] = []
    counts = {"BUY": 0, "SELL": 0, "HOLD": 0}
    right = wrong = conservative = 0
    for i in range(start, n):
        while pending and pending[0][0] + 1 <= i:  # horizon 1: known at this close, before deciding
            then, result = pending.pop(0)
            realized = int(np.sign(close[i] - close[then]))
            pipeline.engine.record_outcome(symbol, result.votes, result, realized)
            if result.action != "HOLD" and realized:
                hit = realized == (1 if result.action == "BUY" else -1)
                right, wrong = right + hit, wrong + (not hit)
        ctx = Context(
            symbol=symbol, timeframe=timeframe, ts=stamps[i], features=dict(zip(columns, values[i], strict=True)),
            closes=close[max(0, i - intel.CLOSES + 1) : i + 1], ml=ml[i],
            position=position_state(position, pipeline.ledger), settings=pipeline.settings,
        )  # fmt: skip
        run = run_agents(pipeline.agents, ctx, timeout_ms=None)
        result = pipeline.engine.decide(run.votes, symbol=symbol, failures=run.failures)
        counts[result.action] += 1
        conservative += bool(result.conservative)
        target[i] = {"BUY": LONG, "SELL": SHORT}.get(result.action, KEEP)
        if result.action == "SELL" and not pipeline.ledger.allow_short:
            target[i] = FLAT
        # the paper ledger, as live (fills at the decision's close)
        position_move(position, result.action, result.size, close[i], pipeline.ledger)
        mark_peak(position, pipeline.ledger)
        pending.append((i, result))
        if progress and (i - start) % 250 == 0:
            progress(int((i - start) / max(1, n - start) * 100), f"bar {i - start:,} of {n - start:,}")
    decided = right + wrong
    return {
        "target": target,
        "start": start,
        "consensus": {
            "flow": pipeline.flow_ref,
            "agents": list(flow["agents"]),
            "decisions": counts,
            "actionable_accuracy": right / decided if decided else None,
            "actionable_resolved": decided,
            "engine_accuracy": pipeline.engine.accuracy(),
            "final_weights": pipeline.engine.weights(symbol),
            "conservative_bars": conservative,
            "model": model_info,
            "note": "started from the flow's initial weights and learned bar by bar; no learned state from "
            "after the period is used",
        },
    }


def _model_votes(bars: pd.DataFrame, *, symbol: str, timeframe: str, flow: dict) -> tuple[list, dict | None]:
    """Per bar: the prediction of the version the flow would ask (``None`` where it has none)."""
    from features.engine import compute_batch
    from features.selectors import feature_set_spec
    from intelligence import services as intel
    from models_registry import serving

    n = len(bars)
    out: list = [None] * n
    model = intel.model_for(symbol=symbol, timeframe=timeframe, flow=flow)
    if model is None:
        return out, None
    arms = serving.arms_get(model)
    chosen: dict[int, list[int]] = {}
    versions = {}
    for i, ts in enumerate(bars.index):
        version = arms.pick(intel.ab_key(symbol, ts))
        if version is not None:
            versions[version.pk] = version
            chosen.setdefault(version.pk, []).append(i)
    in_sample = 0
    for pk, rows in chosen.items():
        version = versions[pk]
        feats = compute_batch(bars, feature_set_spec(version.feature_set), timeframe, direct=True)
        feats = feats[list(version.feature_names)].to_numpy(dtype=np.float64)
        preds = intel.ml_predictions(version, [dict(zip(version.feature_names, feats[i], strict=True)) for i in rows])
        for i, p in zip(rows, preds, strict=True):
            out[i] = p
        if version.train_end is not None:
            in_sample += int(np.sum(bars.index[rows] <= pd.Timestamp(version.train_end)))
    info = {
        "model": model.name,
        "versions": sorted(v.ref for v in versions.values()),
        "in_sample_bars": in_sample,
        "warning": (
            f"{in_sample} bars fall inside the model's training range: its votes there are in-sample"
            if in_sample
            else None
        ),
    }
    return out, info
