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

from .models import LatencyHourly, MeterBatch, UsageDaily, UsageHourly

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
    metering.barrier()  # this thread's own counts, sent without replies, are in first
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
                _write(metering.hour_of(hour_text), raw)
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
        field, n = field.decode(), int(value)
        count = metering.count_of(field)
        if count is not None:
            counts[count] += n
            continue
        parts = field.split("|")
        if parts[0] == "l":  # l|endpoint|bin
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


# --- live performance: daily rollups of resolved decisions ---------------------------------------

PERFORMANCE_WATERMARK = "performance"


def performance_rollup(*, full: bool = False) -> int:
    """Recompute ``PerformanceDaily`` for every market day with a decision resolved since the last
    run (all days with ``full``), in the current tenant's schema. The days recomputed."""
    from django.utils import timezone

    from intelligence.models import Decision

    from .models import PerformanceDaily, Watermark

    now = timezone.now()
    mark = Watermark.objects.filter(name=PERFORMANCE_WATERMARK).first()
    touched = Decision.objects.exclude(resolved_at=None)
    if mark is not None and not full:
        touched = touched.filter(resolved_at__gt=mark.at)
    days = sorted({d.date() for d in touched.values_list("ts", flat=True).distinct()})
    # decisions made meanwhile on days already rolled up keep their day's count fresh too
    days = sorted(set(days) | _recent_days(Decision))
    for day in days:
        _performance_day(day, Decision, PerformanceDaily)
    Watermark.objects.update_or_create(name=PERFORMANCE_WATERMARK, defaults={"at": now})
    return len(days)


def _recent_days(Decision) -> set:
    """The market day of the newest decision (still filling while the stream runs)."""
    last = Decision.objects.order_by("-id").values_list("ts", flat=True).first()
    return {last.date()} if last else set()


def _performance_day(day, Decision, PerformanceDaily) -> None:
    import datetime as dt

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    table = Decision._meta.db_table
    fills = Decision.fills.rel.related_model._meta.db_table
    rows = []
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*), count(*) FILTER (WHERE resolved_at IS NOT NULL), count(correct), "
            f"count(*) FILTER (WHERE correct), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            f"percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) FROM {table} WHERE ts >= %s AND ts < %s",
            [start, end],
        )
        n, resolved, actionable, hits, p50, p99 = cur.fetchone()
        if not n:
            PerformanceDaily.objects.filter(day=day).delete()
            return
        cur.execute(
            f"SELECT coalesce(sum(f.realized_pnl - f.fee), 0) FROM {fills} f JOIN {table} d ON d.id = f.decision_id "
            "WHERE d.ts >= %s AND d.ts < %s",
            [start, end],
        )
        pnl = float(cur.fetchone()[0])
        rows.append(PerformanceDaily(day=day, kind="consensus", name="", decisions=n, resolved=actionable,
                                     hits=hits, pnl=pnl, latency_p50_ms=p50, latency_p99_ms=p99))  # fmt: skip
        cur.execute(
            f"SELECT model_version, count(*), count(model_correct), count(*) FILTER (WHERE model_correct) FROM {table} "
            "WHERE ts >= %s AND ts < %s AND model_version <> '' GROUP BY model_version",
            [start, end],
        )
        for version, count, res, right in cur.fetchall():
            rows.append(
                PerformanceDaily(day=day, kind="model", name=version, decisions=count, resolved=res, hits=right)
            )
        cur.execute(
            f"SELECT v->>'agent', count(*), count(*) FILTER (WHERE d.realized <> 0 AND d.resolved_at IS NOT NULL), "
            "count(*) FILTER (WHERE d.resolved_at IS NOT NULL AND ((v->>'action' = 'BUY' AND d.realized = 1) OR "
            f"(v->>'action' = 'SELL' AND d.realized = -1))) FROM {table} d, jsonb_array_elements(d.votes) v "
            "WHERE d.ts >= %s AND d.ts < %s AND v->>'action' IN ('BUY', 'SELL') GROUP BY 1",
            [start, end],
        )
        for agent, count, res, right in cur.fetchall():
            rows.append(PerformanceDaily(day=day, kind="agent", name=agent, decisions=count, resolved=res, hits=right))
    with transaction.atomic():
        PerformanceDaily.objects.filter(day=day).delete()
        PerformanceDaily.objects.bulk_create(rows)


def performance_refresh(max_age_s: float = 60.0) -> None:
    """Roll up now when the last run is older than ``max_age_s`` (a page never shows stale days)."""
    from django.utils import timezone

    from .models import Watermark

    mark = Watermark.objects.filter(name=PERFORMANCE_WATERMARK).values_list("at", flat=True).first()
    if mark is None or (timezone.now() - mark).total_seconds() > max_age_s:
        performance_rollup()
