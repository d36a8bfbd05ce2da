"""/metrics' costs (ops/metrics.py), in a child process with its own multiprocess directory:

- ``MetricsMiddleware`` per request: a routed request (the view name read from resolver_match),
  and one answered before routing (resolved again by path), against the bare ``get_response``;
- one histogram observation alone;
- the exposition of the counted figures (``render`` without the scrape-time collector) with
  200 routes × 2 statuses observed, in multiprocess mode (reads every process's files).

Run alone with ``python -m benchmarks.metrics``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _best(fn, n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of ``n`` calls, in µs per call."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def _measure() -> None:
    import django

    django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve

    from ops import metrics

    assert metrics.MULTIPROC_DIR, "run through bench_metrics (it sets PROMETHEUS_MULTIPROC_DIR)"
    response = HttpResponse(b"ok")
    middleware = metrics.MetricsMiddleware(lambda request: response)
    routed = RequestFactory().get("/health")
    routed.resolver_match = resolve("/health", urlconf="config.urls_public")
    early = RequestFactory().get("/api/v1/tenant/")
    early.urlconf = "config.urls_tenants"
    refused = HttpResponse(b"no", status=401)
    early_mw = metrics.MetricsMiddleware(lambda request: refused)
    n = 20_000
    bare = _best(lambda: response, n)
    with_mw = _best(lambda: middleware(routed), n)
    before_routing = _best(lambda: early_mw(early), n // 4)
    child = metrics.HTTP_LATENCY.labels("bench", "GET", "2xx")
    observe = _best(lambda: child.observe(0.002), n)
    for i in range(200):
        for status in ("2xx", "4xx"):
            metrics.HTTP_LATENCY.labels(f"bench-route-{i}", "GET", status).observe(0.003)
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client import multiprocess as mp

    def counted() -> bytes:
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        return generate_latest(registry)

    size = len(counted())
    render_ms = _best(counted, 5, repeats=3) / 1000
    print(f"metrics middleware  {with_mw - bare:6.1f} µs/request routed   {before_routing - bare:6.1f} µs answered "
          f"before routing (resolved by path)   observe {observe:4.1f} µs")  # fmt: skip
    print(f"metrics exposition  {render_ms:6.1f} ms for 400 request series ({size / 1024:.0f} KiB, multiprocess files)")


def bench_metrics() -> None:
    with tempfile.TemporaryDirectory(prefix="ati-bench-prometheus-") as directory:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=directory)
        subprocess.run([sys.executable, "-m", "benchmarks.metrics", "--child"], env=env, check=True)


if __name__ == "__main__":
    if "--child" in sys.argv:
        _measure()
    else:
        bench_metrics()
