"""The live decision stream of one tenant: ``market.data.update`` events in, decisions out.

Per batch read from the tenant's stream (consumer group ``decisions``):
1. bars are grouped per instrument and timeframe and fed, in time order, to that series' O(1)
   feature engines (the agents' set, and the production model's set when there is one), warmed
   from the stored bars before the first one;
2. every bar after the warm-up gets a decision (agents + consensus); before it, the series'
   decisions whose horizon has passed at this bar are resolved and learned from (weights,
   calibration, accuracy): bar by bar, as a backtest of the configuration does, so a replay of the
   recorded inputs in decision order reproduces every decision (``intelligence/rerun.py``);
3. in ONE transaction: the new bars are stored, the decisions inserted in bulk, outcomes written,
   the paper ledger updated, the engine state saved; after commit, decisions go out on the feed
   and outcomes as ``feedback.prediction.outcome`` events; only then is the batch acknowledged.

A consumer killed anywhere in between leaves its batch pending: it is re-delivered (to a
restarted or another consumer), and because bars and decisions were written together or not at
all, and a stream decision is unique per bar, no bar is lost and none is decided twice. A batch
that fails in a live process makes it forget what it held in memory (series, learned state), so
the retry starts from what was stored, as a restarted process would.

Each decision records what stored bars cannot give back (``Decision.inputs``: the paper position
the risk agent read, the model's prediction and its own features, agents that failed), and the
engine is checkpointed (``EngineCheckpoint``) when a process loads it and every
``CHECKPOINT_EVERY_S``: together the recorded state a replay starts from.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd
import redis
from django.db import connection, models, transaction
from django.utils import timezone

from compliance import controls
from eventbus import bus
from notifications.decisions import offer as notify_decisions
from ops import metrics
from tenants import metering

from . import controls as decision_controls
from . import learning, services
from .agents import Context
from .agents.features import agent_feature_spec
from .broker import PaperBroker
from .event_consumers import EXPOSURE_MAX, risk_limits
from .feed import publish_decisions
from .ledger import ledger_apply, position_state
from .models import Decision, EngineCheckpoint, Position, WeightSnapshot
from .rl_agent_input import rl_events_publish, rl_input, rl_version_for

log = logging.getLogger(__name__)

GROUP = "decisions"
MODEL_REFRESH_S = 30.0  # how often a series looks for a newly deployed model
LIVE_CHECK_EVERY = 25  # model outcomes between two auto-rollback checks
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError (restarting) is a ConnectionError
REDIS_RETRY_S = 0.5
LEASE_S = 15.0  # a partition's owner renews its lease well within this; a standby takes over after it
CHECKPOINT_EVERY_S = 300.0  # engine checkpoints (replay starting points) besides the one at each load

# compare-and-renew / compare-and-delete: only the holder moves its lease
_RENEW_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _renew(*, keys, args, client):
    return client.eval(_RENEW_LUA, 1, *keys, *args)


def _release(*, keys, args, client):
    return client.eval(_RELEASE_LUA, 1, *keys, *args)


@dataclass
class Series:
    symbol: str
    timeframe: str
    step: int
    agents_engine: object
    agents_spec_hash: str = ""
    arms: object = None  # models_registry.serving.Arms: production and challenger (traffic split)
    model_engines: dict = field(default_factory=dict)  # version pk -> its feature engine
    rl_version: object = None  # the production RL version for the rl agent (its engine is in model_engines)
    model_checked: float = 0.0
    closes: deque = field(default_factory=lambda: deque(maxlen=services.CLOSES))
    stamps: deque = field(default_factory=lambda: deque(maxlen=services.CLOSES))
    last_ts: int | None = None
    pending: deque = field(default_factory=deque)  # (ts, decision) waiting for their outcome


@dataclass(slots=True)
class _Pending:
    """A bar past warm-up between its features (pass 1) and its decision (pass 3)."""

    ts: int
    row: dict
    closes: np.ndarray
    version: object  # the model version this bar's traffic-split key picked, or None
    model_row: dict | None
    elapsed: float  # seconds spent on this bar so far
    ml: dict | None = None
    rl: dict | None = None  # Context.rl: the deployed RL policy and its feature row


class _Halted(Exception):
    """The kill switch is engaged: stop deciding this batch."""


def partition_of(symbol: str, partitions: int) -> int:
    """The partition deciding ``symbol`` (stable across processes and restarts)."""
    if partitions <= 1:
        return 0
    digest = hashlib.blake2b(symbol.upper().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class TenantStream:
    """One tenant's decision stream, or one partition of it.

    A series must be decided by one process (its features are incremental), so work is shared
    by partition, not by entry: ``partitions`` processes each read the whole stream through their
    own consumer group (``decisions-<i>of<n>``) and decide the instruments that hash to their
    ``partition``, acknowledging the rest unread. With ``lease`` (the management command), a Redis
    lease makes one process the owner of a (tenant, partition); a second one started for the same
    partition waits as a hot standby and takes over within ``LEASE_S`` when the owner dies (its
    pending batch is reclaimed with XAUTOCLAIM)."""

    def __init__(
        self,
        tenant,
        *,
        consumer_name: str | None = None,
        batch: int = 500,
        partition: int = 0,
        partitions: int = 1,
        lease: bool = False,
        watch_config: bool = True,
    ):
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")
        self.tenant = tenant
        self.schema = tenant.schema_name
        self.partition, self.partitions = partition, partitions
        group = GROUP if partitions == 1 else f"{GROUP}-{partition}of{partitions}"
        kwargs = {"name": consumer_name} if consumer_name else {}
        self.consumer = bus.Consumer(
            "market.data.update", group, self.handle, schema=self.schema, batch=batch, **kwargs
        )
        self.lease_key = f"lease:{self.schema}:{group}" if lease else None
        if lease:
            # the lease holder is the group's only reader, so whatever is pending was left by a
            # previous owner (killed mid-batch) or failed here: take it back first, at once, so
            # bars are decided in order (a later bar decided first would make them look seen)
            self.consumer.claim_idle_ms = 0
        self._lease_until = 0.0
        self._redis_warned = 0.0
        self.redis_errors = 0  # reads or acknowledgements that found Redis unreachable
        self.series: dict[tuple[str, str], Series] = {}
        self.pipeline = None
        self.decided = 0
        self.last_bar: dict[str, dict] = {}
        self._model_outcomes = 0  # model outcomes since the last auto-rollback check
        self._checkpointed = 0.0  # monotonic time of the last engine checkpoint
        self.halted = False  # the kill switch stopped this stream (it resumes when lifted)
        # hot reload: the live configuration's newest version (pushed over the channel layer)
        self.watcher = None
        self._watch_config = watch_config
        self._config_seen = 0  # the newest version this process has loaded or reloaded for
        self.reloads = 0
        self._start_reason = "start"
        self._after_id = 0  # the newest decision id this process's engine state includes
        # where a batch's time goes: features + predictions + agents + consensus, then the transaction
        self.timings = {"bars": 0, "compute_s": 0.0, "commit_s": 0.0}

    def start(self) -> None:
        self.consumer.ensure_group(start=self._resume_point())
        if self._watch_config and self.watcher is None:
            from configuration.reload import ConfigWatcher

            self.watcher = ConfigWatcher(self.schema).start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def _config_check(self) -> None:
        """A newer live configuration: drop the pipeline and the series at this batch boundary, so
        the next batch runs wholly on the new one (rebuilt from storage, as after a restart,
        with a "reload" checkpoint a replay switches at)."""
        if self.watcher is None or self.pipeline is None:
            return
        latest = self.watcher.latest()
        if latest is not None and latest > self._config_seen:
            self._config_seen = latest
            if latest > self.pipeline.config_version:
                log.info("%s: configuration prod@%s: reloading the pipeline", self.schema, latest)
                self._forget()
                self._start_reason = "reload"
                self.reloads += 1

    def _resume_point(self) -> str:
        """Where a new group starts: where the decision groups already on the stream have got to
        (the earliest undelivered-or-unacknowledged entry), so re-partitioning neither skips a bar
        nor re-reads the whole kept stream; "0" on a stream nobody decided yet."""
        r = bus.client()
        try:
            groups = r.xinfo_groups(self.consumer.key)
        except Exception:  # noqa: BLE001 - no stream yet
            return "0"
        points = []
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name != GROUP and not name.startswith(f"{GROUP}-"):
                continue
            if name == self.consumer.group:
                return "0"  # exists: ensure_group keeps its position
            last = g["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else last
            if g["pending"]:
                first = r.xpending(self.consumer.key, name)["min"]
                first = first.decode() if isinstance(first, bytes) else first
                ms, seq = (int(x) for x in first.split("-"))
                last = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"
            points.append(tuple(int(x) for x in last.split("-")))
        if not points:
            return "0"
        ms, seq = min(points)
        return f"{ms}-{seq}"

    def owns(self) -> bool:
        """Hold (or renew, or take) this partition's lease; False while another process owns it."""
        if self.lease_key is None:
            return True
        now = time.monotonic()
        if now < self._lease_until - LEASE_S / 2:
            return True
        r = bus.client()
        name = self.consumer.name
        held = _renew(keys=[self.lease_key], args=[name, int(LEASE_S * 1000)], client=r)
        if held or r.set(self.lease_key, name, nx=True, px=int(LEASE_S * 1000)):
            self._lease_until = now + LEASE_S
            return True
        self._lease_until = 0.0
        return False

    def release(self) -> None:
        if self.lease_key is not None:
            _release(keys=[self.lease_key], args=[self.consumer.name], client=bus.client())
            self._lease_until = 0.0

    def run_once(self, block_ms: int = 100) -> int:
        """Handle one batch (0 when there was none, or Redis is unreachable: then it waits a moment
        and the caller simply calls again -- the process outlives a Redis restart)."""
        try:
            return self._run_once(block_ms)
        except REDIS_DOWN as exc:
            self._redis_lost(exc)
            return 0

    def _redis_lost(self, exc: Exception) -> None:
        """Redis restarting or unreachable. Nothing is lost: an unacknowledged batch stays pending
        (its bars already decided are found stored when it comes back), the lease is checked
        again before the next read, and memory starts over from storage (it may have run ahead
        of what was acknowledged). Redis must keep its state over a restart (appendonly: the
        stream and its consumer group are the only copy of bars not yet decided)."""
        now = time.monotonic()
        if now - self._redis_warned > 10:
            log.warning("%s: Redis unreachable (%s); retrying", self.schema, exc)
            self._redis_warned = now
        self.redis_errors += 1
        self._lease_until = 0.0
        self._forget()
        time.sleep(REDIS_RETRY_S)

    def _run_once(self, block_ms: int) -> int:
        from django_tenants.utils import schema_context

        if not self.owns():
            time.sleep(min(block_ms, 1000) / 1000)  # standby
            return 0
        if controls.kill_state(self.schema) is not None:  # halted: read nothing, decide nothing
            self.halted = True
            time.sleep(min(block_ms, 100) / 1000)
            return 0
        self.halted = False
        with schema_context(self.schema):
            self._config_check()
            return self.consumer.run_once(block_ms=block_ms)

    # --- the handler -------------------------------------------------------------------------

    def handle(self, entries: list[bus.Entry]) -> list[str] | None:
        try:
            self._handle(entries)
        except _Halted:
            # the kill switch engaged mid-batch: nothing of it is stored or published; the batch
            # stays pending (not a failure: it is decided once the switch is lifted)
            self._forget()
            self.halted = True
            self.consumer.claim_idle_ms = 0  # taken back first once lifted: bars stay in order
            return [e.id for e in entries]
        except Exception:
            self._forget()
            raise

    def _forget(self) -> None:
        """Memory ran ahead of the database (series past bars that were not stored, an engine that
        learned outcomes that were not saved): drop it, so the redelivery starts from storage."""
        self.series.clear()
        self.pipeline = None

    def _handle(self, entries: list[bus.Entry]) -> None:
        started = time.perf_counter()
        if self.partitions > 1:  # other partitions' instruments: acknowledged, not decided here
            entries = [e for e in entries if partition_of(e.data["symbol"], self.partitions) == self.partition]
            if not entries:
                return
        if self.pipeline is None:
            self.pipeline = services.pipeline_load(self.tenant, fresh=True)
            self._config_seen = max(self._config_seen, self.pipeline.config_version)
            self._checkpoint(self._start_reason)
            self._start_reason = "start"
        engine = self.pipeline.engine
        self._threshold_seen = (engine, engine.min_confidence(), engine.conservative)
        limit = risk_limits(self.schema)["max_exposure"]  # adapted by the event consumers
        self._max_exposure = limit if limit < EXPOSURE_MAX else None
        groups: dict[tuple[str, str], list[dict]] = {}
        for e in entries:
            groups.setdefault((e.data["symbol"].upper(), e.data["timeframe"]), []).append(e.data)
        new_bars: dict[tuple[str, str], list[dict]] = {}
        decisions: list[tuple[Decision, float]] = []
        # positions as of the batch start (the ledger moves them at commit): one query, not one per bar
        self.positions = {p.symbol: p for p in Position.objects.filter(symbol__in={k[0] for k in groups})}
        resolved: list[tuple[Decision, int]] = []
        # 1. features, bar by bar per series (the engines are O(1) per bar)
        steps: list[tuple[Series, dict, _Pending | None]] = []
        for key, bars in groups.items():
            bars.sort(key=lambda b: b["ts"])
            series = self._series(*key, first_ts=bars[0]["ts"])
            for bar in bars:
                if series.last_ts is not None and bar["ts"] <= series.last_ts:
                    continue  # already seen (a redelivery overlapping what this process has processed)
                new_bars.setdefault(key, []).append(bar)
                steps.append((series, bar, self._advance(series, bar)))
        # 2. model predictions: one batch call per model version for the whole read batch
        self._predict([p for _, _, p in steps if p is not None and p.model_row is not None])
        # 3. outcomes, learned before the next decision, and decisions, in each series' bar order
        stored = self._stored([(series, bar) for series, bar, p in steps if p is not None])
        engine = self.pipeline.engine
        for series, bar, pending in steps:
            ts, close = bar["ts"], float(bar["close"])
            while series.pending and series.pending[0][0] + series.pending[0][1].horizon * series.step <= ts:
                _then, decision, then_close = series.pending.popleft()
                realized = int(np.sign(close - then_close))
                if decision.resolved_at is None:  # else learned by the process that resolved it
                    result = decision._result
                    engine.record_outcome(decision.symbol, result.votes, result, realized)
                resolved.append((decision, realized))
            if pending is not None:
                decision = stored.get((series.symbol, series.timeframe, ts))
                if decision is None:
                    if controls.kill_state(self.schema) is not None:
                        raise _Halted
                    decision = self._decide(series, pending, close)
                    decisions.append((decision, close))
                elif any(d.pk == decision.pk for _, d, _ in series.pending):
                    continue  # this process holds it already
                series.pending.append((ts, decision, close))
        if not new_bars and not decisions:
            return
        computed = time.perf_counter()
        if decisions and controls.kill_state(self.schema) is not None:
            raise _Halted  # engaged while the batch was computed: it is not committed
        runtime = self.pipeline.runtime
        decision_controls.throttle([d for d, _ in decisions], runtime=runtime, schema=self.schema)
        self._commit(new_bars, decisions, resolved)
        held = [d for d, _ in decisions if d.vetoed_by.startswith("control:")]
        if held:
            decision_controls.alert_blocked(held[-1].vetoed_by[8:], held[-1].inputs["blocked"]["reason"])
        if decisions:
            decision_controls.ledger_guard(tenant=self.tenant, runtime=runtime, ledger=self.pipeline.ledger)
        self.timings["compute_s"] += computed - started
        self.timings["commit_s"] += time.perf_counter() - computed
        self.timings["bars"] += sum(len(b) for b in new_bars.values())
        metrics.stream_batch(
            tenant=self.tenant,
            bars=sum(len(b) for b in new_bars.values()),
            latencies_ms=[d.latency_ms for d, _ in decisions],
            seconds=time.perf_counter() - started,
        )

    def _advance(self, series: Series, bar: dict) -> _Pending | None:
        """Feed one bar to the series' engines; what its decision needs (None while warming up)."""
        started = time.perf_counter()
        ts, close = bar["ts"], float(bar["close"])
        o, h, lo, v = bar["open"], bar["high"], bar["low"], bar["volume"]
        values = series.agents_engine.update(ts, o, h, lo, close, v)
        # engines are shared by spec (a model on the agents' own features reuses their engine)
        done = {id(series.agents_engine): values}
        model_values = {}
        for pk, e in series.model_engines.items():
            key = id(e)
            if key not in done:
                done[key] = e.update(ts, o, h, lo, close, v)
            model_values[pk] = done[key]
        series.closes.append(close)
        series.stamps.append(ts)
        series.last_ts = ts
        self.last_bar[series.symbol] = {"timeframe": series.timeframe, "ts": ts, "close": close}
        if values is None:  # warming up: no decision on incomplete features
            return None
        row = dict(zip(series.agents_engine.columns, map(float, values), strict=True))
        version = series.arms.pick(services.ab_key(series.symbol, ts)) if series.arms is not None else None
        model_row = None
        if version is not None and model_values.get(version.pk) is not None:
            columns = series.model_engines[version.pk].columns
            model_row = dict(zip(columns, map(float, model_values[version.pk]), strict=True))
        closes = np.fromiter(series.closes, dtype=np.float64)
        rl = None
        if series.rl_version is not None:
            rl_values = model_values.get(series.rl_version.pk)
            rl_row = {}
            if series.rl_version.feature_names and rl_values is not None:
                columns = series.model_engines[series.rl_version.pk].columns
                rl_row = dict(zip(columns, map(float, rl_values), strict=True))
            rl = rl_input(series.rl_version, rl_row)
        return _Pending(ts, row, closes, version, model_row, time.perf_counter() - started, rl=rl)

    def _predict(self, pending: list[_Pending]) -> None:
        by_version: dict[int, list[_Pending]] = {}
        for p in pending:
            by_version.setdefault(p.version.pk, []).append(p)
        for items in by_version.values():
            started = time.perf_counter()
            preds = services.ml_predictions(items[0].version, [p.model_row for p in items])
            share = (time.perf_counter() - started) / len(items)
            for p, pred in zip(items, preds, strict=True):
                p.ml, p.elapsed = pred, p.elapsed + share

    def _stored(self, bars: list[tuple[Series, dict]]) -> dict[tuple[str, str, int], Decision]:
        """The bars of this batch an earlier delivery decided already (a consumer killed after its
        commit, before its ack): their stored decisions, which stand (each bar is decided once)."""
        if not bars:
            return {}
        symbols = {series.symbol for series, _ in bars}
        stamps = {pd.Timestamp(bar["ts"], unit="s", tz="UTC").to_pydatetime() for _, bar in bars}
        out = {}
        for row in Decision.objects.filter(source=Decision.Source.STREAM, symbol__in=symbols, ts__in=stamps).defer(
            "features", "inputs"
        ):
            row._result = _result_of(row)
            out[(row.symbol, row.timeframe, int(row.ts.timestamp()))] = row
        return out

    def _decide(self, series: Series, p: _Pending, price: float) -> Decision:
        started = time.perf_counter()
        pipeline = self.pipeline
        position = position_state(self.positions.get(series.symbol), pipeline.ledger)
        ctx = stream_context(series.symbol, series.timeframe, p.ts, p.row, p.closes, p.ml, position, pipeline, rl=p.rl)
        result = pipeline.decide(ctx)
        decision = services.decision_row(
            source=Decision.Source.STREAM,
            symbol=series.symbol,
            timeframe=series.timeframe,
            ts=pd.Timestamp(p.ts, unit="s", tz="UTC").to_pydatetime(),
            result=result,
            features=p.row,
            flow_ref=pipeline.flow_ref,
            model_version=p.ml["version"] if p.ml else "",
            latency_ms=(p.elapsed + time.perf_counter() - started) * 1000,
            inputs=decision_inputs(position, p.ml, p.model_row if p.model_row != p.row else None, result.failures),
        )
        if pipeline.runtime:
            decision.inputs["config"] = pipeline.runtime["config"]  # the configuration version it ran under
        if p.rl is not None:  # what the rl agent read, for a replay (the policy is reloaded by version)
            row = {k: (None if v != v else v) for k, v in p.rl["features"].items()}
            decision.inputs["rl"] = {"version": p.rl["version"], "features": row}
        decision_controls.pretrade(
            decision, price=price, position=position, runtime=pipeline.runtime, ledger=pipeline.ledger
        )
        decision_controls.risk_limit(decision, max_exposure=getattr(self, "_max_exposure", None))
        decision._result = result  # for the outcome, in this process
        return decision

    def _commit(self, new_bars, decisions, resolved) -> None:
        from marketdata import services as md_services

        from .selectors import decision_payload

        pipeline = self.pipeline
        with transaction.atomic():
            md_services.bars_append(tenant=self.tenant, bars=[b for bars in new_bars.values() for b in bars])
            # this batch's new decisions (bars decided by an earlier delivery were taken from storage)
            _copy_decisions([d for d, _ in decisions])
            # inserted just now: none has a fill; executed through the paper broker (trade events)
            ledger_apply(decisions, pipeline.ledger, fresh=True, broker=PaperBroker.from_flow(pipeline.flow))
            outcomes = self._resolve(resolved)
            services.engine_save(pipeline)
            if decisions:
                self._after_id = max(self._after_id, max(d.pk for d, _ in decisions))
            if time.monotonic() - self._checkpointed >= CHECKPOINT_EVERY_S:
                self._checkpoint("periodic")
            payloads = [decision_payload(d) for d, _ in decisions]
            schema = self.schema
            notify_decisions(list(zip(payloads, [price for _, price in decisions], strict=True)), schema)
            if pipeline.runtime.get("publish", True):
                transaction.on_commit(lambda: publish_decisions(payloads, schema))
            predictions = [e for e in (prediction_event(d) for d, _ in decisions) if e]
            if predictions:
                transaction.on_commit(lambda: bus.publish_many("ml.prediction.ready", predictions, schema=schema))
            if any(s.rl_version is not None for s in self.series.values()):
                voted = [d for d, _ in decisions]
                transaction.on_commit(lambda: [rl_events_publish(d, schema) for d in voted])
            if outcomes:
                transaction.on_commit(lambda: bus.publish_many("feedback.prediction.outcome", outcomes, schema=schema))
                self._threshold_changed(schema)
        self.decided += len(decisions)
        # billed units, one round trip a batch
        metering.units_add_many(
            self.tenant, {"decision": len(decisions), "prediction": sum(1 for d, _ in decisions if d.model_version)}
        )
        self._model_outcomes += sum(1 for o in outcomes if "model_correct" in o)
        if self._model_outcomes >= LIVE_CHECK_EVERY:
            self._model_outcomes = 0
            if learning.models_live_check():  # a rollback or an opened circuit: pick up the change now
                for series in self.series.values():
                    series.model_checked = 0.0

    def _threshold_changed(self, schema: str) -> None:
        """The adaptive threshold or conservative mode moved while this batch was learned from:
        audited in this transaction, ``ml.threshold.adjusted`` published after commit."""
        engine, old, was_conservative = getattr(self, "_threshold_seen", (None, None, None))
        if engine is not self.pipeline.engine:
            return
        new, conservative = engine.min_confidence(), engine.conservative
        if new == old and conservative == was_conservative:
            return
        from compliance.services import audit_record

        adaptive = engine.flow["adaptive"]
        event = {
            "name": "min_confidence", "old": old, "new": new, "min": adaptive["floor"], "max": adaptive["ceiling"],
            "reason": "recent precision vs target" if new != old else "recent accuracy vs the conservative limits",
            "ts": int(time.time()), "conservative": conservative,
        }  # fmt: skip
        audit_record(None, "ml.threshold.adjusted", details={**event, "flow": self.pipeline.flow_name})
        self._threshold_seen = (engine, new, conservative)
        transaction.on_commit(lambda: bus.publish("ml.threshold.adjusted", event, schema=schema))

    def _checkpoint(self, reason: str) -> None:
        """Record the engine as it stands, with what it waits to learn from: a replay starts here."""
        pipeline = self.pipeline
        if reason in ("start", "reload"):
            newest = Decision.objects.order_by("-id").values_list("id", flat=True).first()
            self._after_id = newest or 0
        pending = [
            {
                "id": decision.pk,
                "symbol": series.symbol,
                "timeframe": series.timeframe,
                "ts": then,
                "close": then_close,
                "horizon": decision.horizon,
                "result": result_state(decision._result),
            }
            for series in self.series.values()
            for then, decision, then_close in series.pending
        ]
        EngineCheckpoint.objects.create(
            flow=pipeline.flow_name,
            flow_ref=pipeline.flow_ref,
            flow_config={**pipeline.flow, "runtime": pipeline.runtime},
            partition=f"{self.partition}of{self.partitions}",
            reason=reason,
            after_id=self._after_id,
            state=pipeline.engine.to_json(),
            pending=pending,
            series=[[series.symbol, series.timeframe] for series in self.series.values()],
        )
        self._checkpointed = time.monotonic()

    def _resolve(self, resolved: list[tuple[Decision, int]]) -> list[dict]:
        if not resolved:
            return []
        engine = self.pipeline.engine
        now = timezone.now()
        events = []
        updates = []
        for decision, realized in resolved:
            if decision.resolved_at is not None:  # resolved already (a redelivered, resolved bar)
                continue
            decision.realized = realized
            decision.correct = (
                None if decision.action == "HOLD" else (realized == (1 if decision.action == "BUY" else -1))
            )
            decision.model_correct = (
                learning.model_correct(decision.votes, realized) if decision.model_version else None
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
                    **({"model_correct": decision.model_correct} if decision.model_correct is not None else {}),
                }
            )
        if updates:  # one UPDATE … FROM unnest (bulk_update's CASE per row costs ~1 ms a row)
            with connection.cursor() as cur:
                cur.execute(
                    f"UPDATE {Decision._meta.db_table} AS d SET realized = u.realized, correct = u.correct, "
                    "model_correct = u.model_correct, resolved_at = %s FROM unnest(%s::bigint[], %s::smallint[], "
                    "%s::boolean[], %s::boolean[]) AS u(id, realized, correct, model_correct) WHERE d.id = u.id",
                    [
                        now,
                        [d.pk for d in updates],
                        [d.realized for d in updates],
                        [d.correct for d in updates],
                        [d.model_correct for d in updates],
                    ],
                )
        accuracy = engine.accuracy()
        WeightSnapshot.objects.bulk_create(
            WeightSnapshot(
                flow=self.pipeline.flow_name, symbol=symbol, weights=engine.weights(symbol), accuracy=accuracy
            )
            for symbol in sorted({d.symbol for d in updates})
        )
        return events

    # --- series ------------------------------------------------------------------------------

    def _series(self, symbol: str, timeframe: str, *, first_ts: int) -> Series:
        key = (symbol, timeframe)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = self._warm(symbol, timeframe, first_ts)
        if time.monotonic() - series.model_checked > MODEL_REFRESH_S:
            self._attach_models(series, first_ts)
        return series

    def _warm(self, symbol: str, timeframe: str, before_ts: int) -> Series:
        from features.engine import IncrementalEngine
        from marketdata.models import TIMEFRAME_SECONDS

        spec = agent_feature_spec(timeframe)
        engine = IncrementalEngine(spec, timeframe)
        series = Series(symbol, timeframe, TIMEFRAME_SECONDS[timeframe], engine, spec.hash())
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

    def _attach_models(self, series: Series, before_ts: int) -> None:
        """(Re)read who serves the series' model (production, challenger and split); build and warm
        a feature engine for each version not seen before."""
        from features import selectors as fs_selectors
        from features.engine import IncrementalEngine
        from models_registry import serving

        series.model_checked = time.monotonic()
        model = services.model_for(symbol=series.symbol, timeframe=series.timeframe, flow=self.pipeline.flow)
        series.arms = serving.arms_get(model) if model is not None else None
        wanted = {v.pk: v for v in series.arms.versions} if series.arms is not None else {}
        agents = self.pipeline.flow["agents"]
        series.rl_version = rl_version_for(symbol=series.symbol, timeframe=series.timeframe) if "rl" in agents else None
        if series.rl_version is not None and series.rl_version.feature_names:
            wanted[series.rl_version.pk] = series.rl_version
        for pk in [pk for pk in series.model_engines if pk not in wanted]:
            del series.model_engines[pk]
        by_spec = {series.agents_spec_hash: series.agents_engine}
        for engine in series.model_engines.values():
            by_spec.setdefault(engine.spec.hash(), engine)
        for pk, version in wanted.items():
            if pk in series.model_engines:
                continue
            spec = fs_selectors.feature_set_spec(version.feature_set)
            engine = by_spec.get(spec.hash())
            if engine is None:
                engine = by_spec[spec.hash()] = IncrementalEngine(spec, series.timeframe)
                for ts, o, h, lo, c, v in self._history(
                    series.symbol, series.timeframe, before_ts, engine.warmup * 3 + 50
                ):
                    engine.update(ts, o, h, lo, c, v)
            series.model_engines[pk] = engine

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
        return {"decided": self.decided, "last_bar": self.last_bar, "stream": info, "timings": dict(self.timings)}


