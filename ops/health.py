"""Service health for platform staff (``GET /api/v1/services-health/`` and /app/staff/health/): every
dependency and every tenant, each figure judged against the thresholds below.

What is measured, and where it comes from:

    postgres        SELECT 1 round trip; connections in pg_stat_activity against max_connections
    redis           PING round trip; used memory against maxmemory (else the machine's memory); clients
                    against maxclients
    celery          which workers answer a broadcast, and which queues each consumes (celery, notify)
    queues          tasks waiting per queue: the broker's Redis lists (priority sub-lists included)
    streams         per tenant event stream and consumer group (XINFO GROUPS): entries not yet read
                    (lag) plus entries read and not acknowledged (pending) = the backlog
    channel_layer   a message through the configured channels_redis layer to the probe's channel and back
    websockets      open sockets per tenant (the plan's connection slots in Redis) against its cap
    error_rate      5xx share of the API requests of this and the previous hour, every tenant
                    (flushed rollups + the Redis meter not yet flushed); judged from 100 requests
    latency_p99     the same requests' p99 from the meter's latency histograms
    availability    the web tier's readiness probes (``ops.availability_probe``), last 24 hours
    tenants         each active tenant ok / degraded / down (:func:`tenant_status`)

A status is ``ok``, ``warn`` or ``critical`` from a figure's thresholds, and ``down`` when the
dependency could not be asked at all: its ``detail`` says what failed and what to do. Nothing here
raises: a report always comes back, within about a second (every call has a short timeout; Redis,
Celery and the channel layer are asked in parallel threads while PostgreSQL is asked in the calling
thread). The report is kept for :data:`CACHE_S` seconds per process. Measured on this 2-core machine
with a worker: ~20 ms a report for 2 tenants, ~70 ms for 26 (the Celery broadcast, then the
per-tenant reads: one UNION ALL over the schemas per figure, one Redis pipeline per kind).

Thresholds (:data:`THRESHOLDS`): where the seeds give a number it is used, and named in ``source``;
the others are ours and say why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection, transaction

OK, WARN, CRITICAL, DOWN = "ok", "warn", "critical", "down"
RANK = {OK: 0, WARN: 1, CRITICAL: 2, DOWN: 3}
TENANT_OK, TENANT_DEGRADED, TENANT_DOWN = "ok", "degraded", "down"
# the OpenAPI enums (settings ENUM_NAME_OVERRIDES name them)
CHECK_STATUSES = [OK, WARN, CRITICAL, DOWN]
FIGURE_STATUSES = [OK, WARN, CRITICAL]
TENANT_STATUSES = [TENANT_OK, TENANT_DEGRADED, TENANT_DOWN]

CACHE_S = 2.0  # a report is reused this long (a page refresh every few seconds costs one report)
REDIS_TIMEOUT_S = 0.5
CELERY_TIMEOUT_S = 1.0
CELERY_REDISCOVER_S = 30.0  # a full-timeout broadcast this often, to notice new workers
CHANNEL_TIMEOUT_S = 1.0
SQL_TIMEOUT_MS = 2000
MIN_REQUESTS = 100  # an error rate is judged from this many requests (as the error_rate alert metric)


@dataclass(frozen=True)
class Threshold:
    """``warn`` and ``critical`` bounds; ``above``: worse when higher (else when lower);
    ``inclusive``: reaching a bound counts (a socket cap reached refuses the next socket)."""

    warn: float
    critical: float
    unit: str
    source: str
    above: bool = True
    inclusive: bool = False

    def judge(self, value: float | None) -> str:
        if value is None:
            return OK  # no data: nothing to judge (never an alert on silence)

        def crossed(bound: float) -> bool:
            if self.above:
                return value >= bound if self.inclusive else value > bound
            return value <= bound if self.inclusive else value < bound

        return CRITICAL if crossed(self.critical) else WARN if crossed(self.warn) else OK


THRESHOLDS: dict[str, Threshold] = {
    "round_trip_ms": Threshold(
        10, 20, "ms",
        "seed 000: decisions within 10 ms (maxDecisionTime), alert above 20 ms (INFERENCE_TIME_HIGH); one round "
        "trip to a dependency that takes that long already spends a decision's budget",
    ),
    "utilisation": Threshold(
        0.70, 0.80, "share",
        "seed 001: resource utilisation under 70 % CPU / 80 % memory at full load",
    ),
    "workers": Threshold(1, 1, "workers", "ours: a queue nobody consumes never runs its tasks", above=False),
    "queue_depth": Threshold(
        100, 1000, "tasks",
        "ours: a healthy worker keeps its queue near empty; 100 waiting is a slow worker, 1,000 a stuck one",
    ),
    "stream_backlog": Threshold(
        1000, 3000, "entries",
        "seed 000: 50 bars/s in (minDataStreamRate); 1,000 / 3,000 entries behind is 20 s / 60 s of the feed "
        "(a read batch is 500)",
    ),
    "ws_share": Threshold(
        0.80, 1.0, "share of the plan's cap",
        "the plan's websocket_connections; 80 % and 100 % as the quota notices (at the cap the next socket is "
        "refused)",
        inclusive=True,
    ),
    "error_rate": Threshold(
        0.001, 0.005, "share",
        "seed 000: maxErrorRate 0.1 %, ERROR_RATE_HIGH above 0.5 % (the built-in error_rate alert)",
    ),
    "latency_p99_ms": Threshold(
        200, 500, "ms",
        "seed 002: end-to-end latency under 200 ms; critical (ours) at 2.5 times that",
    ),
    "availability": Threshold(
        0.999, 0.995, "share",
        "seed 000: 99.9 % service availability, SERVICE_UNAVAILABLE below 99.5 % (the availability alert)",
        above=False,
    ),
}  # fmt: skip


def threshold_json(t: Threshold) -> dict:
    return {"warn": t.warn, "critical": t.critical, "unit": t.unit, "comparison": "above" if t.above else "below",
            "inclusive": t.inclusive, "source": t.source}  # fmt: skip


def figure(value, threshold: str | None = None, unit: str = "") -> dict:
    """One measured value, with its status and the bounds it was judged against (None: shown only)."""
    t = THRESHOLDS.get(threshold) if threshold else None
    return {
        "value": value,
        "unit": t.unit if t else unit,
        "status": t.judge(value) if t else OK,
        "warn": t.warn if t else None,
        "critical": t.critical if t else None,
        "comparison": None if t is None else ("above" if t.above else "below"),
    }


def worst(statuses) -> str:
    return max(statuses, key=RANK.__getitem__, default=OK)


def check(figures: dict | None = None, *, status: str | None = None, detail: str = "",
          latency_ms: float | None = None) -> dict:  # fmt: skip
    """A check: its figures, its status (the worst figure's unless given) and what to do about it."""
    figures = figures or {}
    return {
        "status": status or worst(f["status"] for f in figures.values()),
        "detail": detail,
        "latency_ms": latency_ms,
        "figures": figures,
    }


def down(detail: str) -> dict:
    return check(status=DOWN, detail=detail)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


# --- readiness (GET /health/ready): the same probes, pass or fail ----------------------------------


def timed(probe) -> dict:
    """Run ``probe``; ``{"status": "ok"|"down", "latency_ms", "detail"?}``, never raising."""
    start = time.perf_counter()
    try:
        detail, ok = probe(), True
    except Exception as exc:  # report, never raise: this exists to say what is down
        detail, ok = _error(exc), False
    out = {"status": OK if ok else DOWN, "latency_ms": _ms(start)}
    if detail:
        out["detail"] = detail
    return out


def postgres_ping() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def redis_ping() -> None:
    redis_client(0, timeout=1.0).ping()


def celery_ping() -> str:
    from config.celery import app

    replies = app.control.ping(timeout=1.0, limit=1)
    if not replies:
        raise RuntimeError(
            "no Celery worker answered within 1 s; start one with `make run` or `celery -A config worker`"
        )
    return f"{len(replies)} worker(s)"


# --- Redis ----------------------------------------------------------------------------------------

_clients: dict[tuple, redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_client(db: int, *, timeout: float = REDIS_TIMEOUT_S) -> redis.Redis:
    """A client on logical database ``db`` of ``settings.REDIS_URL`` (read now, so a test can point
    it elsewhere), with short timeouts: a hung Redis costs half a second, not a request."""
    from redis.connection import parse_url

    key = (settings.REDIS_URL, db, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            options = parse_url(settings.REDIS_URL)
            options.update(db=db, socket_timeout=timeout, socket_connect_timeout=timeout)
            client = _clients[key] = redis.Redis(connection_pool=redis.ConnectionPool(**options))
        return client


def _db(name: str) -> int:
    from config.settings import services

    return getattr(services, name)


def _queues() -> list[str]:
    """The queues tasks are sent to: the default one and every routed one (notify)."""
    from config.celery import app

    names = {app.conf.task_default_queue or "celery"}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    return sorted(names)


def _redis_side(schemas: list[str], now: dt.datetime) -> dict:
    """Everything read from Redis, in one thread: the server, the broker's queues, the event
    streams' groups, WebSocket slots and the meter not yet flushed. ``{"redis": check, ...}``; when
    Redis does not answer, every part is down with the reason."""
    out: dict = {}
    usage = redis_client(_db("REDIS_DB_USAGE"))
    try:
        usage.ping()  # connects (a new client) or finds Redis down
        start = time.perf_counter()
        usage.ping()
        latency = _ms(start)
        info = usage.info()
    except (redis.RedisError, OSError) as exc:
        reason = (
            f"Redis at {_safe_url()} did not answer ({_error(exc)}); start it (`make run` starts one) or fix REDIS_URL"
        )
        out["redis"] = down(reason)
        for part in ("queues", "streams", "websockets", "meter"):
            out[part] = {"error": reason}
        return out
    memory_cap = info.get("maxmemory") or info.get("total_system_memory") or 0
    clients_cap = info.get("maxclients") or 0
    out["redis"] = check(
        {
            "latency_ms": figure(latency, "round_trip_ms"),
            "memory_used_bytes": figure(info.get("used_memory"), unit="bytes"),
            "memory_used": figure(round(info["used_memory"] / memory_cap, 4) if memory_cap else None, "utilisation"),
            "clients": figure(info.get("connected_clients"), unit="clients"),
            "clients_used": figure(
                round(info.get("connected_clients", 0) / clients_cap, 4) if clients_cap else None, "utilisation"
            ),
        },
        latency_ms=latency,
        detail=f"Redis {info.get('redis_version', '?')}; memory against "
        f"{'maxmemory' if info.get('maxmemory') else 'the machine (no maxmemory set)'}",
    )
    for part, read in (
        ("queues", lambda: _queue_depths()),
        ("streams", lambda: _stream_groups(schemas)),
        ("websockets", lambda: _ws_counts(usage, schemas)),
        ("meter", lambda: _meter_unflushed(usage, schemas, now)),
    ):
        try:
            out[part] = read()
        except Exception as exc:  # noqa: BLE001 - one part unread, the others still reported
            out[part] = {"error": f"Redis: {_error(exc)}"}
    return out


def _redis_down(reason: str) -> dict:
    return {"redis": down(reason), **{part: {"error": reason} for part in ("queues", "streams", "websockets", "meter")}}


def _safe_url() -> str:
    from urllib.parse import urlparse

    parts = urlparse(settings.REDIS_URL)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def _queue_depths() -> dict:
    """Tasks waiting per queue: kombu keeps a Redis list per queue and priority (``celery``,
    ``celery\\x06\\x163`` …), under the broker's key prefix; ``unacked``: taken by a worker, not done."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    prefix = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("global_keyprefix", "")
    broker = redis_client(_db("REDIS_DB_BROKER"))
    queues = _queues()
    pipe = broker.pipeline(transaction=False)
    for q in queues:
        for pri in PRIORITY_STEPS:
            pipe.llen(f"{prefix}{q}{Channel.sep}{pri}" if pri else f"{prefix}{q}")
    pipe.hlen(f"{prefix}{Channel.unacked_key}")
    counts = pipe.execute()
    steps = len(PRIORITY_STEPS)
    depths = {q: sum(counts[i * steps : (i + 1) * steps]) for i, q in enumerate(queues)}
    return {"depths": depths, "unacked": counts[-1]}


def _stream_groups(schemas: list[str]) -> list[dict]:
    """Every consumer group on every tenant's event streams, with its backlog. ``lag`` comes from
    XINFO GROUPS (Redis 7); where Redis does not give it (6.2, or after deletions) it is counted
    with one bounded XRANGE past the group's last delivered entry."""
    from eventbus import bus

    r = redis_client(_db("REDIS_DB_STREAMS"))
    keys = [(schema, event, f"stream:{schema}:{event}") for schema in schemas for event in sorted(bus.EVENTS)]
    pipe = r.pipeline(transaction=False)
    for *_, key in keys:
        pipe.xinfo_groups(key)
    replies = pipe.execute(raise_on_error=False)
    rows = []
    for (schema, event, key), groups in zip(keys, replies, strict=True):
        if isinstance(groups, Exception):
            continue  # no such stream: nothing published, nobody consuming
        for g in groups:
            name, last = g["name"], g.get("last-delivered-id")
            rows.append({
                "schema": schema, "stream": key, "event": event,
                "group": name.decode() if isinstance(name, bytes) else name,
                "consumers": int(g.get("consumers") or 0), "pending": int(g.get("pending") or 0),
                "lag": g.get("lag"), "last_delivered": last.decode() if isinstance(last, bytes) else last,
            })  # fmt: skip
    unknown = [row for row in rows if row["lag"] is None]
    if unknown:
        cap = int(THRESHOLDS["stream_backlog"].critical) + 1
        pipe = r.pipeline(transaction=False)
        for row in unknown:
            pipe.xrange(row["stream"], min=f"({row['last_delivered']}", max="+", count=cap)
        for row, entries in zip(unknown, pipe.execute(raise_on_error=False), strict=True):
            row["lag"] = None if isinstance(entries, Exception) else len(entries)
            row["lag_counted_to"] = cap
    for row in rows:
        row["backlog"] = None if row["lag"] is None else int(row["lag"]) + row["pending"]
    return rows


def _ws_counts(client: redis.Redis, schemas: list[str]) -> dict[str, int]:
    """Open sockets per tenant: its slots not yet expired (``tenants.limits.ws_slot_acquire``)."""
    from tenants.limits import _ws_key

    now = time.time()
    pipe = client.pipeline(transaction=False)
    for schema in schemas:
        pipe.zcount(_ws_key(schema), now, "+inf")
    return {schema: int(n) for schema, n in zip(schemas, pipe.execute(), strict=True)}


def _meter_unflushed(client: redis.Redis, schemas: list[str], now: dt.datetime) -> dict[str, list[dict]]:
    """The Redis meter's hashes of this and the previous hour (what the beat has not flushed yet)."""
    from tenants import metering

    window = _window_start(now)
    wanted = set(schemas)
    keys = []
    for raw in client.smembers(metering.KEYS_SET):
        key = raw.decode()
        _, schema, stamp = key.split(":")
        if schema in wanted and metering.hour_of(stamp) >= window:
            keys.append((schema, key))
    pipe = client.pipeline(transaction=False)
    for _, key in keys:
        pipe.hgetall(key)
    out: dict[str, list[dict]] = defaultdict(list)
    for (schema, _), fields in zip(keys, pipe.execute(), strict=True):
        out[schema].append({k.decode(): int(v) for k, v in fields.items()})
    return out


def _window_start(now: dt.datetime) -> dt.datetime:
    """The error rate's and p99's window: this hour and the previous one (as the alert metric)."""
    return now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)


# --- Celery ---------------------------------------------------------------------------------------

_known_workers = {"n": 0, "at": 0.0}


def _celery_side() -> dict:
    """Which workers answer and which queues each consumes. The broker is pinged first (a Celery
    broadcast to a Redis that is down retries for seconds). A broadcast waits for replies until its
    timeout, unless as many workers as last time answered sooner; every CELERY_REDISCOVER_S it
    waits the whole timeout, to find new ones."""
    from config.celery import app

    broker = redis_client(_db("REDIS_DB_BROKER"))
    try:
        broker.ping()
    except (redis.RedisError, OSError) as exc:
        return {"error": f"the broker (Redis) did not answer ({_error(exc)}); start Redis, then the workers"}
    full = time.monotonic() - _known_workers["at"] > CELERY_REDISCOVER_S or not _known_workers["n"]
    start = time.perf_counter()
    try:
        replies = app.control.inspect(
            timeout=CELERY_TIMEOUT_S, limit=None if full else _known_workers["n"]
        ).active_queues()
    except Exception as exc:  # noqa: BLE001 - kombu raises several kinds; all mean "could not ask"
        return {"error": f"broadcast failed: {_error(exc)}"}
    replies = replies or {}
    if full:
        _known_workers.update(n=len(replies), at=time.monotonic())
    else:
        _known_workers["n"] = max(_known_workers["n"], len(replies)) if replies else 0
    workers = [
        {"name": name, "queues": sorted(q["name"] for q in queues or [])} for name, queues in sorted(replies.items())
    ]
    return {"workers": workers, "latency_ms": _ms(start)}


# --- the channel layer ----------------------------------------------------------------------------


_probe_lock = threading.Lock()
_probe: dict = {"loop": None, "config": None, "layer": None, "channel": None}


def _probe_loop() -> asyncio.AbstractEventLoop:
    """One event-loop thread per process for the probe: the layer keeps its Redis connections and
    subscriptions per loop, so the probe's channel stays subscribed between reports (a new one
    costs ~100 ms: the pub/sub layer polls every 100 ms until its subscription is confirmed)."""
    loop = _probe["loop"]
    if loop is None or loop.is_closed():
        loop = _probe["loop"] = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="health-channel-probe", daemon=True).start()
    return loop


async def _probe_round_trip(config: dict) -> float:
    from django.utils.module_loading import import_string

    key = repr(config)
    if _probe["layer"] is None or _probe["config"] != key:
        await _probe_reset()
        layer = import_string(config["BACKEND"])(**config.get("CONFIG", {}))
        _probe.update(layer=layer, config=key)
        _probe["channel"] = await asyncio.wait_for(layer.new_channel("health."), CHANNEL_TIMEOUT_S)
        fresh = True
    else:
        fresh = False
    layer, channel = _probe["layer"], _probe["channel"]
    try:
        # a fresh channel: the first message waits for the subscription, the second is timed
        for _ in range(2 if fresh else 1):
            token = uuid.uuid4().hex
            start = time.perf_counter()
            await asyncio.wait_for(layer.send(channel, {"type": "health.ping", "token": token}), CHANNEL_TIMEOUT_S)
            message = await asyncio.wait_for(layer.receive(channel), CHANNEL_TIMEOUT_S)
            if message.get("token") != token:
                raise RuntimeError("a different message came back")
        return _ms(start)
    except BaseException:
        await _probe_reset()  # a cancelled receive drops the channel: start over next time
        raise


async def _probe_reset() -> None:
    layer = _probe["layer"]
    _probe.update(layer=None, config=None, channel=None)
    if layer is not None:
        try:
            await asyncio.wait_for(layer.flush(), CHANNEL_TIMEOUT_S)
        except Exception:  # noqa: BLE001, S110 - closing a broken layer may fail too
            pass


def _channel_side() -> dict:
    """A message through the configured channel layer to the probe's own channel and back."""
    config = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default")
    if not config:
        return {"error": "no channel layer configured (CHANNEL_LAYERS)"}
    with _probe_lock:
        future = asyncio.run_coroutine_threadsafe(_probe_round_trip(config), _probe_loop())
        try:
            return {"round_trip_ms": future.result(timeout=3 * CHANNEL_TIMEOUT_S + 1)}
        except TimeoutError:
            future.cancel()
            return {"error": f"no message came back within {CHANNEL_TIMEOUT_S:g} s"}
        except Exception as exc:  # noqa: BLE001 - any failure of the layer means WebSocket pushes fail
            return {"error": _error(exc)}


# --- PostgreSQL -----------------------------------------------------------------------------------


def _postgres_check() -> dict:
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(SQL_TIMEOUT_MS)])
            start = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            latency = _ms(start)
            cur.execute(
                "SELECT count(*), current_setting('max_connections')::int, "
                "current_setting('server_version') FROM pg_stat_activity"
            )
            used, cap, version = cur.fetchone()
    except Exception as exc:  # noqa: BLE001 - report, never raise
        return down(f"PostgreSQL did not answer ({_error(exc)}); check DATABASE_URL and that the server runs")
    return check(
        {
            "latency_ms": figure(latency, "round_trip_ms"),
            "connections": figure(used, unit="connections"),
            "connections_used": figure(round(used / cap, 4) if cap else None, "utilisation"),
        },
        latency_ms=latency,
        detail=f"PostgreSQL {version}; {used} of {cap} connections",
    )


