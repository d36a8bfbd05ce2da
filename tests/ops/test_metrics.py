"""GET /metrics (ops/metrics.py): Prometheus text that parses; requests labelled by route, never
the raw path; REST decision latency, Celery task durations and limit rejections counted; the
scrape-time figures (queues, WebSocket slots, models' live accuracy) read; tenants named only up
to the cap; figures of other processes included; no secret in the text; staff, the token, or
loopback when allowed, and nobody else."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from ops import metrics
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
URL = "/metrics"
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh():
    metrics.reset_cache()
    with override_settings(METRICS_TOKEN=TOKEN, METRICS_ALLOW_LOOPBACK=False):
        yield
    metrics.reset_cache()


def scrape() -> tuple[str, dict]:
    r = APIClient().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("text/plain")
    text = r.content.decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def labelled(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for (n, labels) in samples if n == name]


# --- who may scrape -------------------------------------------------------------------------------


def test_only_staff_the_token_or_allowed_loopback_may_scrape(alpha, staff_user):
    anonymous = APIClient().get(URL)
    assert anonymous.status_code == 403 and error_code(anonymous) == "permission_denied"
    assert "METRICS_TOKEN" in anonymous.json()["error"]["message"]
    wrong = APIClient().get(URL, HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 403 and error_code(wrong) == "invalid_metrics_token"
    assert APIClient().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    # a tenant's API key, JWT or owner session is not a scraper (and /metrics never resolves a tenant)
    assert alpha.client().get(URL).status_code == 403
    assert alpha.client(role="owner").get(URL).status_code == 403
    member = APIClient()
    member.force_login(alpha.users["owner"])
    assert member.get(URL).status_code == 403
    staff = APIClient()
    staff.force_login(staff_user)
    assert staff.get(URL).status_code == 200
    # a wrong token is refused even from a staff session
    assert staff.get(URL, HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    with override_settings(METRICS_TOKEN=""):  # no token configured: no bearer is accepted
        assert APIClient().get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 403
    # loopback (the test client's 127.0.0.1) only when allowed, and never through a proxy
    with override_settings(METRICS_ALLOW_LOOPBACK=True):
        assert APIClient().get(URL).status_code == 200
        assert APIClient().get(URL, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
        assert APIClient().get(URL, REMOTE_ADDR="203.0.113.9").status_code == 403


# --- counted figures ------------------------------------------------------------------------------


def test_the_text_parses_and_requests_are_labelled_by_route_not_path(alpha):
    _, before = scrape()
    labels = {"route": "decision-detail", "method": "GET", "status": "4xx"}
    r = alpha.client().get("/api/v1/decisions/987654321/")
    assert r.status_code == 404
    text, after = scrape()
    name = "ati_http_request_duration_seconds_count"
    assert value(after, name, **labels) >= value(before, name, **labels) + 1
    assert value(after, "ati_http_request_duration_seconds_bucket", **labels, le="+Inf") >= 1
    # the raw path (its id) is no label anywhere; the /metrics scrape itself has its route
    assert "987654321" not in text and "/api/v1/decisions/" not in text
    assert value(after, name, route="metrics", method="GET", status="2xx") >= 1
    # an unrouted path is one series, whatever the path
    APIClient().get("/no/such/path/123/")
    _, later = scrape()
    assert value(later, name, route="unmatched", method="GET", status="4xx") >= 1
    assert all("tenant" not in lb for lb in labelled(later, name))


def test_a_rest_decision_observes_its_latency(alpha, usage_redis):
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table

    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(300, seed=7)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="MET", timeframe="1d", raw=raw)
    plan = alpha.tenant.plan.code
    _, before = scrape()
    r = alpha.client(scope="trade").post("/api/v1/decisions/", {"symbol": "MET"}, format="json")
    assert r.status_code == 201, r.content
    _, after = scrape()
    count = "ati_decision_latency_seconds_count"
    assert value(after, count, source="api", plan=plan) >= value(before, count, source="api", plan=plan) + 1
    assert value(after, "ati_decision_latency_seconds_sum", source="api", plan=plan) > value(
        before, "ati_decision_latency_seconds_sum", source="api", plan=plan
    )
    route = {"route": "decision-list", "method": "POST", "status": "2xx"}
    assert value(after, "ati_http_request_duration_seconds_count", **route) >= 1


def test_a_stream_batch_counts_bars_decisions_and_their_latency(alpha):
    _, before = scrape()
    metrics.stream_batch(tenant=alpha.tenant, bars=7, latencies_ms=[1.5, 2.5], seconds=0.02)
    _, after = scrape()
    plan = alpha.tenant.plan.code
    assert value(after, "ati_stream_bars_total", plan=plan) - value(before, "ati_stream_bars_total", plan=plan) == 7
    assert (
        value(after, "ati_stream_decisions_total", plan=plan)
        >= value(before, "ati_stream_decisions_total", plan=plan) + 2
    )
    assert value(after, "ati_decision_latency_seconds_count", source="stream", plan=plan) >= 2


def test_celery_task_durations_by_task_name():
    from config.celery import app

    @app.task(name="tests.metrics_probe", bind=True)
    def probe(self, fail=False):
        if fail:
            raise ValueError("boom")
        return 1

    _, before = scrape()
    probe.apply()
    probe.apply(kwargs={"fail": True})
    _, after = scrape()
    name = "ati_celery_task_duration_seconds_count"
    for state in ("SUCCESS", "FAILURE"):
        labels = {"task": "tests.metrics_probe", "state": state}
        assert value(after, name, **labels) == value(before, name, **labels) + 1


def test_rate_limit_rejections_are_counted_by_limit_and_plan(beta):
    from tests.tenants.test_ratelimit import _limits

    _limits(beta, api_requests_per_minute=100, api_requests_per_minute_per_key=1)
    _, before = scrape()
    client = beta.client()
    assert client.get("/api/v1/tenant/").status_code == 200
    refused = client.get("/api/v1/tenant/")
    assert refused.status_code == 429
    _, after = scrape()
    labels = {"limit": "requests_key", "plan": beta.tenant.plan.code}
    assert (
        value(after, "ati_limit_rejections_total", **labels)
        == value(before, "ati_limit_rejections_total", **labels) + 1
    )
    # refused before routing, still labelled by its route
    route = [lb for lb in labelled(after, "ati_http_request_duration_seconds_count") if lb.get("status") == "4xx"]
    assert any(lb["route"] not in ("unmatched", "") and lb["method"] == "GET" for lb in route)


def test_a_locked_login_is_a_rejection(alpha):
    from django.conf import settings

    from accounts import lockout

    rejected = metrics.LIMIT_REJECTIONS.labels("login_lockout", "none")._value.get()
    for _ in range(settings.LOGIN_LOCKOUT_MAX_FAILURES):
        lockout.failure_record(username="viewer@alpha.test", ip="10.9.9.9", via="dashboard")
    with pytest.raises(lockout.LoginLocked):
        lockout.lockout_check(username="viewer@alpha.test", ip="10.9.9.9")
    assert metrics.LIMIT_REJECTIONS.labels("login_lockout", "none")._value.get() == rejected + 1


def test_figures_of_other_processes_are_included():
    """Multiprocess mode: what another process (a worker, the stream) counted is in the scrape."""
    if not metrics.MULTIPROC_DIR:
        pytest.skip("single-process mode")
    code = (
        "from prometheus_client import Counter;"
        "Counter('ati_limit_rejections', 'x', ['limit', 'plan']).labels('from_another_process', 'none').inc(3)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ}, timeout=30)
    _, samples = scrape()
    assert value(samples, "ati_limit_rejections_total", limit="from_another_process", plan="none") >= 3


# --- read at scrape time --------------------------------------------------------------------------


def _deployed_model(fx, *, right: int, wrong: int) -> None:
    from features.models import FeatureSet
    from intelligence.models import Decision
    from models_registry.models import ModelAlias, ModelVersion, RegisteredModel

    with schema_context(fx.tenant.schema_name):
        fs = FeatureSet.objects.create(name="met-fs", version=1, spec={}, spec_hash="2" * 64, columns=["f"], warmup=1)
        model = RegisteredModel.objects.create(name="met-model")
        version = ModelVersion.objects.create(model=model, version=1, status="ready", task="binary", target={},
                                              feature_set=fs, symbol="MET", timeframe="1d")  # fmt: skip
        ModelAlias.objects.create(model=model, name="production", version=version)
        t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        Decision.objects.bulk_create(
            Decision(source="stream", symbol="MET", timeframe="1d", ts=t0 + dt.timedelta(days=i), action="BUY",
                     confidence=0.6, model_version=version.ref, model_correct=i < right)
            for i in range(right + wrong)
        )  # fmt: skip


def test_scrape_time_figures_queues_websockets_and_live_accuracy(alpha, beta):
    from tenants import limits

    _deployed_model(alpha, right=3, wrong=1)
    assert limits.ws_slot_acquire(alpha.tenant, "metrics-test-1") is not None
    assert limits.ws_slot_acquire(alpha.tenant, "metrics-test-2") is not None
    assert limits.ws_slot_acquire(beta.tenant, "metrics-test-3") is not None
    text, samples = scrape()
    for source in ("tenants", "queues", "streams", "websockets", "models"):
        assert value(samples, "ati_metrics_source_up", source=source) == 1, source
    assert ("ati_celery_queue_depth", (("queue", "celery"),)) in samples
    assert "ati_celery_unacked_tasks" in text
    assert value(samples, "ati_websocket_connections", tenant="alpha", plan=alpha.tenant.plan.code) == 2
    assert value(samples, "ati_websocket_connections", tenant="beta", plan=beta.tenant.plan.code) == 1
    labels = {"tenant": "alpha", "model": "met-model", "alias": "production"}
    assert value(samples, "ati_model_live_accuracy", **labels) == pytest.approx(0.75)
    assert value(samples, "ati_model_live_calls", **labels) == 4
    assert value(samples, "ati_tenants_active", plan=alpha.tenant.plan.code) >= 1


def test_tenants_beyond_the_cap_are_summed_as_other(alpha, beta):
    from tenants import limits

    for i in range(3):
        limits.ws_slot_acquire(alpha.tenant, f"cap-a{i}")
    limits.ws_slot_acquire(beta.tenant, "cap-b0")
    with override_settings(METRICS_TENANT_CAP=1):
        _, samples = scrape()
    rows = labelled(samples, "ati_websocket_connections")
    assert {r["tenant"] for r in rows} == {"alpha", "other"}  # the largest keeps its name
    assert value(samples, "ati_websocket_connections", tenant="other", plan=beta.tenant.plan.code) == 1
    metrics.reset_cache()
    with override_settings(METRICS_TENANT_CAP=0):
        _, samples = scrape()
    assert {r["tenant"] for r in labelled(samples, "ati_websocket_connections")} == {"other"}
    # counted figures carry no tenant at all: a plan, bounded by the plans that exist
    for name in ("ati_decision_latency_seconds_count", "ati_limit_rejections_total", "ati_stream_bars_total"):
        assert all("tenant" not in lb for lb in labelled(samples, name))


def test_no_secret_is_in_the_text(alpha, staff_user):
    from django.conf import settings

    alpha.client().get("/api/v1/tenant/")
    text, _ = scrape()
    db_password = settings.DATABASES["default"].get("PASSWORD") or "no-password-set"
    for secret in (TOKEN, alpha.key, settings.SECRET_KEY, db_password, alpha.key[:12]):
        assert secret not in text
    assert "Api-Key" not in text and "Bearer" not in text


# --- WebSockets -----------------------------------------------------------------------------------


def _open(server: str) -> float:
    """This process's own count (its multiprocess file): the other test worker's sockets aside."""
    return metrics.WS_OPEN.labels(server)._value.get()


def test_daphne_sockets_are_counted_while_open(alpha):
    import asyncio

    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    before = _open("daphne")

    async def scenario():
        c = WebsocketCommunicator(application, f"/ws/echo/?api_key={alpha.key}")
        connected, _ = await c.connect(timeout=5)
        assert connected
        assert _open("daphne") == before + 1
        await c.disconnect()
        await asyncio.sleep(0.05)
        refused = WebsocketCommunicator(application, "/ws/echo/?api_key=ati_000000000000_bad")
        assert not (await refused.connect(timeout=5))[0]  # never accepted: never counted

    asyncio.run(scenario())
    assert _open("daphne") == before


def test_edge_sockets_are_counted_and_a_refusal_over_the_plan_is_a_rejection(beta):
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from intelligence import edge
    from tenants import limits

    cap = limits.plan_limit(beta.tenant, "websocket_connections")
    before = _open("edge")
    rejected = metrics.LIMIT_REJECTIONS.labels("websocket_connections", beta.tenant.plan.code)._value.get()

    async def main():
        hub = edge.Hub()
        async with hub.serve("127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/decisions/?api_key={beta.key}"
            sockets = [await connect(url) for _ in range(cap)]
            assert _open("edge") == before + cap
            with pytest.raises(InvalidStatus):
                await connect(url)
            for ws in sockets:
                await ws.close()
            await asyncio.sleep(0.2)

    asyncio.run(main())
    assert _open("edge") == before
    assert metrics.LIMIT_REJECTIONS.labels("websocket_connections", beta.tenant.plan.code)._value.get() == rejected + 1
