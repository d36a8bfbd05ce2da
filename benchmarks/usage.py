"""Rate limiting + metering overhead per API request (issue 9): what ``UsageMiddleware`` adds to
a request — the GCRA script over the tenant's, key's and user's buckets (one round trip) and the
request's counts (one pipelined round trip) — timed around exactly those calls, 5,000 requests
after a warm-up, on this machine's Redis. Also the flush: Redis hashes into the usage tables.
Target: p99 <= 0.5 ms. Run alone with ``python -m benchmarks.usage``."""

from __future__ import annotations

import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def bench_usage() -> None:
    import django

    django.setup()
    import numpy as np

    from analytics.services import meter_flush
    from tenants import metering, ratelimit
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    tenant, _ = tenant_provision(slug=f"benchusage{int(time.time())}", plan="pro")
    try:
        tenant.plan.limits = {**tenant.plan.limits, "api_requests_per_minute": 10_000_000,
                              "api_requests_per_minute_per_key": 10_000_000}  # fmt: skip
        times, checks, writes = [], [], []
        for i in range(5_500):
            t0 = time.perf_counter()
            decision = ratelimit.rate_check(tenant, key_id=7, user_id=None)
            t1 = time.perf_counter()
            metering.request_write(
                tenant.schema_name, endpoint=f"ep-{i % 12}", status=200, latency_ms=3.2, key_id=7, user_id=None,
                units=[("decision", 1)],
            )  # fmt: skip
            t2 = time.perf_counter()
            assert decision.allowed
            if i >= 500:
                times.append(t2 - t0)
                checks.append(t1 - t0)
                writes.append(t2 - t1)

        def pct(values, p):
            return np.percentile(np.array(values) * 1000, p)

        print(
            f"rate limit + meter p50 {pct(times, 50):5.3f} ms   p99 {pct(times, 99):5.3f} ms   (target p99 <= 0.5 ms; "
            f"check p99 {pct(checks, 99):.3f}, counts p99 {pct(writes, 99):.3f}; one round trip and one unanswered "
            "write a request)"
        )
        t0 = time.perf_counter()
        done = meter_flush()
        print(
            f"meter flush         {time.perf_counter() - t0:7.3f} s   ({done['fields']} counters of "
            f"{done['batches']} hour hash(es) from 5,500 requests into the hourly and daily rollups)"
        )
        _bench_pages(tenant)
    finally:
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def _bench_pages(tenant) -> None:
    """Usage analytics over 10 M metered events: 90 days of hourly rollups (30 endpoints x 3 status
    classes x 5 API keys an hour, ~10 events per row) and their daily rollup, generated in SQL; the
    usage report (30 days daily; 14 days hourly) timed as the API computes it."""
    import statistics

    from django.db import connection
    from django_tenants.utils import schema_context

    from analytics.selectors import usage_report

    with schema_context(tenant.schema_name), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO analytics_usagehourly (hour, kind, name, status, api_key_id, user_id, count) "
            "SELECT date_trunc('hour', now()) - make_interval(hours => h), 'request', 'svc-' || e, s, 100 + k, 0, "
            "8 + ((h * 7 + e * 3 + k) % 5) FROM generate_series(0, 90 * 24 - 1) h, generate_series(1, 30) e, "
            "unnest(ARRAY['2xx', '4xx', '5xx']) s, generate_series(1, 5) k"
        )
        cur.execute(
            "INSERT INTO analytics_usagedaily (day, kind, name, status, api_key_id, user_id, count) "
            "SELECT (hour AT TIME ZONE 'UTC')::date, kind, name, status, api_key_id, user_id, sum(count) "
            "FROM analytics_usagehourly WHERE name LIKE 'svc-%%' GROUP BY 1, 2, 3, 4, 5, 6"
        )
        cur.execute("SELECT sum(count), count(*) FROM analytics_usagehourly")
        events, rows = cur.fetchone()
        events = int(events)
        cur.execute("ANALYZE analytics_usagehourly; ANALYZE analytics_usagedaily")
        for label, kwargs in (
            ("30 days by day ", {"days": 30}),
            (" 7 days by hour", {"days": 7, "granularity": "hour"}),
        ):
            times = []
            for _ in range(7):
                t = time.perf_counter()
                report = usage_report(tenant=tenant, **kwargs)
                times.append(time.perf_counter() - t)
            print(
                f"usage report {label} p50 {statistics.median(times) * 1000:6.1f} ms   max {max(times) * 1000:6.1f} ms"
                f"   ({events / 1e6:.1f} M events in {rows:,} hourly rollup rows; target <= 300 ms; "
                f"{len(report['endpoints'])} endpoints)"
            )


if __name__ == "__main__":
    bench_usage()
