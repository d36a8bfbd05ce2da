"""The live decision stream of one tenant: ``market.data.update`` events in, decisions out.

Per batch read from the tenant's stream (consumer group ``decisions``):
1. bars are grouped per instrument and timeframe and fed, in time order, to that series' O(1)
   feature engines (the agents' set, and the production model's set when there is one), warmed
   from the stored bars before the first one;
2. every bar after the warm-up gets a decision (agents + consensus), and decisions whose horizon
   has passed are resolved and fed back to the engine (weights, calibration, accuracy);
3. in ONE transaction: the new bars are stored, the decisions inserted in bulk, outcomes written,
   the paper ledger updated, the engine state saved; after commit, decisions go out on the feed
   and outcomes as ``feedback.prediction.outcome`` events; only then is the batch acknowledged.

A consumer killed anywhere in between leaves its batch pending: it is re-delivered (to a
restarted or another consumer), and because bars and decisions were written together or not at
all, and a stream decision is unique per bar, no bar is lost and none is decided twice.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from eventbus import bus

from . import services
from .agents import Context
from .agents.features import agent_feature_spec
from .feed import publish_decisions
from .ledger import ledger_apply, position_state
from .models import Decision, Position, WeightSnapshot

log = logging.getLogger(__name__)

GROUP = "decisions"
MODEL_REFRESH_S = 30.0  # how often a series looks for a newly deployed model


@dataclass
class Series:
    symbol: str
    timeframe: str
    step: int
    agents_engine: object
    model_version: object = None
    model_engine: object = None
    model_checked: float = 0.0
    closes: deque = field(default_factory=lambda: deque(maxlen=services.CLOSES))
    stamps: deque = field(default_factory=lambda: deque(maxlen=services.CLOSES))
    last_ts: int | None = None
    pending: deque = field(default_factory=deque)  # (ts, decision) waiting for their outcome


class TenantStream:
    def __init__(self, tenant, *, consumer_name: str | None = None, batch: int = 500):
        self.tenant = tenant
        self.schema = tenant.schema_name
        kwargs = {"name": consumer_name} if consumer_name else {}
        self.consumer = bus.Consumer(
            "market.data.update", GROUP, self.handle, schema=self.schema, batch=batch, **kwargs
        )
        self.series: dict[tuple[str, str], Series] = {}
        self.pipeline = None
        self.decided = 0
        self.last_bar: dict[str, dict] = {}

    def start(self) -> None:
        self.consumer.ensure_group()

    def run_once(self, block_ms: int = 100) -> int:
        from django_tenants.utils import schema_context

        with schema_context(self.schema):
            return self.consumer.run_once(block_ms=block_ms)

    # --- the handler -------------------------------------------------------------------------

    def handle(self, entries: list[bus.Entry]) -> None:
        if self.pipeline is None:
            self.pipeline = services.pipeline_load(self.tenant, fresh=True)
        groups: dict[tuple[str, str], list[dict]] = {}
        for e in entries:
            groups.setdefault((e.data["symbol"].upper(), e.data["timeframe"]), []).append(e.data)
        new_bars: dict[tuple[str, str], list[dict]] = {}
        decisions: list[tuple[Decision, float]] = []
        # positions as of the batch start (the ledger moves them at commit): one query, not one per bar
        self.positions = {p.symbol: p for p in Position.objects.filter(symbol__in={k[0] for k in groups})}
        resolved: list[tuple[Decision, int]] = []
        for key, bars in groups.items():
            bars.sort(key=lambda b: b["ts"])
            series = self._series(*key, first_ts=bars[0]["ts"])
            for bar in bars:
                if series.last_ts is not None and bar["ts"] <= series.last_ts:
                    continue  # already seen (a redelivery overlapping what this process has processed)
                new_bars.setdefault(key, []).append(bar)
                decision = self._bar(series, bar, resolved)
                if decision is not None:
                    decisions.append((decision, bar["close"]))
        if not new_bars and not decisions:
            return
        self._commit(new_bars, decisions, resolved)

    def _bar(self, series: Series, bar: dict, resolved: list) -> Decision | None:
        started = time.perf_counter()
        ts, close = bar["ts"], float(bar["close"])
        values = series.agents_engine.update(ts, bar["open"], bar["high"], bar["low"], close, bar["volume"])
        model_values = (
            series.model_engine.update(ts, bar["open"], bar["high"], bar["low"], close, bar["volume"])
            if series.model_engine is not None
            else None
        )
        # outcomes: the decision made h bars ago is resolved by this close
        while series.pending and series.pending[0][0] + series.pending[0][1].horizon * series.step <= ts:
            then, decision, then_close = series.pending.popleft()
            realized = int(np.sign(close - then_close))
            resolved.append((decision, realized))
        series.closes.append(close)
        series.stamps.append(ts)
        series.last_ts = ts
        self.last_bar[series.symbol] = {"timeframe": series.timeframe, "ts": ts, "close": close}
        if values is None:  # warming up: no decision on incomplete features
            return None
        row = dict(zip(series.agents_engine.columns, map(float, values), strict=True))
        ml = None
        if model_values is not None:
            ml = services.ml_prediction(
                series.model_version, dict(zip(series.model_engine.columns, map(float, model_values), strict=True))
            )
        pipeline = self.pipeline
        position = self.positions.get(series.symbol)
        ctx = Context(
            symbol=series.symbol,
            timeframe=series.timeframe,
            ts=ts,
            features=row,
            closes=np.fromiter(series.closes, dtype=np.float64),
            ml=ml,
            position=position_state(position, pipeline.ledger),
            settings=pipeline.settings,
        )
        result = pipeline.decide(ctx)
        decision = services.decision_row(
            source=Decision.Source.STREAM,
            symbol=series.symbol,
            timeframe=series.timeframe,
            ts=pd.Timestamp(ts, unit="s", tz="UTC").to_pydatetime(),
            result=result,
            features=row,
            flow_ref=pipeline.flow_ref,
            model_version=ml["version"] if ml else "",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        decision._result = result  # for the outcome, in this process
        series.pending.append((ts, decision, close))
        return decision

    def _commit(self, new_bars, decisions, resolved) -> None:
        from marketdata import services as md_services

        from .selectors import decision_payload

        pipeline = self.pipeline
        with transaction.atomic():
            for (symbol, timeframe), bars in new_bars.items():
                frame = pd.DataFrame(bars)[["ts", "open", "high", "low", "close", "volume"]]
                frame = frame.rename(columns={"ts": "timestamp"})
                md_services.bars_import(
                    tenant=self.tenant,
                    symbol=symbol,
                    timeframe=timeframe,
                    raw=frame,
                    on_conflict="skip",
                    actor="stream",
                )
            fresh = self._insert(decisions)
            ledger_apply([(d, price) for d, price in fresh], pipeline.ledger)
            outcomes = self._resolve(resolved)
            services.engine_save(pipeline)
            payloads = [decision_payload(d) for d, _ in fresh]
            schema = self.schema
            transaction.on_commit(lambda: publish_decisions(payloads, schema))
            if outcomes:
                transaction.on_commit(lambda: bus.publish_many("feedback.prediction.outcome", outcomes, schema=schema))
        self.decided += len(fresh)

    def _insert(self, decisions: list[tuple[Decision, float]]) -> list[tuple[Decision, float]]:
        """Insert the decisions no earlier delivery stored (one per bar), returning those."""
        if not decisions:
            return []
        keys = {(d.symbol, d.timeframe, d.ts) for d, _ in decisions}
        existing = set(
            Decision.objects.filter(
                source=Decision.Source.STREAM,
                symbol__in={k[0] for k in keys},
                ts__in={k[2] for k in keys},
            ).values_list("symbol", "timeframe", "ts")
        )
        fresh = [(d, p) for d, p in decisions if (d.symbol, d.timeframe, d.ts) not in existing]
        Decision.objects.bulk_create([d for d, _ in fresh])
        return fresh

    def _resolve(self, resolved: list[tuple[Decision, int]]) -> list[dict]:
        if not resolved:
            return []
        engine = self.pipeline.engine
        now = timezone.now()
        events = []
        updates = []
        for decision, realized in resolved:
            if decision.pk is None:  # not stored (it was a redelivered bar's twin)
                continue
            result = getattr(decision, "_result", None)
            if result is not None:
                engine.record_outcome(decision.symbol, result.votes, result, realized)
            decision.realized = realized
            decision.correct = (
                None if decision.action == "HOLD" else (realized == (1 if decision.action == "BUY" else -1))
            )
            decision.resolved_at = now
            updates.append(decision)
            events.append(
                {
                    "decision_id": decision.pk,
                    "symbol": decision.symbol,
                    "timeframe": decision.timeframe,
                    "ts": int(decision.ts.timestamp()),
                    "realized": realized,
                    **({"correct": decision.correct} if decision.correct is not None else {}),
                    **({"model_version": decision.model_version} if decision.model_version else {}),
                }
            )
        Decision.objects.bulk_update(updates, ["realized", "correct", "resolved_at"])
        for symbol in {d.symbol for d in updates}:
            WeightSnapshot.objects.create(
                flow=self.pipeline.flow_name, symbol=symbol, weights=engine.weights(symbol), accuracy=engine.accuracy()
            )
        return events

    # --- series ------------------------------------------------------------------------------

    def _series(self, symbol: str, timeframe: str, *, first_ts: int) -> Series:
        key = (symbol, timeframe)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = self._warm(symbol, timeframe, first_ts)
        if time.monotonic() - series.model_checked > MODEL_REFRESH_S:
            self._attach_model(series, first_ts)
        return series

    def _warm(self, symbol: str, timeframe: str, before_ts: int) -> Series:
        from features.engine import IncrementalEngine
        from marketdata.models import TIMEFRAME_SECONDS

        spec = agent_feature_spec(timeframe)
        engine = IncrementalEngine(spec, timeframe)
        series = Series(symbol, timeframe, TIMEFRAME_SECONDS[timeframe], engine)
        history = self._history(symbol, timeframe, before_ts, engine.warmup * 3 + services.CLOSES)
        closes_at = {}
        for ts, o, h, lo, c, v in history:
            engine.update(ts, o, h, lo, c, v)
            series.closes.append(c)
            series.stamps.append(ts)
            series.last_ts = ts
            closes_at[ts] = c
        # decisions an earlier run made and could not resolve yet: resolved by the bars to come
        for decision in Decision.objects.filter(
            source=Decision.Source.STREAM, symbol=symbol, timeframe=timeframe, resolved_at=None
        ).order_by("ts")[:100]:
            then = int(decision.ts.timestamp())
            if then in closes_at:
                decision._result = _result_of(decision)
                series.pending.append((then, decision, closes_at[then]))
        return series

    def _attach_model(self, series: Series, before_ts: int) -> None:
        from features import selectors as fs_selectors
        from features.engine import IncrementalEngine

        series.model_checked = time.monotonic()
        version = services.model_version_for(
            symbol=series.symbol, timeframe=series.timeframe, flow=self.pipeline.flow, request_key=series.symbol
        )
        if version is None:
            series.model_version = series.model_engine = None
            return
        if series.model_version is not None and series.model_version.pk == version.pk:
            return
        engine = IncrementalEngine(fs_selectors.feature_set_spec(version.feature_set), series.timeframe)
        for ts, o, h, lo, c, v in self._history(series.symbol, series.timeframe, before_ts, engine.warmup * 3 + 50):
            engine.update(ts, o, h, lo, c, v)
        series.model_version, series.model_engine = version, engine

    def _history(self, symbol: str, timeframe: str, before_ts: int, n: int):
        from marketdata import selectors as md_selectors
        from marketdata.models import Instrument

        instrument = Instrument.objects.filter(symbol=symbol).first()
        if instrument is None:
            return []
        end = pd.Timestamp(before_ts - 1, unit="s", tz="UTC")
        frame = md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, end=end, limit=n)
        stamps = frame.index.as_unit("ns").asi8 // 1_000_000_000
        cols = [frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
        return [(int(t), *map(float, row)) for t, *row in zip(stamps, *cols, strict=True)]

    def status(self) -> dict:
        info = bus.stream_info("market.data.update", schema=self.schema)
        return {"decided": self.decided, "last_bar": self.last_bar, "stream": info}


def stream_status(schema: str | None = None) -> dict:
    """For ``data-stream-status``: the stream's length, groups (pending, lag) and the last bars."""
    schema = schema or connection.schema_name
    return bus.stream_info("market.data.update", schema=schema)


def _result_of(decision: Decision):
    """The engine's view of a stored decision (for learning from its outcome after a restart)."""
    from .agents import Vote
    from .consensus import Decision as EngineDecision

    votes = {v["agent"]: Vote.from_json({k: x for k, x in v.items() if k != "agent"}) for v in decision.votes}
    return EngineDecision(
        action=decision.action,
        confidence=decision.confidence,
        raw_score=decision.raw_score,
        size=decision.size,
        votes=votes,
        weights=decision.weights,
        threshold=0.0,
        explanation=decision.explanation,
        conservative=decision.conservative,
    )
