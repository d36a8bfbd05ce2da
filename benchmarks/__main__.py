"""`make bench`: figures, never pass/fail. Runs against the dev database (embedded or DATABASE_URL).

- provision: wall time of tenant_provision (template clone), p50/max over 5 tenants;
- http: GET /api/v1/tenant/ with an API key through gunicorn (2 workers), 1 and 4 keep-alive
  connections, for a few seconds each; p50/p99 latency and throughput. The client is Python on the
  same 2 cores, so its own cost is part of every figure (also measured: GET /health).
- metrics (``benchmarks.metrics``): MetricsMiddleware's µs per request; the exposition's ms.
- live (``benchmarks.live``): POST /api/v1/decisions/ open-loop at 200 req/s from 50 clients
  through gunicorn, the highest rate keeping p99 <= 50 ms, one request's milliseconds by stage;
  the ws/decisions/ feed (edge server) to 1,000 clients next to a raw-broadcast floor.
- tenants (``benchmarks.tenants``): BENCH_TENANTS (50) tenants created through tenant_provision, decision
  p99 and sign-up with 1 vs all present, migrate_schemas standard vs multiprocessing; dropped after
  (``make scale-tenants`` runs it with 500).
"""

import gc
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def bench_provision():
    import django

    django.setup()
    from django_tenants.utils import schema_exists  # noqa: F401

    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    tenant_template_ensure()
    times, slug_base = [], f"bench{int(time.time())}"
    for i in range(5):
        t = time.perf_counter()
        tenant_provision(slug=f"{slug_base}-{i}", plan="pro")
        times.append(time.perf_counter() - t)
    for tenant in Tenant.objects.filter(slug__startswith=slug_base):
        tenant.delete(force_drop=True)
    print(f"provision_tenant   p50 {statistics.median(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _load(port, path, headers, connections, seconds, body=None):
    latencies, stop = [], time.monotonic() + seconds
    method = "GET" if body is None else "POST"
    lock = threading.Lock()

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(connections)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return len(latencies) / elapsed, _pct(latencies, 0.5), _pct(latencies, 0.99)


def bench_http():
    import django

    django.setup()
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    slug = f"benchhttp{int(time.time())}"
    _, key = tenant_provision(slug=slug, plan="enterprise")
    port = _free_port()
    env = dict(os.environ, HTTP_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.1)
        headers = {"Authorization": f"Api-Key {key}"}
        _load(port, "/api/v1/tenant/", headers, 2, 1.0)  # warm up both workers
        for path, hdrs in (("/health", {}), ("/api/v1/tenant/", headers)):
            for conns in (1, 4):
                rps, p50, p99 = _load(port, path, hdrs, conns, 4.0)
                print(f"GET {path:<18} {conns} conn   {rps:7.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        body = _calculate_body()
        json_headers = {**headers, "Content-Type": "application/json"}
        rps, p50, p99 = _load(port, "/api/v1/features/calculate/", json_headers, 1, 6.0, body=body)
        print(f"POST calculate 500 bars 1 conn {rps:5.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (HTTP)")
    finally:
        proc.terminate()
        proc.wait(10)
        Tenant.objects.get(slug=slug).delete(force_drop=True)


def _calculate_body() -> bytes:
    """calculate-features for 500 posted hourly bars, the default set, as JSON."""
    import orjson

    from marketdata.synthetic import generate_bars

    bars = generate_bars(500, timeframe="1h", seed=8)
    rows = [{"timestamp": ts.isoformat(), **row} for ts, row in bars.to_dict("index").items()]
    return orjson.dumps({"feature_set": "default", "timeframe": "1h", "limit": 500, "bars": rows})


def bench_marketdata():
    """Bulk import of 1 M one-minute bars (read CSV + validate + binary COPY, one transaction), the
    read back of 1 M bars, and calculate-features for 500 posted bars through the whole Django stack
    (middleware, API-key auth, JSON in/out; in-process client, so no socket time)."""
    import django

    django.setup()
    from django_tenants.utils import schema_context
    from rest_framework.test import APIClient

    from marketdata import selectors, services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    slug = f"benchmd{int(time.time())}"
    tenant, key = tenant_provision(slug=slug, plan="enterprise")
    try:
        csv = as_csv(generate_bars(1_000_000, timeframe="1m", seed=7)).encode()
        with schema_context(tenant.schema_name):
            t = time.perf_counter()
            result = services.bars_import(tenant=tenant, symbol="BENCH", timeframe="1m", raw=read_table(csv, "csv"))
            took = time.perf_counter() - t
            print(f"import 1M bars     {took:7.2f} s   ({result.inserted:,} rows, {len(csv) / 1e6:.0f} MB CSV)")
            instrument = selectors.instrument_get(symbol="BENCH")
            t = time.perf_counter()
            frame = selectors.bars_frame(instrument=instrument, timeframe="1m")
            print(f"read 1M bars       {time.perf_counter() - t:7.2f} s   ({len(frame):,} rows)")
        del csv, frame, result  # 1 M-bar objects: not what a web worker holds
        gc.collect()
        body = _calculate_body()  # encoded once: the client's JSON encoding is not the endpoint's time
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        times = []
        for i in range(520):
            t = time.perf_counter()
            r = client.post("/api/v1/features/calculate/", body, content_type="application/json")
            if i >= 20:
                times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.content[:300]
        print(
            f"calculate 500 bars p50 {_pct(times, 0.5):6.2f} ms   p99 {_pct(times, 0.99):6.2f} ms   (REST, in-process)"
        )
    finally:
        Tenant.objects.get(slug=slug).delete(force_drop=True)


if __name__ == "__main__":
    from benchmarks.automl import bench_automl
    from benchmarks.backtest import bench_backtest
    from benchmarks.controls import bench_controls
    from benchmarks.decisions import bench_decide
    from benchmarks.events import bench_events
    from benchmarks.features import bench_features
    from benchmarks.live import bench_live
    from benchmarks.metrics import bench_metrics
    from benchmarks.notifications import bench_notifications
    from benchmarks.review import bench_review
    from benchmarks.stream import bench_stream
    from benchmarks.tenants import bench_tenants
    from benchmarks.usage import bench_usage

    print("== benchmarks (2-core machine; client and server share the cores) ==")
    bench_provision()
    bench_http()
    bench_metrics()
    bench_usage()
    bench_controls()
    bench_notifications()
    bench_review()
    bench_features()
    bench_marketdata()
    bench_automl()
    bench_decide()
    bench_stream()
    bench_events()
    bench_live()
    bench_backtest()
    bench_tenants()  # BENCH_TENANTS (50) tenants; `make scale-tenants` for 500