def per_schema(sql: str, schemas: list[str], params) -> list[tuple]:
    """``sql`` (with ``{schema}`` for the quoted schema, first column the schema's name) over every
    schema at once: one round trip, UNION ALL."""
    if not schemas:
        return []
    parts, args = [], []
    for schema in schemas:
        parts.append("(" + sql.format(schema=connection.ops.quote_name(schema)) + ")")
        args += [schema, *params]
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(SQL_TIMEOUT_MS)])
        cur.execute(" UNION ALL ".join(parts), args)
        return cur.fetchall()


def _tenant_tables(schemas: list[str], now: dt.datetime) -> dict:
    """Per tenant, from its own tables (one UNION ALL query each): requests and 5xx in the window,
    latency histograms, firing alerts by severity, the last decision."""
    from analytics.models import Alert, LatencyHourly, UsageHourly
    from intelligence.models import Decision

    window = _window_start(now)
    out: dict = {"requests": defaultdict(lambda: [0, 0]), "bins": defaultdict(list), "alerts": {}, "last": {}}
    for schema, total, errors in per_schema(
        f"SELECT %s, coalesce(sum(count), 0), coalesce(sum(count) FILTER (WHERE status = '5xx'), 0) "
        f"FROM {{schema}}.{UsageHourly._meta.db_table} WHERE kind = 'request' AND hour >= %s",
        schemas, [window],
    ):  # fmt: skip
        out["requests"][schema][0] += int(total)
        out["requests"][schema][1] += int(errors)
    for schema, bins in per_schema(
        f"SELECT %s, bins FROM {{schema}}.{LatencyHourly._meta.db_table} WHERE hour >= %s", schemas, [window]
    ):
        out["bins"][schema].append(list(bins))
    for schema, severity, n in per_schema(
        f"SELECT %s, severity, count(*) FROM {{schema}}.{Alert._meta.db_table} WHERE state = 'firing' "
        "GROUP BY severity",
        schemas, [],
    ):  # fmt: skip
        out["alerts"].setdefault(schema, {})[severity] = int(n)
    for schema, at in per_schema(
        f"SELECT %s, created_at FROM {{schema}}.{Decision._meta.db_table} ORDER BY id DESC LIMIT 1", schemas, []
    ):
        out["last"][schema] = at
    return out


