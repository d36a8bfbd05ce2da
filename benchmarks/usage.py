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
    finally:
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


if __name__ == "__main__":
    bench_usage()
