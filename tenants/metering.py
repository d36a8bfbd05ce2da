"""Metering: every billable unit and every API request counted per tenant, API key and user,
with no database write on the request path, and no round trip either: a request's counts are
written on a connection Redis does not answer (``CLIENT REPLY OFF``).

Counts go to a Redis hash per tenant and UTC hour (``meter:<schema>:<YYYYMMDDHH>``), in one
pipelined round trip per request; the hash is listed in ``meter:keys``. ``analytics`` flushes the
hashes into the tenant's usage tables (hourly and daily rollups) on a beat schedule, exactly once
(see ``analytics.services.meter_flush``). Fields:

    r|<endpoint>|<status class>|<key id>|<user id>   requests (status class 2xx/3xx/4xx/5xx, or 429)
    l|<endpoint>|<bin>                                 latency histogram (LATENCY_BINS_MS upper bounds)
    t|<endpoint>                                       latency total, microseconds
    u|<unit>|<key id>|<user id>                        units: decision, prediction, training_trial, backtest_bar

Ids are 0 when absent (a request with a JWT has no key; one with a key has no user). Units
recorded during a request ride on that request's round trip; elsewhere (stream, jobs) they are
written at once.
"""

from __future__ import annotations

import bisect
import datetime as dt
import os
import threading

import redis

from . import limits

KEYS_SET = "meter:keys"
HASH_TTL = 14 * 86400  # a hash nobody flushed (no beat running) is dropped after this
UNITS = ("decision", "prediction", "training_trial", "backtest_bar")
# upper bounds of the latency histogram's bins, ms (the last bin is everything above)
LATENCY_BINS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000)

_local = threading.local()


def hour_key(schema: str, when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    return f"meter:{schema}:{when:%Y%m%d%H}"


def hour_of(stamp: str) -> dt.datetime:
    """The UTC hour of a meter hash's ``YYYYMMDDHH`` stamp (the inverse of :func:`hour_key`)."""
    return dt.datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=dt.UTC)


def count_of(field: str) -> tuple[str, str, str, int, int] | None:
    """A request or unit field as (kind "request" | "unit", name, status class, key id, user id);
    None for the latency fields."""
    parts = field.split("|")
    if parts[0] == "r":  # r|endpoint|status|key|user
        return "request", parts[1], parts[2], int(parts[3]), int(parts[4])
    if parts[0] == "u":  # u|unit|key|user
        return "unit", parts[1], "", int(parts[2]), int(parts[3])
    return None


def latency_bin(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BINS_MS, ms)


def status_class(status: int) -> str:
    return "429" if status == 429 else f"{status // 100}xx"


class RequestMeter:
    """Collects one request's units; :meth:`write` sends them with the request's own counts."""

    __slots__ = ("units",)

    def __init__(self):
        self.units: list[tuple[str, int]] = []


def request_begin() -> RequestMeter:
    meter = RequestMeter()
    _local.meter = meter
    return meter


def request_end() -> None:
    _local.meter = None


def units_add(tenant, unit: str, amount: int = 1, *, key_id: int | None = None, user_id: int | None = None) -> None:
    """Count ``amount`` of a billable ``unit`` for ``tenant`` (with the current request when there is one)."""
    units_add_many(tenant, {unit: amount}, key_id=key_id, user_id=user_id)


def units_add_many(tenant, units: dict[str, int], *, key_id: int | None = None, user_id: int | None = None) -> None:
    """Several units at once: one write (or, during a request, carried by the request's own)."""
    units = {unit: amount for unit, amount in units.items() if amount > 0}
    if not units:
        return
    meter = getattr(_local, "meter", None)
    if meter is not None:
        meter.units.extend(units.items())
        return
    key = hour_key(tenant.schema_name)
    pipe = limits._redis().pipeline(transaction=False)
    for unit, amount in units.items():
        pipe.hincrby(key, f"u|{unit}|{key_id or 0}|{user_id or 0}", amount)
    pipe.expire(key, HASH_TTL)
    pipe.sadd(KEYS_SET, key)
    pipe.execute()


class _Sink:
    """A connection of this process (and thread) on which Redis sends no replies (``CLIENT REPLY
    OFF``): a request's counts are one socket write, with no round trip to wait for. Redis runs a
    connection's commands in order, so nothing is reordered; a write that fails reconnects once
    and resends. ``barrier`` waits until everything sent before it has been applied."""

    def __init__(self):
        self.conn = None
        self.pid = None

    def _connect(self):
        conn = limits._redis().connection_pool.make_connection()
        conn.connect()
        conn.send_command("CLIENT", "REPLY", "OFF")
        self.conn, self.pid = conn, os.getpid()

    def send(self, commands: list[tuple]) -> None:
        for attempt in (0, 1):
            if self.conn is None or self.pid != os.getpid():
                self._connect()
            try:
                self.conn.send_packed_command(self.conn.pack_commands(commands), check_health=False)
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self.conn = None
                if attempt:
                    raise

    def barrier(self) -> None:
        if self.conn is None or self.pid != os.getpid():
            return
        self.conn.send_command("CLIENT", "REPLY", "ON")
        self.conn.read_response()  # "OK": every command sent before it has run
        self.conn.send_command("CLIENT", "REPLY", "OFF")


def _sink() -> _Sink:
    sink = getattr(_local, "sink", None)
    if sink is None:
        sink = _local.sink = _Sink()
    return sink


def barrier() -> None:
    """Wait until this thread's counts sent so far are in Redis (tests, and before a flush here)."""
    _sink().barrier()


def request_write(
    schema: str, *, endpoint: str, status: int, latency_ms: float, key_id: int | None, user_id: int | None,
    units: list[tuple[str, int]] = (),
) -> None:  # fmt: skip
    """One request's counts (and the units it produced): one socket write, no reply awaited."""
    key = hour_key(schema)
    who = f"{key_id or 0}|{user_id or 0}"
    commands = [
        ("HINCRBY", key, f"r|{endpoint}|{status_class(status)}|{who}", 1),
        ("HINCRBY", key, f"l|{endpoint}|{latency_bin(latency_ms)}", 1),
        ("HINCRBY", key, f"t|{endpoint}", int(latency_ms * 1000)),
        *(("HINCRBY", key, f"u|{unit}|{who}", amount) for unit, amount in units),
        ("EXPIRE", key, HASH_TTL),
        ("SADD", KEYS_SET, key),
    ]
    _sink().send(commands)