def _availability(now: dt.datetime) -> dict:
    from django.db.models import Count, Q

    from .models import AvailabilityProbe

    try:
        row = AvailabilityProbe.objects.filter(at__gte=now - dt.timedelta(hours=24)).aggregate(
            n=Count("id"), ok=Count("id", filter=Q(ok=True))
        )
    except Exception as exc:  # noqa: BLE001
        return down(f"probes not readable: {_error(exc)}")
    share = round(row["ok"] / row["n"], 5) if row["n"] >= 10 else None
    detail = (
        f"{row['ok']} of {row['n']} readiness probes succeeded in 24 h"
        if row["n"]
        else "no readiness probes yet: celery beat runs ops.availability_probe every 30 s"
    )
    return check(
        {"availability": figure(share, "availability"), "probes": figure(row["n"], unit="probes")}, detail=detail
    )


# --- latency histograms ---------------------------------------------------------------------------


def _bins_add(acc: list[int], bins: list[int]) -> list[int]:
    if len(acc) < len(bins):
        acc = acc + [0] * (len(bins) - len(acc))
    return [a + (bins[i] if i < len(bins) else 0) for i, a in enumerate(acc)]


def _p99(bins: list[int]) -> float | None:
    """The upper bound of the histogram bin holding the 99th percentile (``tenants.metering``'s
    bins; the open last bin counts as twice the last bound), as the usage page reports it."""
    from tenants.metering import LATENCY_BINS_MS

    total = sum(bins)
    if not total:
        return None
    seen = 0
    for i, n in enumerate(bins):
        seen += n
        if seen >= 0.99 * total:
            return float(LATENCY_BINS_MS[i]) if i < len(LATENCY_BINS_MS) else float(LATENCY_BINS_MS[-1]) * 2
    return float(LATENCY_BINS_MS[-1]) * 2


