"""Notifications (issue 11): what the decision path pays, and how fast the engine delivers.

- offer: the stream's per-decision cost of asking whether a subscription wants a decision (three
  decision subscriptions, none of them matching: the common case), and of one that matches (an
  event row written in the batch's transaction);
- end to end: 300 events emitted in a burst, each to a signed webhook (a local receiver) and an
  in-app centre, delivered by a real notify worker (threads pool, 8) in its own process; the time
  from emit to the receiver having verified the request, p50 / p99, and messages a second.

Run alone with ``python -m benchmarks.notifications``."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _payload(i: int, confidence: float) -> dict:
    return {"id": i, "symbol": "BTC-USD", "timeframe": "1h", "ts": "2026-01-01T00:00:00+00:00", "action": "BUY",
            "confidence": confidence, "size": 1.0, "flow": "default@1", "model_version": "", "vetoed_by": None,
            "explanation": ""}  # fmt: skip


def bench_notifications() -> None:
    import django

    django.setup()
    from django.db import transaction
    from django_tenants.utils import schema_context

    from notifications import decisions
    from notifications.delivery import emit
    from notifications.models import Delivery
    from notifications.services import subscription_create, webhook_create
    from tenants.models import Membership, Role, Tenant
    from tenants.services import tenant_provision
    from tests.notifications.receivers import WebhookReceiver

    tenant, _ = tenant_provision(
        slug=f"benchnotify{int(time.time())}", plan="pro", owner_email=f"bench{int(time.time())}@notify.test",
        owner_password="correct-horse-battery-9",
    )  # fmt: skip
    receiver = WebhookReceiver()
    arrivals: dict[int, float] = {}

    class Stamped(list):  # the receiver appends each verified request: note when
        def append(self, item):
            arrivals[item["body"]["id"]] = time.time()
            super().append(item)

    receiver.received = Stamped()
    worker = None
    try:
        with schema_context(tenant.schema_name):
            owner = Membership.objects.get(tenant=tenant, role=Role.OWNER).user
            for symbols in (["ETH-USD"], ["SOL-USD"], ["BTC-USD"]):
                subscription_create(
                    data={"events": ["decision"], "channel": "inapp", "min_confidence": 0.95, "symbols": symbols},
                    user_id=owner.pk, tenant_wide=False, is_admin=False, actor=owner,
                )  # fmt: skip
            decisions.reset_local()
            misses = [(_payload(i, 0.6), 100.0) for i in range(20_000)]
            t = time.perf_counter()
            for i in range(0, len(misses), 50):  # the stream's batches
                decisions.offer(misses[i : i + 50])
            per_miss = (time.perf_counter() - t) / len(misses) * 1e6
            hits = [(_payload(100_000 + i, 0.99), 100.0) for i in range(500)]
            t = time.perf_counter()
            with transaction.atomic():
                for i in range(0, len(hits), 50):
                    decisions.offer(hits[i : i + 50])
                per_hit = (time.perf_counter() - t) / len(hits) * 1e3
                transaction.set_rollback(True)  # measured only: nothing to deliver from it
            print(
                f"notify offer       {per_miss:6.2f} µs a decision no subscription wants; {per_hit:5.2f} ms one that "
                f"matches (an event row in the batch's transaction)"
            )
            endpoint, receiver.secret = webhook_create(name="bench", url=receiver.url, actor=owner)
            subscription_create(data={"events": ["model.deployed"], "channel": "webhook", "webhook": endpoint.pk},
                                user_id=owner.pk, tenant_wide=True, is_admin=True, actor=owner)  # fmt: skip
            subscription_create(data={"events": ["model.deployed"], "channel": "inapp"}, user_id=owner.pk,
                                tenant_wide=False, is_admin=False, actor=owner)  # fmt: skip
        env = {**os.environ, "NOTIFY_WEBHOOK_RATE": "100000"}
        log_level = os.environ.get("BENCH_WORKER_LOG", "warning")
        log_to = open(os.environ.get("BENCH_WORKER_OUT", os.devnull), "w")  # noqa: SIM115 - the worker's life
        threads = os.environ.get("BENCH_NOTIFY_THREADS", "8")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "notify", "--pool", "threads",
             "--concurrency", threads, "-n", f"benchnotify{os.getpid()}@%h", "-l", log_level],
            env=env, stdout=subprocess.DEVNULL, stderr=log_to,
        )  # fmt: skip
        time.sleep(6)  # the worker connects to the broker
        n = 300
        emitted: dict[int, float] = {}
        with schema_context(tenant.schema_name):
            t0 = time.perf_counter()
            for i in range(n):
                event = emit("model.deployed", {"name": "bench", "version": i})
                emitted[event.pk] = time.time()
            deadline = time.monotonic() + 120
            while len(arrivals) < n and time.monotonic() < deadline:
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            while Delivery.objects.filter(status="sent").count() < 2 * n and time.monotonic() < deadline:
                time.sleep(0.05)
            sent = Delivery.objects.filter(status="sent").count()
            done = time.perf_counter() - t0
        burst = sorted((arrivals[k] - emitted[k]) * 1000 for k in arrivals if k in emitted)
        # then paced, 5 events a second: the latency a message sees when the engine keeps up
        paced: dict[int, float] = {}
        with schema_context(tenant.schema_name):
            for i in range(50):
                event = emit("model.deployed", {"name": "bench", "version": 1000 + i})
                paced[event.pk] = time.time()
                time.sleep(0.2)
        deadline = time.monotonic() + 60
        while any(k not in arrivals for k in paced) and time.monotonic() < deadline:
            time.sleep(0.02)
        steady = sorted((arrivals[k] - paced[k]) * 1000 for k in paced if k in arrivals)
        if steady:
            print(
                f"notify paced       p50 {statistics.median(steady):6.1f} ms   p99 "
                f"{steady[min(len(steady) - 1, int(len(steady) * 0.99))]:6.1f} ms   emit -> webhook verified, "
                "5 events/s "
                f"({len(steady)}/50 arrived)"
            )
        lat = burst
        if not lat:
            print("notify end to end  no message arrived (is the notify worker able to start?)")
            return
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"notify end to end  p50 {statistics.median(lat):6.1f} ms   p99 {p99:6.1f} ms"
            f"   {len(lat)}/{n} webhooks in {elapsed:4.1f} s ({len(lat) / elapsed:5.1f}/s); {sent} messages sent "
            f"(webhook + in-app) in {done:4.1f} s; {len(receiver.refused)} refused signatures; a burst of {n} events "
            "(latency = queueing behind it)"
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        receiver.close()
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


if __name__ == "__main__":
    bench_notifications()