def _copy_decisions(decisions: list[Decision]) -> None:
    """Insert with COPY (ids taken from the table's sequence first, so they still increase in
    decision order): a read batch's decisions in one round trip, JSON encoded once with orjson.
    ``bulk_create`` quoted every parameter client-side (~1 ms per decision with its features)."""
    if not decisions:
        return
    table = Decision._meta.db_table
    fields = [f for f in Decision._meta.concrete_fields if f.column != "id"]
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(decisions)]
        )
        ids = [row[0] for row in cur.fetchall()]
        columns = ", ".join(["id", *(f.column for f in fields)])
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for pk, d in zip(ids, decisions, strict=True):
                d.pk, d.created_at = pk, now
                copy.write_row(
                    [
                        pk,
                        *(
                            orjson.dumps(getattr(d, f.attname)).decode()
                            if f.attname in json_fields
                            else getattr(d, f.attname)
                            for f in fields
                        ),
                    ]
                )
    for d in decisions:
        d._state.adding = False


def stream_status(schema: str | None = None) -> dict:
    """For ``data-stream-status``: the stream's length, groups (pending, lag) and the last bars."""
    schema = schema or connection.schema_name
    return bus.stream_info("market.data.update", schema=schema)


def stream_context(symbol, timeframe, ts, features, closes, ml, position, pipeline, rl=None) -> Context:
    """What the agents read for a stream decision (live, and in a replay of one)."""
    return Context(
        symbol=symbol,
        timeframe=timeframe,
        ts=ts,
        features=features,
        closes=closes,
        ml=ml,
        rl=rl,
        position=position,
        settings=pipeline.settings,
    )