def _meter_fold(hashes: list[dict]) -> tuple[int, int, list[int]]:
    """(requests, 5xx, latency bins) of the meter's unflushed hashes of one tenant."""
    from tenants.metering import LATENCY_BINS_MS

    total = errors = 0
    bins = [0] * (len(LATENCY_BINS_MS) + 1)
    for fields in hashes:
        for name, n in fields.items():
            parts = name.split("|")
            if parts[0] == "r":
                total += n
                errors += n if parts[2] == "5xx" else 0
            elif parts[0] == "l":
                bins[min(int(parts[2]), len(bins) - 1)] += n
    return total, errors, bins


# --- the report -----------------------------------------------------------------------------------


def tenant_status(row: dict) -> tuple[str, list[str]]:
    """A tenant's status and why: **down** while trading is halted (a kill switch) or its event
    stream is critically behind; **degraded** when its stream backlog or API error rate crosses a
    warning bound, or an alert of its own fires; else **ok**."""
    halted, reasons = [], []
    if row["kill_switch"]:
        halted.append(f"trading halted: {row['kill_switch']}")
    backlog = row["stream_backlog"]
    if backlog["status"] == CRITICAL:
        halted.append(f"decision stream {backlog['value']:,} entries behind")
    elif backlog["status"] == WARN:
        reasons.append(f"decision stream {backlog['value']:,} entries behind")
    if row["error_rate"]["status"] != OK:
        reasons.append(f"API error rate {row['error_rate']['value']:.2%}")
    if row["alerts_firing"]:
        reasons.append(f"{row['alerts_firing']} alert{'s' if row['alerts_firing'] != 1 else ''} firing")
    if halted:
        return TENANT_DOWN, halted + reasons
    return (TENANT_DEGRADED, reasons) if reasons else (TENANT_OK, [])


