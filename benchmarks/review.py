"""Compliance review indexer throughput: decisions/s from one tenant's schema into the public
index (read in 5k batches with the risk vote picked out in SQL, flags computed, bulk insert with
ON CONFLICT DO NOTHING). Decisions carry eight agents' votes like the stream's. Run alone with
``python -m benchmarks.review [N]``."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _votes(i: int) -> list[dict]:
    agents = ("trend", "mean_reversion", "ml", "sentiment", "fundamental", "portfolio", "cost", "sizing")
    votes = [{"agent": a, "action": ("BUY", "SELL", "HOLD")[(i + k) % 3], "confidence": 0.5 + (i % 7) / 20,
              "reason": f"{a} says so", "details": {"score": 0.1 * k, "window": 20}, "veto": False, "size_cap": None}
             for k, a in enumerate(agents)]  # fmt: skip
    veto = i % 50 == 0
    votes.append({"agent": "risk", "action": "HOLD", "confidence": 1.0 if veto else 0.0, "reason": "limits",
                  "details": {"drawdown": 0.02, "exposure": 0.3, "breaches": []}, "veto": veto,
                  "size_cap": None if veto else 0.25})  # fmt: skip
    return votes


def bench_review(n: int = 100_000) -> None:
    import django

    django.setup()
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from intelligence.models import Decision
    from review.models import IndexState, ReviewItem
    from review.services import review_index
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    tenant, _ = tenant_provision(slug=f"benchreview{int(time.time())}", plan="pro")
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    try:
        with schema_context(tenant.schema_name):
            for start in range(0, n, 5_000):
                Decision.objects.bulk_create([
                    Decision(source="api", symbol=f"SYM{i % 40}", timeframe="1m", ts=t0 + dt.timedelta(minutes=i),
                             action=("BUY", "SELL", "HOLD")[i % 3], confidence=0.5 + (i % 10) / 20,
                             size=0.0 if i % 3 == 2 else 0.02 + (i % 13) / 100, votes=_votes(i),
                             weights={"trend": 0.2, "ml": 0.3, "risk": 0.1}, explanation="x" * 200,
                             vetoed_by="control:max_position" if i % 97 == 0 else "", flow="default@1",
                             model_version="xgb@3")
                    for i in range(start, min(n, start + 5_000))
                ])  # fmt: skip
            later = timezone.now() + dt.timedelta(minutes=5)
            t = time.perf_counter()
            indexed = review_index(tenant=tenant, now=later)
            took = time.perf_counter() - t
            again = time.perf_counter()
            assert review_index(tenant=tenant, now=later) == 0
            idle_ms = (time.perf_counter() - again) * 1000
        flagged = ReviewItem.objects.filter(tenant=tenant).exclude(flags=[]).count()
        print(
            f"review index       {indexed / took:9,.0f} decisions/s   ({indexed:,} decisions in {took:.2f} s, "
            f"{flagged:,} flagged; a run with nothing new {idle_ms:.1f} ms)"
        )
    finally:
        ReviewItem.objects.filter(tenant=tenant).delete()
        IndexState.objects.filter(tenant=tenant).delete()
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


if __name__ == "__main__":
    bench_review(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