def prediction_event(decision: Decision) -> dict | None:
    """``ml.prediction.ready`` of a decision the served model predicted for (None: it did not)."""
    ml = (decision.inputs or {}).get("ml")
    if not ml or not decision.model_version:
        return None
    label = ml.get("label", ml.get("class", ml.get("prediction")))
    return {
        "symbol": decision.symbol,
        "timeframe": decision.timeframe,
        "ts": int(decision.ts.timestamp()),
        "model_version": decision.model_version,
        "prediction": str(label),
        "probabilities": {str(k): float(v) for k, v in (ml.get("probabilities") or {}).items()},
        "decision_id": decision.pk,
    }


def decision_inputs(position: dict, ml: dict | None, model_features: dict | None, failures: dict) -> dict:
    """``Decision.inputs``: what a decision read besides its features and the stored bars."""
    out: dict = {"position": position}
    if ml:
        out["ml"] = ml
    if model_features is not None:
        out["model_features"] = {k: (None if v != v else v) for k, v in model_features.items()}
    if failures:
        out["failures"] = dict(failures)
    return out


def result_state(result) -> dict:
    """The engine's view of a decision, exactly (what ``record_outcome`` reads), for checkpoints."""
    return {
        "action": result.action,
        "raw_score": result.raw_score,
        "fallback": result.fallback,
        "votes": {name: [v.action, v.confidence, v.abstained] for name, v in result.votes.items()},
    }


def result_from_state(data: dict):
    from .agents import Vote
    from .consensus import Decision as EngineDecision

    votes = {
        name: Vote(action, confidence, "", {"abstain": True} if abstained else {})
        for name, (action, confidence, abstained) in data["votes"].items()
    }
    return EngineDecision(
        action=data["action"], confidence=0.0, raw_score=data["raw_score"], size=0.0, votes=votes, weights={},
        threshold=0.0, explanation="", fallback=data["fallback"],
    )  # fmt: skip


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