_cache: dict = {"at": 0.0, "report": None}
_cache_lock = threading.Lock()


def reset_cache() -> None:
    """Forget the last report and the known workers (tests; after changing what is measured)."""
    with _cache_lock:
        _cache.update(at=0.0, report=None)
    _known_workers.update(n=0, at=0.0)


def services_health(*, max_age_s: float = CACHE_S, now: dt.datetime | None = None) -> dict:
    """The report (see the module's docstring); one computed at most ``max_age_s`` ago is reused."""
    with _cache_lock:
        cached = _cache["report"]
        if cached is not None and time.monotonic() - _cache["at"] < max_age_s:
            return {**cached, "cached": True}
    report = _report(now or dt.datetime.now(dt.UTC))
    with _cache_lock:
        _cache.update(at=time.monotonic(), report=report)
    return {**report, "cached": False}


def _report(now: dt.datetime) -> dict:
    from tenants.models import KillSwitch, Tenant

    started = time.perf_counter()
    try:
        tenants = list(Tenant.objects.filter(status=Tenant.Status.ACTIVE).select_related("plan").order_by("slug"))
        switches = dict(KillSwitch.objects.filter(lifted_at=None).values_list("tenant_id", "reason"))
    except Exception:  # noqa: BLE001 - the PostgreSQL check says why
        tenants, switches = [], {}
    schemas = [t.schema_name for t in tenants]
    caps = {t.schema_name: (t.plan.limits or {}).get("websocket_connections") for t in tenants}
    checks: dict[str, dict] = {}
    # Redis, Celery and the channel layer in threads (no database there); PostgreSQL here
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="health") as pool:
        redis_future = pool.submit(_redis_side, schemas, now)
        celery_future = pool.submit(_celery_side)
        channel_future = pool.submit(_channel_side)
        checks["postgres"] = _postgres_check()
        try:
            tables, tables_error = _tenant_tables(schemas, now), ""
        except Exception as exc:  # noqa: BLE001
            tables, tables_error = {"requests": {}, "bins": {}, "alerts": {}, "last": {}}, _error(exc)
        checks["availability"] = _availability(now)
        side = _result(redis_future, _redis_down)
        celery, channel = _result(celery_future, _error_of), _result(channel_future, _error_of)

    queues = _queues()
    workers = celery.get("workers", [])
    consumers = {q: [w["name"] for w in workers if q in w["queues"]] for q in queues}
    checks["redis"] = side["redis"]
    checks["celery"] = _celery_check(celery, consumers)
    checks["queues"], queue_rows = _queues_check(side["queues"], consumers)
    slugs = {t.schema_name: t.slug for t in tenants}
    checks["streams"], stream_rows = _streams_check(side["streams"], slugs)
    checks["channel_layer"] = _channel_check(channel)
    checks["websockets"] = _ws_check(side["websockets"], caps)
    requests, partial = _requests(schemas, tables, tables_error, side["meter"])
    checks["error_rate"], checks["latency_p99"] = _requests_checks(requests, partial)
    tenant_rows = _tenant_rows(tenants, switches, tables, requests, side, stream_rows)
    checks["tenants"] = _tenants_check(tenant_rows, tables_error)
    order = ["postgres", "redis", "celery", "queues", "streams", "channel_layer", "websockets", "error_rate",
             "latency_p99", "availability", "tenants"]  # fmt: skip
    checks = {name: checks[name] for name in order}
    return {
        "status": worst(c["status"] for c in checks.values()),
        "generated_at": now.isoformat(),
        "took_ms": _ms(started),
        "checks": checks,
        "workers": workers,
        "queues": queue_rows,
        "streams": [{k: v for k, v in row.items() if k != "schema"} for row in stream_rows],
        "tenants": tenant_rows,
        "thresholds": {name: threshold_json(t) for name, t in THRESHOLDS.items()},
    }


