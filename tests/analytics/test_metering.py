"""Metering: requests and billable units counted in Redis per tenant, key and user, flushed by
the beat task into hourly and daily rollups (and latency histograms) exactly once — a flush that
dies before or after its database commit loses nothing and counts nothing twice."""

from unittest import mock

import pytest
from django.db.models import Sum
from django_tenants.utils import schema_context

from analytics import services
from analytics.models import LatencyHourly, MeterBatch, UsageDaily, UsageHourly
from tenants import limits, metering, resolution

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenant/"


def _count(fx, **filters) -> int:
    with schema_context(fx.tenant.schema_name):
        return UsageHourly.objects.filter(**filters).aggregate(n=Sum("count"))["n"] or 0


def test_requests_are_metered_per_endpoint_status_key_and_user(alpha, beta, usage_redis):
    for _ in range(3):
        assert alpha.client().get(URL).status_code == 200
    assert alpha.client(role="viewer").get(URL).status_code == 200
    assert alpha.client().get("/api/v1/backtests/nope/").status_code == 404
    services.meter_flush()
    key_id = resolution.api_key_resolve(alpha.key).id
    viewer_id = alpha.users["viewer"].pk
    endpoint = "tenant-detail"
    assert _count(alpha, kind="request", status="2xx", api_key_id=key_id) == 3
    assert _count(alpha, kind="request", status="2xx", user_id=viewer_id) == 1
    assert _count(alpha, kind="request", status="4xx") == 1
    with schema_context(alpha.tenant.schema_name):
        names = set(UsageHourly.objects.filter(kind="request").values_list("name", flat=True))
        assert any(endpoint in n for n in names), names
        lat = {row.endpoint: row for row in LatencyHourly.objects.all()}
        detail = next(row for name, row in lat.items() if endpoint in name)
        assert sum(detail.bins) == 4 and detail.total_us > 0
        # the daily rollup holds what the hours hold
        assert UsageDaily.objects.aggregate(n=Sum("count"))["n"] == UsageHourly.objects.aggregate(n=Sum("count"))["n"]
    assert _count(beta) == 0  # another tenant's tables see none of it


def test_units_ride_on_the_request_or_go_at_once(alpha, usage_redis):
    metering.units_add(alpha.tenant, "backtest_bar", 600)  # outside a request: written at once
    meter = metering.request_begin()
    metering.units_add(alpha.tenant, "decision")
    metering.request_end()
    assert meter.units == [("decision", 1)]  # inside one: carried by the request's round trip
    metering.request_write(alpha.tenant.schema_name, endpoint="x", status=201, latency_ms=2.5, key_id=7, user_id=None,
                           units=meter.units)  # fmt: skip
    services.meter_flush()
    assert _count(alpha, kind="unit", name="backtest_bar") == 600
    assert _count(alpha, kind="unit", name="decision", api_key_id=7) == 1


def test_a_flush_that_dies_before_its_commit_is_finished_by_the_next(alpha, usage_redis):
    for _ in range(4):
        alpha.client().get(URL)
    with mock.patch("analytics.services._write", side_effect=RuntimeError("worker killed")):
        with pytest.raises(RuntimeError):
            services.meter_flush()
    assert _count(alpha) == 0 and usage_redis.scard(services.PENDING_SET) == 1
    alpha.client().get(URL)  # counted meanwhile: a new hash, not the claimed one
    services.meter_flush()
    assert _count(alpha, kind="request") == 5
    assert usage_redis.scard(services.PENDING_SET) == 0


def test_a_flush_that_dies_after_its_commit_counts_nothing_twice(alpha, usage_redis):
    for _ in range(3):
        alpha.client().get(URL)
    real = services._forget
    with mock.patch("analytics.services._forget", side_effect=RuntimeError("worker killed")):
        with pytest.raises(RuntimeError):
            services.meter_flush()
    assert _count(alpha, kind="request") == 3  # committed, but still pending in Redis
    assert usage_redis.scard(services.PENDING_SET) == 1
    services.meter_flush()  # the batch is recorded as applied: only forgotten now
    assert _count(alpha, kind="request") == 3
    with schema_context(alpha.tenant.schema_name):
        assert MeterBatch.objects.count() == 1
    assert usage_redis.scard(services.PENDING_SET) == 0 and real is services._forget


