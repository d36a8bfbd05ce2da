"""Replay of a recorded live period: the stream's decisions derived again, bar by bar, by the same
agent and consensus code, from recorded state, and compared field by field with what was stored.

Recorded state, all written by the stream (``intelligence/stream.py``):
- an ``EngineCheckpoint`` at or before the period: the flow the process ran (version and config,
  the plan's agents), the consensus engine (weights, calibration, accuracy window, adaptive
  threshold) and the decisions still waiting for their outcome, with the engine's exact view;
- each decision's inputs: its feature row, the paper position the risk agent read, the model's
  prediction (and the model's own feature row), agents that failed;
- the stored bars: the closes the agents read and the outcomes the engine learned from.

From the checkpoint, the stream's decisions (of its partition) are replayed in decision order,
the period's compared; the engine learns each outcome at its horizon, before the next decision of
its series, as live. A later checkpoint on the way (a process that restarted and reloaded its
engine) is switched to as live switched. Nothing is random (the A/B split is a hash of symbol and
time), and a replay never runs a clock: agent time-outs are taken from the record.

The model is also asked again: its artifact (loaded only after its sha256 matches) predicts the
recorded feature rows and the largest difference from the recorded predictions is reported; the
decisions are replayed from the recorded predictions (a batch of rows can round differently in
the last bit than one row).

Not reproducible, and said so: decisions from before the stream recorded inputs (no checkpoint),
and a bar redelivered after a crash between commit and acknowledgement resolves its outcome one
bar later in the replay than it did live.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import orjson
import pandas as pd
from django.db.models import Q

from api.errors import ApplicationError

COMPARED = (
    "action", "confidence", "raw_score", "size", "conservative", "vetoed_by", "votes", "weights",
    "explanation", "flow", "model_version", "inputs_fingerprint",
)  # fmt: skip


def _plain(value):
    """As stored: JSON values through a JSON round trip (what the database gives back)."""
    return orjson.loads(orjson.dumps(value)) if isinstance(value, dict | list) else value


def replay_plan(*, symbol: str | None = None, timeframe: str | None = None, start=None, end=None):
    """The stream decisions of the period (ids, in order) and the checkpoint a replay starts from;
    ``no_decisions`` / ``no_checkpoint`` when there is nothing to replay."""
    from .models import Decision, EngineCheckpoint
    from .stream import partition_of

    period = Decision.objects.filter(source=Decision.Source.STREAM)
    if symbol:
        period = period.filter(symbol=symbol.upper())
    if timeframe:
        period = period.filter(timeframe=timeframe)
    if start is not None:
        period = period.filter(ts__gte=start)
    if end is not None:
        period = period.filter(ts__lt=end)
    ids = list(period.order_by("id").values_list("id", flat=True))
    if not ids:
        raise ApplicationError(
            "no_decisions", "The live stream made no decisions in that period; pick one it ran through.",
        )  # fmt: skip
    checkpoint = EngineCheckpoint.objects.filter(after_id__lt=ids[0]).order_by("-after_id", "-id").first()
    if checkpoint is not None and symbol:
        n_parts = int(checkpoint.partition.split("of")[1])
        if n_parts > 1:
            checkpoint = (
                EngineCheckpoint.objects.filter(
                    after_id__lt=ids[0], partition=f"{partition_of(symbol, n_parts)}of{n_parts}"
                )
                .order_by("-after_id", "-id")
                .first()
            )
    if checkpoint is None:
        raise ApplicationError(
            "no_checkpoint",
            "No engine checkpoint precedes that period (the stream writes one when it starts and every few "
            "minutes); replay a later period.",
        )
    return ids, checkpoint


def decisions_replay(
    *, symbol: str | None = None, timeframe: str | None = None, start=None, end=None, progress=None,
    check_model: bool = True,
) -> dict:  # fmt: skip
    """Replay the stream's decisions of [start, end] (optionally one symbol/timeframe) from the
    checkpoint before them; the report says how many match exactly and shows the first that does not."""
    from marketdata.models import TIMEFRAME_SECONDS

    from . import controls as decision_controls
    from . import services
    from .models import Decision, EngineCheckpoint
    from .rl_agent_input import rl_input_recorded
    from .stream import _result_of, partition_of, result_from_state, stream_context

    ids, checkpoint = replay_plan(symbol=symbol, timeframe=timeframe, start=start, end=end)
    n_parts, part = int(checkpoint.partition.split("of")[1]), int(checkpoint.partition.split("of")[0])
    wanted = set(ids)
    partition = checkpoint.partition
    later = list(
        EngineCheckpoint.objects.filter(partition=partition, after_id__lt=ids[-1])
        .filter(Q(after_id__gt=checkpoint.after_id) | Q(after_id=checkpoint.after_id, id__gt=checkpoint.id))
        .order_by("after_id", "id")
    )
    switched = len(later)
    rows = [
        d
        for d in Decision.objects.filter(source=Decision.Source.STREAM, id__gt=checkpoint.after_id, id__lte=ids[-1])
        .order_by("id")
        .iterator(chunk_size=2_000)
        if n_parts == 1 or partition_of(d.symbol, n_parts) == part
    ]
    closes = _closes_for(rows)

    state: dict = {}

    def restore(cp) -> None:
        state["cp"] = cp
        state["pipeline"] = services.pipeline_restore(cp)
        state["known"] = {tuple(k) for k in cp.series}
        state["pending"] = {}
        for p in cp.pending:
            state["pending"].setdefault((p["symbol"], p["timeframe"]), deque()).append(
                (p["ts"], result_from_state(p["result"]), p["close"], p.get("horizon", 1))
            )

    def pending_for(key) -> deque:
        """A series the process met after the checkpoint: the stored decisions it took up then."""
        if key not in state["known"]:
            state["known"].add(key)
            cp = state["cp"]
            q = state["pending"].setdefault(key, deque())
            for row in Decision.objects.filter(
                source=Decision.Source.STREAM, symbol=key[0], timeframe=key[1], id__lte=cp.after_id,
                resolved_at__gt=cp.created_at,
            ).order_by("ts")[:100]:  # fmt: skip
                then = int(row.ts.timestamp())
                q.append((then, _result_of(row), closes[key].get(then), row.horizon))
        return state["pending"].setdefault(key, deque())

    restore(checkpoint)
    replayed = compared = matched = 0
    first_mismatch = None
    mismatched_ids: list[int] = []
    actions: dict[tuple[str, str], dict[int, str]] = {}
    model_rows: dict[str, list[tuple[dict, dict]]] = {}
    step_of = TIMEFRAME_SECONDS
    for n, d in enumerate(rows):
        while later and d.id > later[0].after_id:
            restore(later.pop(0))
        pipeline = state["pipeline"]
        key = (d.symbol, d.timeframe)
        ts = int(d.ts.timestamp())
        series_closes = closes[key]
        close = series_closes[ts]
        queue = pending_for(key)
        while queue and queue[0][0] + queue[0][3] * step_of[d.timeframe] <= ts:
            _then, result, then_close, _horizon = queue.popleft()
            if then_close is None:
                continue
            pipeline.engine.record_outcome(d.symbol, result.votes, result, int(np.sign(close - then_close)))
        inputs = d.inputs or {}
        features = {k: (math.nan if v is None else v) for k, v in d.features.items()}
        ctx = stream_context(
            d.symbol, d.timeframe, ts, features, series_closes.window(ts), inputs.get("ml"),
            inputs.get("position") or {}, pipeline, rl=rl_input_recorded(inputs.get("rl")),
        )  # fmt: skip
        result = pipeline.decide(ctx, recorded_failures=inputs.get("failures") or {})
        again = services.decision_row(
            source=d.source, symbol=d.symbol, timeframe=d.timeframe, ts=d.ts, result=result, features=features,
            flow_ref=pipeline.flow_ref, model_version=inputs["ml"]["version"] if inputs.get("ml") else "",
            latency_ms=0.0, horizon=d.horizon, inputs=inputs,
        )  # fmt: skip
        decision_controls.replayed(
            again, recorded=inputs, price=close, position=inputs.get("position") or {}, runtime=pipeline.runtime,
            ledger=pipeline.ledger,
        )  # fmt: skip
        queue.append((ts, result, close, d.horizon))
        replayed += 1
        if d.id in wanted:
            compared += 1
            diff = {
                f: {"recorded": getattr(d, f), "replayed": _plain(getattr(again, f))}
                for f in COMPARED
                if getattr(d, f) != _plain(getattr(again, f))
            }
            if diff:
                mismatched_ids.append(d.id)
                if first_mismatch is None:
                    first_mismatch = {"id": d.id, "symbol": d.symbol, "ts": d.ts.isoformat(), "fields": diff}
            else:
                matched += 1
            actions.setdefault(key, {})[ts] = again.action
            if check_model and inputs.get("ml"):
                row = inputs.get("model_features") or d.features
                model_rows.setdefault(inputs["ml"]["version"], []).append((row, inputs["ml"]))
        if progress and n % 250 == 0:
            progress(int(n / max(1, len(rows)) * 100), f"decision {n:,} of {len(rows):,}")
    report = {
        "checkpoint": {
            "id": checkpoint.pk, "after_id": checkpoint.after_id, "reason": checkpoint.reason,
            "flow": checkpoint.flow_ref, "partition": partition, "at": checkpoint.created_at.isoformat(),
        },
        "switched_checkpoints": switched,
        "replayed": replayed,
        "compared": compared,
        "matched": matched,
        "mismatched": compared - matched,
        "exact": compared == matched,
        "first_mismatch": first_mismatch,
        "mismatched_ids": mismatched_ids[:100],
        "model": _model_check(model_rows) if check_model else None,
    }  # fmt: skip
    ledger = services.LedgerConfig.from_flow(checkpoint.flow_config)
    return {"report": report, "actions": actions, "allow_short": ledger.allow_short}


class _Closes:
    """One series' stored closes: by time, and the window the stream's agents read at a bar."""

    def __init__(self, frame: pd.DataFrame, keep: int):
        self.stamps = frame.index.as_unit("ns").asi8 // 1_000_000_000
        self.values = frame["close"].to_numpy(dtype=np.float64)
        self.keep = keep
        self._at = {int(t): float(c) for t, c in zip(self.stamps, self.values, strict=True)}

    def __getitem__(self, ts: int) -> float:
        try:
            return self._at[ts]
        except KeyError:
            raise ApplicationError(
                "bars_missing", f"The bar at {pd.Timestamp(ts, unit='s', tz='UTC')} a decision was made on is no "
                "longer stored (deleted or past retention): that period cannot be replayed.",
            ) from None  # fmt: skip

    def get(self, ts: int):
        return self._at.get(ts)

    def window(self, ts: int) -> np.ndarray:
        i = int(np.searchsorted(self.stamps, ts, side="right"))
        return self.values[max(0, i - self.keep) : i]


def _closes_for(rows) -> dict[tuple[str, str], _Closes]:
    from marketdata import selectors as md_selectors
    from marketdata.models import TIMEFRAME_SECONDS, Instrument

    from . import services

    spans: dict[tuple[str, str], list[int]] = {}
    for d in rows:
        ts = int(d.ts.timestamp())
        lo, hi = spans.setdefault((d.symbol, d.timeframe), [ts, ts])
        spans[(d.symbol, d.timeframe)] = [min(lo, ts), max(hi, ts)]
    out = {}
    for (symbol, timeframe), (lo, hi) in spans.items():
        instrument = Instrument.objects.filter(symbol=symbol).first()
        step = TIMEFRAME_SECONDS[timeframe]
        # the window before the first decision, and the outcomes of pending decisions before it
        first = pd.Timestamp(lo - step * (services.CLOSES + 100), unit="s", tz="UTC")
        last = pd.Timestamp(hi + step, unit="s", tz="UTC")
        frame = (
            md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, start=first, end=last)
            if instrument
            else pd.DataFrame({"close": []}, index=pd.DatetimeIndex([], tz="UTC"))
        )
        out[(symbol, timeframe)] = _Closes(frame, services.CLOSES)
    return out


def _model_check(model_rows: dict[str, list[tuple[dict, dict]]]) -> dict:
    """The model versions asked again on the recorded rows: the largest probability (or value) gap."""
    from backtesting.services import model_version_resolve

    from . import services

    out = {}
    for ref, items in model_rows.items():
        try:
            version = model_version_resolve(ref=ref)
        except ApplicationError as exc:
            out[ref] = {"checked": 0, "error": exc.message}
            continue
        rows = [{k: (math.nan if v is None else v) for k, v in row.items()} for row, _ in items]
        again = services.ml_predictions(version, rows)
        gap = 0.0
        checked = 0
        for (_, recorded), pred in zip(items, again, strict=True):
            if pred is None:
                continue
            checked += 1
            if "probabilities" in recorded:
                gap = max(
                    gap, *(abs(pred["probabilities"].get(k, 0.0) - v) for k, v in recorded["probabilities"].items())
                )
            elif "prediction" in recorded:
                gap = max(gap, abs(pred["prediction"] - recorded["prediction"]))
        out[ref] = {"checked": checked, "max_abs_difference": gap, "reproduced": checked > 0 and gap <= 1e-9}
    return out
