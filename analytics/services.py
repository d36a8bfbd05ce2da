"""Usage flushed from the Redis meter into each tenant's tables, exactly once.

``meter_flush`` claims each hour hash listed in ``meter:keys`` by renaming it to a batch name
(listed in ``meter:pending``) in one atomic script: requests arriving meanwhile start a new hash,
so nothing is counted twice or dropped. A batch is applied in one transaction that also records
its name (``MeterBatch``); only after that commit is it deleted from Redis. A flush that dies
anywhere is finished by the next one: a batch still pending is applied unless its name is already
recorded, then deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict

from django.db import connection, transaction
from django_tenants.utils import schema_context, schema_exists

from tenants import limits, metering

from .models import Kind, LatencyHourly, MeterBatch, UsageDaily, UsageHourly

log = logging.getLogger(__name__)
PENDING_SET = "meter:pending"
_CLAIM = """
redis.call('SREM', KEYS[2], KEYS[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""
_claim = None


def meter_flush() -> dict:
    """Apply every pending batch, then claim and apply every hash with counts; what was applied."""
    global _claim
    r = limits._redis()
    if _claim is None:
        _claim = r.register_script(_CLAIM)
    applied = {"batches": 0, "fields": 0}
    for name in sorted(x.decode() for x in r.smembers(PENDING_SET)):
        applied["fields"] += _batch_apply(name)
        applied["batches"] += 1
    for key in sorted(x.decode() for x in r.smembers(metering.KEYS_SET)):
        name = f"meterbatch:{key.removeprefix('meter:')}:{uuid.uuid4().hex[:12]}"
        if _claim(keys=[key, metering.KEYS_SET, PENDING_SET], args=[name]):
            applied["fields"] += _batch_apply(name)
            applied["batches"] += 1
    return applied


def _batch_apply(name: str) -> int:
    r = limits._redis()
    _, schema, hour_text, _ = name.split(":")
    raw = r.hgetall(name)
    if schema_exists(schema):
        with schema_context(schema), transaction.atomic():
            if not MeterBatch.objects.filter(name=name).exists():
                _write(dt.datetime.strptime(hour_text, "%Y%m%d%H").replace(tzinfo=dt.UTC), raw)
                MeterBatch.objects.create(name=name, fields=len(raw))
    else:
        log.info("meter: dropping %s (tenant schema gone)", name)
    _forget(name)
    return len(raw)


def _forget(name: str) -> None:
    """The applied batch out of Redis (a flush dying before this is finished by the next one)."""
    pipe = limits._redis().pipeline()
    pipe.delete(name)
    pipe.srem(PENDING_SET, name)
    pipe.execute()


def _write(hour: dt.datetime, raw: dict[bytes, bytes]) -> None:
    counts: dict[tuple, int] = defaultdict(int)
    bins: dict[str, list[int]] = {}
    totals: dict[str, int] = defaultdict(int)
    width = len(metering.LATENCY_BINS_MS) + 1
    for field, value in raw.items():
        parts = field.decode().split("|")
        n = int(value)
        if parts[0] == "r":  # r|endpoint|status|key|user
            counts[(Kind.REQUEST, parts[1], parts[2], int(parts[3]), int(parts[4]))] += n
        elif parts[0] == "u":  # u|unit|key|user
            counts[(Kind.UNIT, parts[1], "", int(parts[2]), int(parts[3]))] += n
        elif parts[0] == "l":  # l|endpoint|bin
            bins.setdefault(parts[1], [0] * width)[min(int(parts[2]), width - 1)] += n
        elif parts[0] == "t":
            totals[parts[1]] += n
    if counts:
        rows = list(counts.items())
        cols = [[k[i] for k, _ in rows] for i in range(5)] + [[n for _, n in rows]]
        for table, period, value in (
            (UsageHourly._meta.db_table, "hour", hour),
            (UsageDaily._meta.db_table, "day", hour.date()),
        ):
            with connection.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {table} ({period}, kind, name, status, api_key_id, user_id, count) "
                    "SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], "
                    f"%s::bigint[]) ON CONFLICT ({period}, kind, name, status, api_key_id, user_id) "
                    f"DO UPDATE SET count = {table}.count + EXCLUDED.count",
                    [value, *cols],
                )
    table = LatencyHourly._meta.db_table
    with connection.cursor() as cur:
        for endpoint in sorted(set(bins) | set(totals)):
            cur.execute(
                f"INSERT INTO {table} (hour, endpoint, bins, total_us) VALUES (%s, %s, %s, %s) "
                f"ON CONFLICT (hour, endpoint) DO UPDATE SET total_us = {table}.total_us + EXCLUDED.total_us, "
                f"bins = (SELECT array_agg(a + b ORDER BY i) FROM unnest({table}.bins, EXCLUDED.bins) "
                "WITH ORDINALITY AS t(a, b, i))",
                [hour, endpoint, bins.get(endpoint, [0] * width), totals.get(endpoint, 0)],
            )