def test_a_worker_killed_mid_flush_loses_no_count(alpha, usage_redis):
    """A real process running the flush, killed (SIGKILL) after claiming; the next flush finishes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import service_env

    for _ in range(6):
        alpha.client().get(URL)
    # the child claims the hash, then hangs in its database write until killed
    code = (
        "import django, time; django.setup()\n"
        "from analytics import services\n"
        "def hang(*a, **k):\n    print('claimed', flush=True); time.sleep(60)\n"
        "services._write = hang\nservices.meter_flush()\n"
    )
    env = {**os.environ, **service_env(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "claimed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    time.sleep(0.1)
    assert usage_redis.scard(services.PENDING_SET) == 1
    services.meter_flush()
    assert _count(alpha, kind="request") == 6


def test_the_usage_endpoint_reports_units_endpoints_and_quotas(alpha, beta, usage_redis):
    from tests.conftest import error_code

    for _ in range(3):
        assert alpha.client().get(URL).status_code == 200
    metering.units_add(alpha.tenant, "backtest_bar", 1200)
    limits.limit_check(alpha.tenant, "decisions_per_day", 7)
    services.meter_flush()
    alpha.client().get(URL)  # not flushed yet: read from the meter
    body = alpha.client(role="viewer").get("/api/v1/usage/?days=7").json()
    assert body["granularity"] == "day" and body["totals"]["backtest_bar"] == 1200
    assert body["totals"]["request"] >= 4  # three flushed, one pending, plus the usage call's own (not yet)
    detail = next(e for e in body["endpoints"] if "tenant-detail" in e["endpoint"])
    assert detail["requests"] == 4 and detail["by_status"] == {"2xx": 4} and detail["error_rate"] == 0
    assert detail["p50_ms"] is not None and detail["p99_ms"] >= detail["p50_ms"]
    quotas = {q["quota"]: q for q in body["quotas"]}
    assert quotas["decisions_per_day"]["used"] == 7 and quotas["decisions_per_day"]["limit"] == 20_000
    assert "at this pace" in quotas["decisions_per_day"]["forecast"]
    hourly = alpha.client().get("/api/v1/usage/?days=1&granularity=hour").json()
    assert sum(p["count"] for p in hourly["units"]["backtest_bar"]) == 1200
    # bad input: a clear 400, nothing else
    for query in ("days=0", "days=abc", "granularity=week", "days=30&granularity=hour"):
        r = alpha.client().get(f"/api/v1/usage/?{query}")
        assert r.status_code == 400 and error_code(r) == "invalid_input", query
    # a key without the read scope: 403; another tenant: its own (empty) usage, never alpha's
    assert alpha.client(scope="trade").get("/api/v1/usage/").status_code == 403
    other = beta.client().get("/api/v1/usage/").json()
    assert "backtest_bar" not in other["totals"] and all("tenant-detail" not in e["endpoint"] or e["requests"] == 0
                                                        for e in other["endpoints"])  # fmt: skip


def test_a_quota_forecast_names_the_day_it_will_be_hit(beta, usage_redis):
    import datetime as dt

    from analytics.selectors import quotas_report

    beta.tenant.plan.limits = {**beta.tenant.plan.limits, "backtest_bars_per_month": 1000}
    limits.limit_check(beta.tenant, "backtest_bars_per_month", 500)
    # half used by the 6th of this month: at that pace the cap falls on the 11th
    now = dt.datetime.now(dt.UTC).replace(day=6, hour=0, minute=0, second=0, microsecond=0)
    report = {q["quota"]: q for q in quotas_report(tenant=beta.tenant, now=now)}["backtest_bars_per_month"]
    assert report["used"] == 500 and report["share"] == 0.5
    assert report["exceeds_at"] == (now + dt.timedelta(days=5)).isoformat()
    assert f"you will hit 1,000 on {now:%Y-%m}-11 00:00 UTC" in report["forecast"]
    assert report["projected"] > 1000


def test_staff_read_any_tenants_usage_audited_tenants_never(alpha, beta, usage_redis, client):
    from django.contrib.auth import get_user_model

    from compliance.models import AuditRecord

    alpha.client().get(URL)
    services.meter_flush()
    url = "/api/v1/platform/usage/"
    assert alpha.client().get(url).status_code == 403 and alpha.client(role="owner").get(url).status_code == 403
    staff = get_user_model().objects.create_user(email="usage@platform.test", password="x" * 12, is_staff=True)
    client.force_login(staff)
    overview = client.get(url).json()
    rows = {r["tenant"]: r for r in overview["tenants"]}
    assert rows[alpha.slug]["totals"].get("request", 0) >= 1 and alpha.slug in rows and beta.slug in rows
    one = client.get(url + f"?tenant={alpha.slug}&days=7").json()
    assert one["tenant"] == alpha.slug and any("tenant-detail" in e["endpoint"] for e in one["endpoints"])
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="staff.usage_viewed", actor=f"user:{staff.pk}").count() == 1
    assert client.get(url + "?tenant=nope").status_code == 404
