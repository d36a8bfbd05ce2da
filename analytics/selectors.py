"""Reads of a tenant's usage: per unit and endpoint over time from the rollups (never a scan of
events), the hour not yet flushed added from the Redis meter, quotas with a forecast."""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict

from django.db.models import Sum

from tenants import limits, metering

from .models import Kind, LatencyHourly, UsageDaily, UsageHourly

QUOTAS = ("decisions_per_day", "training_jobs_per_month", "backtest_bars_per_month")
UNIT_OF_QUOTA = {"decisions_per_day": "decision", "backtest_bars_per_month": "backtest_bar"}


def _unflushed(schema: str) -> list[tuple[dt.datetime, str, str, str, int, int, int]]:
    """Counts still in Redis (this hour and any hour the beat has not flushed yet), as rows."""
    r = limits._redis()
    metering.barrier()
    rows = []
    for key in r.smembers(metering.KEYS_SET):
        key = key.decode()
        if not key.startswith(f"meter:{schema}:"):
            continue
        hour = dt.datetime.strptime(key.rsplit(":", 1)[1], "%Y%m%d%H").replace(tzinfo=dt.UTC)
        for field, value in r.hgetall(key).items():
            parts = field.decode().split("|")
            if parts[0] == "r":
                rows.append((hour, Kind.REQUEST, parts[1], parts[2], int(parts[3]), int(parts[4]), int(value)))
            elif parts[0] == "u":
                rows.append((hour, Kind.UNIT, parts[1], "", int(parts[2]), int(parts[3]), int(value)))
    return rows


def _percentile(bins: list[int], p: float) -> float | None:
    """The upper bound (ms) of the histogram bin holding the p-th percentile."""
    total = sum(bins)
    if not total:
        return None
    bounds = metering.LATENCY_BINS_MS
    need, seen = p * total, 0
    for i, n in enumerate(bins):
        seen += n
        if seen >= need:
            return float(bounds[i]) if i < len(bounds) else float(bounds[-1]) * 2
    return float(bounds[-1]) * 2


def usage_report(*, tenant, days: int = 30, granularity: str = "day", now: dt.datetime | None = None) -> dict:
    now = now or dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "hour":
        start = (now - dt.timedelta(hours=days * 24 - 1)).replace(minute=0, second=0, microsecond=0)
    series: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    endpoints: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    keys: dict[int, int] = defaultdict(int)
    users: dict[int, int] = defaultdict(int)

    def add(t: dt.datetime | dt.date, kind, name, status, key_id, user_id, n):
        label = t.strftime("%Y-%m-%dT%H:00Z") if granularity == "hour" else f"{t:%Y-%m-%d}"
        if kind == Kind.UNIT:
            series[name][label] += n
        else:
            series["request"][label] += n
            endpoints[name][status] += n
            if key_id:
                keys[key_id] += n
            if user_id:
                users[user_id] += n

    if granularity == "hour":
        rows = UsageHourly.objects.filter(hour__gte=start).values_list(
            "hour", "kind", "name", "status", "api_key_id", "user_id", "count"
        )
    else:
        rows = UsageDaily.objects.filter(day__gte=start.date()).values_list(
            "day", "kind", "name", "status", "api_key_id", "user_id", "count"
        )
    for row in rows.iterator(chunk_size=5_000):
        add(*row)
    for hour, *rest in _unflushed(tenant.schema_name):
        if hour >= start:
            add(hour if granularity == "hour" else hour.date(), *rest)

    latency: dict[str, list[int]] = {}
    totals: dict[str, int] = defaultdict(int)
    for endpoint, bins, total_us in LatencyHourly.objects.filter(hour__gte=start).values_list(
        "endpoint", "bins", "total_us"
    ):
        acc = latency.setdefault(endpoint, [0] * len(bins))
        for i, n in enumerate(bins):
            acc[i] += n
        totals[endpoint] += total_us
    endpoint_rows = []
    for name in sorted(endpoints, key=lambda e: -sum(endpoints[e].values())):
        counts = endpoints[name]
        total = sum(counts.values())
        errors = counts.get("5xx", 0)
        bins = latency.get(name, [])
        n_lat = sum(bins)
        endpoint_rows.append(
            {
                "endpoint": name,
                "requests": total,
                "by_status": dict(sorted(counts.items())),
                "error_rate": errors / total if total else 0.0,
                "client_error_rate": (counts.get("4xx", 0) + counts.get("429", 0)) / total if total else 0.0,
                "rate_limited": counts.get("429", 0),
                "p50_ms": _percentile(bins, 0.5),
                "p99_ms": _percentile(bins, 0.99),
                "mean_ms": round(totals[name] / n_lat / 1000, 3) if n_lat else None,
            }
        )
    return {
        "start": start.isoformat(),
        "end": now.isoformat(),
        "granularity": granularity,
        "units": {name: [{"t": t, "count": n} for t, n in sorted(points.items())] for name, points in series.items()},
        "totals": {name: sum(points.values()) for name, points in series.items()},
        "endpoints": endpoint_rows,
        "api_keys": [{"api_key_id": k, "requests": n} for k, n in sorted(keys.items(), key=lambda kv: -kv[1])],
        "users": [{"user_id": u, "requests": n} for u, n in sorted(users.items(), key=lambda kv: -kv[1])],
        "quotas": quotas_report(tenant=tenant, now=now),
    }


def quotas_report(*, tenant, now: dt.datetime | None = None) -> list[dict]:
    """Each quota's use in its period, and where the period's pace leads: "you will hit X on day Y"."""
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for quota in QUOTAS:
        u = limits.usage_get(tenant, quota)
        end = limits.period_end(quota, now)
        if limits.period_of(quota) == "month":
            begin = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            length = dt.timedelta(days=calendar.monthrange(now.year, now.month)[1])
        else:
            begin = now.replace(hour=0, minute=0, second=0, microsecond=0)
            length = dt.timedelta(days=1)
        elapsed = max((now - begin).total_seconds(), 60.0)
        rate = u.used / elapsed  # per second, this period so far
        projected = int(round(u.used + rate * (end - now).total_seconds()))
        hits_at = None
        if u.limit is not None and rate > 0 and u.used < u.limit and projected > u.limit:
            hits_at = now + dt.timedelta(seconds=(u.limit - u.used) / rate)
        out.append(
            {
                "quota": quota,
                "used": u.used,
                "limit": u.limit,
                "share": (u.used / u.limit) if u.limit else None,
                "resets_at": end.isoformat(),
                "projected": projected,
                "exceeds_at": hits_at.isoformat() if hits_at else None,
                "forecast": (
                    "unlimited" if u.limit is None
                    else "used up" if u.used >= u.limit
                    else f"at this pace you will hit {u.limit:,} on {hits_at:%Y-%m-%d %H:%M} UTC" if hits_at
                    else f"at this pace about {projected:,} of {u.limit:,} by {end:%Y-%m-%d}"
                ),
                "period_length_s": int(length.total_seconds()),
            }
        )  # fmt: skip
    return out


def unit_total(*, unit: str, since: dt.date) -> int:
    return UsageDaily.objects.filter(kind=Kind.UNIT, name=unit, day__gte=since).aggregate(n=Sum("count"))["n"] or 0