def _result(future, fallback):
    """A thread's answer; a bug there reports the part as down instead of failing the report."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - never a 500 from a health report
        return fallback(f"the check failed: {_error(exc)}")


def _error_of(reason: str) -> dict:
    return {"error": reason}


def _celery_check(celery: dict, consumers: dict[str, list[str]]) -> dict:
    if "error" in celery:
        return down(celery["error"])
    workers = {name for names in consumers.values() for name in names} | {w["name"] for w in celery["workers"]}
    orphans = [q for q, names in consumers.items() if not names]
    if not workers:
        return down(
            f"no worker answered within {CELERY_TIMEOUT_S:g} s: no task runs; start one with `make run` or "
            f"`celery -A config worker -Q {','.join(consumers)}`"
        )
    detail = f"{len(workers)} worker(s) answered"
    if orphans:
        detail += f"; nobody consumes {', '.join(orphans)}: start a worker with -Q {','.join(orphans)}"
    figures = {"workers": figure(len(workers), "workers")}
    figures.update({f"consumers_{q}": figure(len(names), "workers") for q, names in consumers.items()})
    return check(figures, latency_ms=celery.get("latency_ms"), detail=detail)


def _queues_check(side: dict, consumers: dict[str, list[str]]) -> tuple[dict, list[dict]]:
    if "error" in side:
        rows = [{"queue": q, "depth": None, "consumers": names, "status": DOWN} for q, names in consumers.items()]
        return down(side["error"]), rows
    rows, figures = [], {}
    for q, names in consumers.items():
        f = figures[f"depth_{q}"] = figure(side["depths"][q], "queue_depth")
        rows.append({"queue": q, "depth": side["depths"][q], "consumers": names, "status": f["status"]})
    figures["unacked"] = figure(side["unacked"], unit="tasks")
    detail = ", ".join(f"{r['queue']}: {r['depth']} waiting" for r in rows)
    detail += f"; {side['unacked']} taken by workers and not yet acknowledged"
    backing_up = [r["queue"] for r in rows if r["status"] != OK]
    if backing_up:
        detail += f"; {', '.join(backing_up)} backing up: add workers (-Q {','.join(backing_up)})"
    return check(figures, detail=detail), rows


def _streams_check(side, slugs: dict[str, str]) -> tuple[dict, list[dict]]:
    if isinstance(side, dict):
        return down(side["error"]), []
    rows = []
    for row in side:
        rows.append({**row, "tenant": slugs.get(row["schema"], row["schema"]),
                     "status": figure(row["backlog"], "stream_backlog")["status"]})  # fmt: skip
    if rows:
        detail = f"{len(rows)} consumer group(s) on {len({r['stream'] for r in rows})} stream(s)"
    else:
        detail = "no consumer groups yet: `manage.py run_decision_stream` creates them"
    idle = [r for r in rows if not r["consumers"] and (r["backlog"] or 0) > 0]
    if idle:
        detail += f"; {len(idle)} group(s) with a backlog and no consumer: is run_decision_stream running?"
    deepest = max((r["backlog"] for r in rows if r["backlog"] is not None), default=None)
    figures = {"max_backlog": figure(deepest, "stream_backlog"), "groups": figure(len(rows), unit="groups")}
    return check(figures, detail=detail), rows


def _channel_check(channel: dict) -> dict:
    if "error" in channel:
        return down(
            f"{channel['error']}: live feeds and notifications over WebSocket stop; check the Redis of CHANNEL_LAYERS"
        )
    return check(
        {"round_trip_ms": figure(channel["round_trip_ms"], "round_trip_ms")},
        latency_ms=channel["round_trip_ms"],
        detail="a message sent to a new channel came back",
    )


def _ws_check(side: dict, caps: dict[str, int | None]) -> dict:
    if "error" in side:
        return down(side["error"])
    shares = [n / caps[s] for s, n in side.items() if caps.get(s)]
    return check(
        {
            "connections": figure(sum(side.values()), unit="connections"),
            "max_share_of_cap": figure(round(max(shares), 4) if shares else None, "ws_share"),
        },
        detail=f"{sum(side.values())} open across {sum(1 for n in side.values() if n)} tenant(s)",
    )


def _requests(schemas, tables: dict, tables_error: str, meter: dict) -> tuple[dict, str]:
    """Per tenant (requests, 5xx, latency bins) of this and the previous hour: the flushed rollups
    plus the meter's hashes not flushed yet; and what could not be read."""
    meter_error = meter.get("error") if isinstance(meter.get("error"), str) else ""
    out = {}
    for schema in schemas:
        total, errors = tables["requests"].get(schema, (0, 0))
        bins: list[int] = []
        for b in tables["bins"].get(schema, []):
            bins = _bins_add(bins, b)
        if not meter_error:
            m_total, m_errors, m_bins = _meter_fold(meter.get(schema, []))
            total, errors, bins = total + m_total, errors + m_errors, _bins_add(bins, m_bins)
        out[schema] = (total, errors, bins)
    partial = "; ".join(x for x in (tables_error and f"rollups: {tables_error}", meter_error) if x)
    return out, partial


