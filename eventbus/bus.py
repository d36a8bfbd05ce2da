"""The event bus: the one place that owns stream names, event schemas, publishing and consuming.

Streams are Redis Streams in the project's Redis (logical database ``REDIS_DB_STREAMS``), one per
tenant schema and event: ``stream:{schema}:{event}``. Every entry is one versioned envelope::

    {"v": 1, "type": "market.data.update", "ts": 1700000000.123, "data": {...}}

validated against the event's schema when published (a bad event never enters a stream).

Consuming is at-least-once through consumer groups:
- a consumer reads a batch (``XREADGROUP``), hands it to the handler, and acknowledges it only
  after the handler returned, so handlers must be idempotent (decide by a natural key);
- entries a dead consumer left pending are taken over after ``claim_idle_ms`` (``XAUTOCLAIM``);
- an entry that failed ``max_deliveries`` times goes to the tenant's dead-letter stream
  ``stream:{schema}:dlq`` with its error, and is acknowledged; ``dlq_list`` / ``dlq_replay``
  (and the ``events_dlq`` command) inspect and re-publish them;
- streams are trimmed approximately (``MAXLEN ~``) on every publish.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import connection

from api.errors import ApplicationError

log = logging.getLogger(__name__)

DLQ = "dlq"
ENVELOPE_VERSION = 1

# --- schemas ---------------------------------------------------------------------------------------
# A schema maps each field to its type(s); a trailing "?" in the name marks it optional. Kept this
# small on purpose: checking a dict of scalars costs a few µs, a JSON-Schema validator ~100 µs.

_NUMBER = (int, float)
_TYPES = {"str": (str,), "int": (int,), "number": _NUMBER, "bool": (bool,), "dict": (dict,), "list": (list,)}


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    fields: dict[str, str]
    summary: str = ""

    def __post_init__(self):
        # parsed once: (name, optional, kind, accepted types); the known names as a set
        parsed = tuple((k.rstrip("?"), k.endswith("?"), kind, _TYPES[kind]) for k, kind in self.fields.items())
        object.__setattr__(self, "_parsed", parsed)
        object.__setattr__(self, "_known", frozenset(p[0] for p in parsed))

    def check(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ApplicationError("invalid_event", f"{self.name}: the payload must be an object.")
        problems = []
        for name, optional, kind, types in self._parsed:
            value = data.get(name)
            if value is None:
                if not optional:
                    problems.append(f"{name} is required")
                continue
            if isinstance(value, bool) and kind != "bool" or not isinstance(value, types):
                problems.append(f"{name} must be {kind}")
        if not self._known.issuperset(data):
            problems += [f"{k} is not a field of {self.name} v{self.version}" for k in data if k not in self._known]
        if problems:
            raise ApplicationError("invalid_event", f"{self.name}: " + "; ".join(problems), {"problems": problems})


EVENTS: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType(
            "market.data.update",
            1,
            {
                "symbol": "str",
                "timeframe": "str",
                "ts": "int",  # the bar's open time, epoch seconds
                "open": "number",
                "high": "number",
                "low": "number",
                "close": "number",
                "volume": "number",
                "source?": "str",
            },
            "A closed OHLCV bar of one instrument.",
        ),
        EventType(
            "ml.prediction.ready",
            1,
            {
                "symbol": "str",
                "timeframe": "str",
                "ts": "int",
                "model_version": "str",
                "prediction": "str",
                "probabilities": "dict",
                "decision_id?": "int",
            },
            "A model's prediction for a bar.",
        ),
        EventType(
            "feedback.prediction.outcome",
            1,
            {
                "decision_id": "int",
                "symbol": "str",
                "timeframe": "str",
                "ts": "int",
                "realized": "int",  # +1 up, -1 down, 0 flat
                "correct?": "bool",
                "model_version?": "str",
                "model_correct?": "bool",  # the served model's own direction was right
            },
            "What happened after a decision's horizon passed.",
        ),
        # --- the paper broker and ledger (intelligence.broker) ---
        EventType(
            "trade.executed",
            1,
            {
                "order_id": "str",
                "symbol": "str",
                "side": "str",  # BUY / SELL
                "qty": "number",  # filled, > 0
                "requested_qty": "number",
                "price": "number",  # the fill price, spread included
                "fee": "number",
                "ts": "int",  # epoch seconds
                "partial": "bool",
                "decision_id?": "int",
                "timeframe?": "str",
                "spread_bps?": "number",
                "latency_ms?": "number",  # simulated venue latency
                "realized_pnl?": "number",
                "broker?": "str",
            },
            "A (possibly partial) fill of an order executed by the broker.",
        ),
        EventType(
            "position.opened",
            1,
            {
                "symbol": "str",
                "side": "str",  # LONG / SHORT
                "qty": "number",
                "avg_price": "number",
                "ts": "int",
                "decision_id?": "int",
                "order_id?": "str",
            },
            "A position opened from flat (or flipped to the other side).",
        ),
        EventType(
            "position.closed",
            1,
            {
                "symbol": "str",
                "side": "str",  # the side that was closed
                "qty": "number",  # the quantity closed
                "avg_price": "number",
                "exit_price": "number",
                "realized_pnl": "number",  # realised by the closing fill, net of its fee
                "ts": "int",
                "fees?": "number",
                "decision_id?": "int",
                "order_id?": "str",
                "holding_s?": "number",
            },
            "A position went back to flat (or flipped), with its realised P&L.",
        ),
        EventType(
            "performance.update",
            1,
            {
                "ts": "int",
                "equity": "number",
                "realized_pnl": "number",
                "unrealized_pnl": "number",
                "drawdown": "number",  # fraction of the peak equity
                "exposure": "number",  # gross, fraction of equity
                "trades": "int",
                "open_positions?": "int",
                "win_rate?": "number",
                "accuracy?": "number",  # of resolved directional decisions in the window
                "resolved?": "int",
                "window?": "int",
                "reason?": "str",
            },
            "A periodic snapshot of the tenant's paper performance.",
        ),
        # --- adaptive control ---
        EventType(
            "ml.threshold.adjusted",
            1,
            {
                "name": "str",
                "old": "number",
                "new": "number",
                "min": "number",
                "max": "number",
                "reason": "str",
                "ts": "int",
                "symbol?": "str",
                "conservative?": "bool",
            },
            "An adaptive threshold moved (always within its bounds; audited).",
        ),
        EventType(
            "ml.risk.limit.update",
            1,
            {
                "limit": "str",
                "old": "number",
                "new": "number",
                "min": "number",
                "max": "number",
                "reason": "str",
                "ts": "int",
                "symbol?": "str",
            },
            "A risk limit changed (bounded); the risk agent and pre-trade checks apply it.",
        ),
        # --- the RL agent (produced by intelligence's RL agent) ---
        EventType(
            "rl.signal.generated",
            1,
            {
                "symbol": "str",
                "timeframe": "str",
                "ts": "int",
                "model_version": "str",
                "action": "str",  # BUY / SELL / HOLD
                "q_values?": "dict",
                "decision_id?": "int",
            },
            "The RL agent's signal for a bar.",
        ),
        EventType(
            "rl.confidence.update",
            1,
            {
                "symbol": "str",
                "timeframe": "str",
                "model_version": "str",
                "confidence": "number",
                "window?": "int",
            },
            "The RL agent's confidence in its recent signals changed.",
        ),
        EventType(
            "rl.action.recommended",
            1,
            {
                "symbol": "str",
                "timeframe": "str",
                "ts": "int",
                "model_version": "str",
                "action": "str",
                "confidence": "number",
                "size?": "number",
            },
            "A specific trade the RL agent recommends.",
        ),
        EventType(
            "feedback.performance",
            1,
            {
                "ts": "int",
                "window": "int",  # resolved decisions considered
                "agents": "dict",  # agent -> {"n": int, "hits": int, "accuracy": number|None}
                "accuracy?": "number",  # the consensus's own
                "resolved?": "int",
                "pnl?": "number",
            },
            "Overall performance metrics of the consensus and its agents, feeding the weights.",
        ),
        *(
            EventType(
                name,
                1,
                {
                    "alert_id": "int",
                    "rule": "str",
                    "state": "str",
                    "value": "number",
                    "threshold": "number",
                    "message": "str",
                    "label?": "str",
                    "metric?": "str",
                    "severity?": "str",
                },  # fmt: skip
                text,
            )
            for name, text in (
                ("alert.fired", "A monitored metric crossed its alert rule's threshold (analytics.alerts)."),
                ("alert.resolved", "A firing alert's metric is back within its threshold."),
                ("alert.escalated", "An alert still fires, unacknowledged, past its rule's escalation delay."),
            )
        ),
        EventType(
            "anomaly.detected",
            1,
            {
                "anomaly_id": "int",
                "kind": "str",  # bar_return, bar_volume, bar_isolation, decision_rate, confidence_shift
                "symbol": "str",
                "timeframe": "str",
                "ts": "int",  # the bar's (or bucket's) open time, epoch seconds
                "value": "number",
                "score": "number",  # robust z (signed) or IsolationForest score
                "method": "str",
            },
            "An unusual bar or decision-stream reading found by riskcore's anomaly detection.",
        ),
    )
}


def event_type(name: str) -> EventType:
    try:
        return EVENTS[name]
    except KeyError:
        raise ApplicationError("unknown_event", f"Unknown event '{name}'.", {"events": sorted(EVENTS)}) from None


# --- connection and names ------------------------------------------------------------------------

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        from config.settings.services import REDIS_DB_STREAMS, redis_db_url

        _client = redis.Redis.from_url(redis_db_url(REDIS_DB_STREAMS), socket_timeout=10)
    return _client


def stream_key(event: str, schema: str | None = None) -> str:
    schema = schema or connection.schema_name
    if schema == "public":
        raise ApplicationError("no_tenant", "Events belong to a tenant; publish inside its schema.", status=500)
    return f"stream:{schema}:{event}"


def _encode(event: EventType, data: dict) -> bytes:
    return json.dumps({"v": event.version, "type": event.name, "ts": time.time(), "data": data}).encode()


# --- publish -------------------------------------------------------------------------------------


def publish(event: str, data: dict, *, schema: str | None = None) -> str:
    """Append one event; returns its entry id (``<ms>-<seq>``)."""
    return publish_many(event, [data], schema=schema)[0]


def publish_many(event: str, items: Iterable[dict], *, schema: str | None = None) -> list[str]:
    """Append events in one round trip (a pipeline), each validated first: all or none."""
    kind = event_type(event)
    items = list(items)
    for data in items:
        kind.check(data)
    key = stream_key(event, schema)
    pipe = client().pipeline(transaction=False)
    for data in items:
        pipe.xadd(key, {"e": _encode(kind, data)}, maxlen=settings.EVENTBUS_MAXLEN, approximate=True)
    return [i.decode() for i in pipe.execute()]


# --- consume -------------------------------------------------------------------------------------


@dataclass
class Entry:
    id: str
    type: str
    version: int
    data: dict
    published_at: float
    deliveries: int = 1


@dataclass
class Consumer:
    """One member of a consumer group on one tenant's stream of one event.

    ``handler(entries)`` gets a batch and must be idempotent. It may return the ids it could not
    handle (they stay pending and are retried); raising fails the whole batch."""

    event: str
    group: str
    handler: Callable[[list[Entry]], Iterable[str] | None]
    schema: str | None = None
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch: int = 200
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5

    def __post_init__(self):
        self.kind = event_type(self.event)
        self.key = stream_key(self.event, self.schema)
        self.schema = self.key.split(":")[1]
        self.handled = 0
        self.failed = 0
        self.dead_lettered = 0

    def ensure_group(self, start: str = "0") -> None:
        """Create the group (reading from ``start``: "0" = everything kept, "$" = only new)."""
        try:
            client().xgroup_create(self.key, self.group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run_once(self, block_ms: int | None = None) -> int:
        """Reclaim what dead consumers left, then read new entries; handle one batch. Returns how
        many entries were handled successfully."""
        r = client()
        entries = self._reclaim()
        if not entries:
            reply = r.xreadgroup(
                self.group,
                self.name,
                {self.key: ">"},
                count=self.batch,
                block=self.block_ms if block_ms is None else block_ms,
            )
            entries = [self._entry(eid, fields) for _, rows in reply or [] for eid, fields in rows]
        if not entries:
            return 0
        return self._handle(entries)

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        self.ensure_group()
        while not stop():
            try:
                self.run_once()
            except redis.ConnectionError:
                log.warning("event bus: Redis unreachable, retrying in 1 s")
                time.sleep(1)

    # -- internals --

    def _entry(self, eid, fields, deliveries: int = 1) -> Entry:
        raw = json.loads(fields[b"e"])
        return Entry(
            eid.decode() if isinstance(eid, bytes) else eid,
            raw["type"],
            raw["v"],
            raw["data"],
            raw["ts"],
            deliveries,
        )

    def _reclaim(self) -> list[Entry]:
        r = client()
        _, claimed, *_ = r.xautoclaim(
            self.key, self.group, self.name, min_idle_time=self.claim_idle_ms, count=self.batch
        )
        if not claimed:
            return []
        ids = [eid for eid, fields in claimed if fields]
        counts = {}
        if ids:
            pending = r.xpending_range(self.key, self.group, min=ids[0], max=ids[-1], count=len(ids) * 2)
            counts = {p["message_id"]: p["times_delivered"] for p in pending}
        entries, dead = [], []
        for eid, fields in claimed:
            if not fields:  # trimmed away while pending: nothing left to handle
                r.xack(self.key, self.group, eid)
                continue
            entry = self._entry(eid, fields, counts.get(eid, 1))
            (dead if entry.deliveries > self.max_deliveries else entries).append(entry)
        for entry in dead:
            self._dead_letter(entry, "gave up after repeated failures")
        return entries

    def _handle(self, entries: list[Entry]) -> int:
        r = client()
        try:
            failed = set(self.handler(entries) or ())
        except Exception as exc:  # the batch stays pending; each entry is retried (then dead-lettered)
            log.exception("event bus: %s handler failed on %d entries", self.group, len(entries))
            self.failed += len(entries)
            for entry in entries:
                if entry.deliveries >= self.max_deliveries:
                    self._dead_letter(entry, f"{type(exc).__name__}: {exc}")
            return 0
        done = [e.id for e in entries if e.id not in failed]
        if done:
            r.xack(self.key, self.group, *done)
        self.handled += len(done)
        self.failed += len(failed)
        return len(done)

    def _dead_letter(self, entry: Entry, error: str) -> None:
        r = client()
        record = {
            "stream": self.key,
            "group": self.group,
            "id": entry.id,
            "type": entry.type,
            "v": entry.version,
            "data": entry.data,
            "deliveries": entry.deliveries,
            "error": error[:500],
            "at": time.time(),
        }
        pipe = r.pipeline()
        pipe.xadd(stream_key(DLQ, self.schema), {"e": json.dumps(record).encode()}, maxlen=100_000, approximate=True)
        pipe.xack(self.key, self.group, entry.id)
        pipe.execute()
        self.dead_lettered += 1
        log.warning(
            "event bus: %s %s dead-lettered after %d deliveries: %s", self.key, entry.id, entry.deliveries, error
        )


# --- dead letters ---------------------------------------------------------------------------------


def dlq_list(*, schema: str | None = None, count: int = 100) -> list[dict]:
    rows = client().xrange(stream_key(DLQ, schema), count=count)
    return [{"dlq_id": eid.decode(), **json.loads(fields[b"e"])} for eid, fields in rows]


def dlq_replay(*, schema: str | None = None, ids: list[str] | None = None) -> int:
    """Publish dead-lettered events again (all, or the given dead-letter ids) and drop them from
    the dead-letter stream. Returns how many were replayed."""
    r = client()
    key = stream_key(DLQ, schema)
    replayed = 0
    for item in dlq_list(schema=schema, count=100_000):
        if ids and item["dlq_id"] not in ids:
            continue
        kind = event_type(item["type"])
        r.xadd(item["stream"], {"e": _encode(kind, item["data"])}, maxlen=settings.EVENTBUS_MAXLEN, approximate=True)
        r.xdel(key, item["dlq_id"])
        replayed += 1
    return replayed


def stream_info(event: str, *, schema: str | None = None) -> dict:
    """Length, last entry, and per group: pending count, consumers and lag (entries not yet read)."""
    r = client()
    key = stream_key(event, schema)
    if not r.exists(key):
        return {"stream": key, "length": 0, "groups": []}
    info = r.xinfo_stream(key)
    groups = []
    for g in r.xinfo_groups(key):
        groups.append(
            {
                "name": g["name"].decode() if isinstance(g["name"], bytes) else g["name"],
                "pending": g["pending"],
                "consumers": g["consumers"],
                "lag": g.get("lag"),
                "last_delivered": (g["last-delivered-id"] or b"").decode()
                if isinstance(g["last-delivered-id"], bytes)
                else g["last-delivered-id"],
            }
        )
    last = info.get("last-generated-id")
    for g in groups:
        if g["lag"] is None:  # Redis < 7 does not give it: counted, up to LAG_COUNT_CAP
            after = g["last_delivered"] or "0-0"
            g["lag"] = len(r.xrange(key, min=f"({after}", max="+", count=LAG_COUNT_CAP))
    return {
        "stream": key,
        "length": info["length"],
        "last_id": last.decode() if isinstance(last, bytes) else last,
        "groups": groups,
    }


LAG_COUNT_CAP = 10_000