def _requests_checks(requests: dict, partial: str) -> tuple[dict, dict]:
    total = sum(v[0] for v in requests.values())
    errors = sum(v[1] for v in requests.values())
    bins: list[int] = []
    for v in requests.values():
        bins = _bins_add(bins, v[2])
    rate = round(errors / total, 5) if total >= MIN_REQUESTS else None
    note = f"; partial: {partial}" if partial else ""
    error_rate = check(
        {"error_rate": figure(rate, "error_rate"), "requests": figure(total, unit="requests")},
        detail=f"{errors} of {total} API requests answered 5xx this and the previous hour"
        + ("" if rate is not None else f" (judged from {MIN_REQUESTS} requests)")
        + note,
    )
    latency = check(
        {"latency_p99_ms": figure(_p99(bins), "latency_p99_ms")},
        detail=f"{sum(bins)} API requests timed this and the previous hour, every tenant{note}",
    )
    return error_rate, latency


def _tenant_rows(tenants, switches: dict, tables: dict, requests: dict, side: dict, streams: list[dict]) -> list[dict]:
    backlog: dict[str, int] = {}
    for row in streams:
        if row["backlog"] is not None:
            backlog[row["schema"]] = max(backlog.get(row["schema"], 0), row["backlog"])
    ws = side["websockets"] if "error" not in side["websockets"] else {}
    rows = []
    for t in tenants:
        s = t.schema_name
        total, errors, bins = requests[s]
        alerts = tables["alerts"].get(s, {})
        switch = switches.get(t.pk) or (f"platform-wide: {switches[None]}" if None in switches else "")
        last = tables["last"].get(s)
        row = {
            "tenant": t.slug,
            "name": t.name,
            "plan": t.plan.code,
            "kill_switch": switch,
            "stream_backlog": figure(backlog.get(s), "stream_backlog"),
            "error_rate": figure(round(errors / total, 5) if total >= MIN_REQUESTS else None, "error_rate"),
            "requests": total,
            "latency_p99_ms": _p99(bins),
            "alerts_firing": sum(alerts.values()),
            "alerts_critical": alerts.get("critical", 0),
            "ws_connections": ws.get(s, 0),
            "ws_limit": (t.plan.limits or {}).get("websocket_connections"),
            "last_decision_at": last.isoformat() if last else None,
        }
        row["status"], row["reasons"] = tenant_status(row)
        rows.append(row)
    return rows


def _tenants_check(rows: list[dict], tables_error: str) -> dict:
    counts = {k: sum(1 for r in rows if r["status"] == k) for k in (TENANT_OK, TENANT_DEGRADED, TENANT_DOWN)}
    detail = (
        f"{len(rows)} active: {counts[TENANT_OK]} ok, {counts[TENANT_DEGRADED]} degraded, {counts[TENANT_DOWN]} down"
    )
    if tables_error:
        detail += f"; partial (their tables not read): {tables_error}"
    return check(
        {
            "active": figure(len(rows), unit="tenants"),
            "degraded": figure(counts[TENANT_DEGRADED], unit="tenants"),
            "down": figure(counts[TENANT_DOWN], unit="tenants"),
        },
        status=WARN if counts[TENANT_DEGRADED] or counts[TENANT_DOWN] else OK,
        detail=detail,
    )
