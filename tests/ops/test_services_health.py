"""GET /api/v1/services-health/ (seed ``services-health``) without a Celery worker: who may read it,
each dependency down giving ``down`` (never a 500), and the seed thresholds judging the figures.
With a worker: tests/ops/test_services_health_worker.py."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from eventbus import bus
from ops import health
from tenants import metering
from tests.conftest import error_code

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_health")]
URL = "/api/v1/services-health/"


@pytest.fixture(autouse=True)
def _empty_queues():
    """No task an earlier test of this session left on the broker's queues (without a worker to
    take it): the queue depths asserted here are this test's own."""
    from config.celery import app

    prefix = app.conf.broker_transport_options.get("global_keyprefix", "")
    broker = health.redis_client(health._db("REDIS_DB_BROKER"))
    broker.delete(f"{prefix}celery", f"{prefix}notify")


@pytest.fixture
def staff_client(staff_user):
    c = APIClient()
    c.force_login(staff_user)
    return c


@pytest.fixture
def streams():
    """The event streams' Redis database, emptied for the test."""
    r = bus.client()
    r.flushdb()
    yield r
    r.flushdb()


def _bars(n: int) -> list[dict]:
    return [
        {"symbol": "BTCUSDT", "timeframe": "1m", "ts": 1_700_000_000 + 60 * i, "open": 1.0, "high": 1.0, "low": 1.0,
         "close": 1.0, "volume": 1.0}
        for i in range(n)
    ]  # fmt: skip


def _tenant(body: dict, slug: str) -> dict:
    return next(t for t in body["tenants"] if t["tenant"] == slug)


# --- who may read it -------------------------------------------------------------------------------


def test_tenant_callers_get_403_and_anonymous_401(alpha, beta):
    # given: a tenant's all-scopes key, an owner's token, a tenant member's session, nobody
    r = alpha.client().get(URL)
    assert r.status_code == 403 and error_code(r) == "permission_denied"
    assert alpha.client(role="owner").get(URL).status_code == 403
    member = APIClient()
    member.force_login(beta.users["owner"])
    assert member.get(URL).status_code == 403
    r = APIClient().get(URL)
    assert r.status_code == 401 and error_code(r) == "not_authenticated"


def test_bad_input_is_400(staff_client, alpha):
    r = staff_client.get(URL, {"fresh": "banana"})
    assert r.status_code == 400 and error_code(r) == "invalid_input" and "fresh" in r.json()["error"]["details"]


# --- the report ------------------------------------------------------------------------------------


def test_staff_see_every_check_and_tenant_and_no_worker_is_down(staff_client, alpha, beta, streams):
    # given: no Celery worker runs in this module
    r = staff_client.get(URL, {"fresh": "true"})
    assert r.status_code == 200
    body = r.json()
    assert list(body["checks"]) == [
        "postgres", "redis", "celery", "queues", "streams", "channel_layer", "websockets", "error_rate",
        "latency_p99", "availability", "tenants",
    ]  # fmt: skip
    checks = body["checks"]
    for name in ("postgres", "redis", "channel_layer"):
        # up: judged on their round trip (how fast depends on the machine's load, so not asserted)
        assert checks[name]["status"] in ("ok", "warn", "critical"), (name, checks[name])
        assert isinstance(checks[name]["latency_ms"], float)
        trip = checks[name]["figures"].get("latency_ms") or checks[name]["figures"]["round_trip_ms"]
        assert trip["status"] == health.THRESHOLDS["round_trip_ms"].judge(trip["value"])
    pg = checks["postgres"]["figures"]
    assert pg["latency_ms"]["warn"] == 10 and pg["latency_ms"]["critical"] == 20
    assert 0 < pg["connections_used"]["value"] < 1 and pg["connections"]["value"] >= 1
    redis_figures = checks["redis"]["figures"]
    assert redis_figures["clients"]["value"] >= 1 and redis_figures["memory_used_bytes"]["value"] > 0
    assert 0 <= redis_figures["memory_used"]["value"] < 1  # a share (an idle server's rounds to 0.0)
    # then: the workers are down, saying how to start one; the queues are still measured
    celery = checks["celery"]
    assert celery["status"] == "down" and "celery -A config worker -Q celery,notify" in celery["detail"]
    assert [q["queue"] for q in body["queues"]] == ["celery", "notify"]
    assert all(q["consumers"] == [] and q["depth"] == 0 for q in body["queues"])
    assert {t["tenant"]: t["status"] for t in body["tenants"]} == {"alpha": "ok", "beta": "ok"}
    assert body["status"] == "down"
    error_rate = body["thresholds"]["error_rate"]
    assert error_rate["warn"] == 0.001 and error_rate["critical"] == 0.005 and "seed 000" in error_rate["source"]
    # and: a second ask within the cache's seconds reuses the report
    again = staff_client.get(URL).json()
    assert again["cached"] is True and again["generated_at"] == body["generated_at"]


def test_response_matches_its_documented_schema(staff_client, alpha, streams):
    from tests.api.test_openapi_walk import OPS_BY_KEY, _assert_conforms

    streams.xgroup_create(bus.stream_key("market.data.update", alpha.tenant.schema_name), "decisions", id="0",
                          mkstream=True)  # fmt: skip
    r = staff_client.get(URL, {"fresh": "1"})
    assert r.json()["streams"], "a consumer group is listed"
    _assert_conforms(OPS_BY_KEY[(URL, "GET")], r)


# --- dependencies down: status down with what to do, never a 500 ----------------------------------


def test_redis_unreachable_is_down_not_500(staff_client, alpha):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        r = staff_client.get(URL, {"fresh": "1"})
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert checks["redis"]["status"] == "down" and "REDIS_URL" in checks["redis"]["detail"]
    for name in ("celery", "queues", "streams", "websockets"):
        assert checks[name]["status"] == "down", name
        assert "Redis" in checks[name]["detail"] or "broker" in checks[name]["detail"], name
    assert checks["postgres"]["status"] == "ok"
    assert r.json()["status"] == "down" and _tenant(r.json(), "alpha")["status"] == "ok"
    assert all(q["status"] == "down" and q["depth"] is None for q in r.json()["queues"])


def test_channel_layer_unreachable_is_down(staff_client, alpha):
    layer = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                         "CONFIG": {"hosts": ["redis://127.0.0.1:1/3"]}}}  # fmt: skip
    with override_settings(CHANNEL_LAYERS=layer):
        r = staff_client.get(URL, {"fresh": "1"})
    assert r.status_code == 200
    check = r.json()["checks"]["channel_layer"]
    assert check["status"] == "down" and "CHANNEL_LAYERS" in check["detail"]
    assert r.json()["checks"]["redis"]["status"] == "ok"


# --- thresholds ------------------------------------------------------------------------------------


def test_thresholds_judge_at_their_bounds():
    t = health.THRESHOLDS
    assert [t["error_rate"].judge(v) for v in (None, 0.001, 0.0011, 0.005, 0.0051)] == [
        "ok", "ok", "warn", "warn", "critical",
    ]  # fmt: skip
    assert [t["availability"].judge(v) for v in (1.0, 0.999, 0.998, 0.995, 0.99)] == [
        "ok", "ok", "warn", "warn", "critical",
    ]  # fmt: skip
    # a socket cap reached refuses the next socket: reaching it is critical
    assert [t["ws_share"].judge(v) for v in (0.79, 0.8, 0.99, 1.0)] == ["ok", "warn", "warn", "critical"]
    assert [t["workers"].judge(v) for v in (0, 1, 3)] == ["critical", "ok", "ok"]
    assert health.figure(25.0, "round_trip_ms") == {
        "value": 25.0, "unit": "ms", "status": "critical", "warn": 10, "critical": 20, "comparison": "above",
    }  # fmt: skip


def test_stream_backlog_queue_depth_error_rate_and_alerts_colour_the_report(staff_client, alpha, beta, streams,
                                                                           usage_redis):  # fmt: skip
    from django.utils import timezone

    from analytics.models import Alert
    from config.celery import app

    # given: alpha's decision group 1,200 entries behind (warn), beta's 3,500 (critical)
    for fx, n in ((alpha, 1200), (beta, 3500)):
        bus.publish_many("market.data.update", _bars(n), schema=fx.tenant.schema_name)
        streams.xgroup_create(bus.stream_key("market.data.update", fx.tenant.schema_name), "decisions", id="0")
    # and: 150 tasks waiting on the notify queue (warn)
    prefix = app.conf.broker_transport_options.get("global_keyprefix", "")
    broker = health.redis_client(health._db("REDIS_DB_BROKER"))
    broker.lpush(f"{prefix}notify", *[b"{}"] * 150)
    try:
        # and: 1 of 100 of alpha's requests answered 500 (1 %: critical), two of them slow
        for i in range(100):
            metering.request_write(alpha.tenant.schema_name, endpoint="GET /api/v1/decisions/",
                                   status=500 if i == 0 else 200, latency_ms=300 if i < 2 else 3, key_id=1,
                                   user_id=None)  # fmt: skip
        metering.barrier()
        # and: an alert of beta's fires
        with schema_context(beta.tenant.schema_name):
            Alert.objects.create(rule="accuracy", severity="warning", value=0.5, threshold=0.6, message="low",
                                 last_seen_at=timezone.now())  # fmt: skip
        body = staff_client.get(URL, {"fresh": "1"}).json()
    finally:
        broker.delete(f"{prefix}notify")
    checks = body["checks"]
    groups = {g["tenant"]: g for g in body["streams"]}
    assert groups["alpha"]["lag"] == 1200 and groups["alpha"]["status"] == "warn"
    # Redis 7 gives the lag (exact); 6.2 (the embedded server) has it counted up to just past the critical bound
    expected = 3500 if "lag_counted_to" not in groups["beta"] else groups["beta"]["lag_counted_to"]
    assert groups["beta"]["backlog"] == expected and groups["beta"]["status"] == "critical"
    assert (
        checks["streams"]["status"] == "critical" and checks["streams"]["figures"]["max_backlog"]["value"] == expected
    )
    assert "no consumer" in checks["streams"]["detail"]
    notify = next(q for q in body["queues"] if q["queue"] == "notify")
    assert notify["depth"] == 150 and notify["status"] == "warn"
    assert checks["queues"]["status"] == "warn" and "notify backing up" in checks["queues"]["detail"]
    assert checks["error_rate"]["figures"]["error_rate"]["value"] == 0.01
    assert checks["error_rate"]["status"] == "critical" and checks["error_rate"]["figures"]["requests"]["value"] == 100
    assert checks["latency_p99"]["figures"]["latency_p99_ms"]["value"] == 300.0
    assert checks["latency_p99"]["status"] == "warn"
    # then: per tenant, alpha is degraded (stream behind, error rate), beta down (stream critical) with its alert
    a, b = _tenant(body, "alpha"), _tenant(body, "beta")
    assert a["status"] == "degraded" and a["error_rate"]["value"] == 0.01 and a["requests"] == 100
    assert any("1,200 entries behind" in x for x in a["reasons"]) and any("error rate" in x for x in a["reasons"])
    assert b["status"] == "down" and b["alerts_firing"] == 1 and "1 alert firing" in b["reasons"]
    assert checks["tenants"]["status"] == "warn" and checks["tenants"]["figures"]["down"]["value"] == 1


def test_a_kill_switch_takes_the_tenant_down(staff_client, alpha, beta):
    from compliance import controls

    controls.kill_engage(tenant=alpha.tenant, reason="desk review", actor=alpha.users["owner"])
    body = staff_client.get(URL, {"fresh": "1"}).json()
    a = _tenant(body, "alpha")
    assert a["status"] == "down" and a["kill_switch"] == "desk review" and "trading halted: desk review" in a["reasons"]
    assert _tenant(body, "beta")["status"] == "ok"


def test_flushed_rollups_count_like_the_meter(staff_client, alpha, usage_redis):
    from analytics.services import meter_flush

    # given: 200 requests of alpha's, 2 of them 5xx, flushed from the meter into alpha's rollups
    for i in range(200):
        metering.request_write(alpha.tenant.schema_name, endpoint="GET /api/v1/decisions/",
                               status=503 if i < 2 else 200, latency_ms=4, key_id=1, user_id=None)  # fmt: skip
    metering.barrier()
    assert meter_flush()["batches"] >= 1 and not usage_redis.smembers(metering.KEYS_SET)
    # and: 100 more still in the meter
    for _ in range(100):
        metering.request_write(alpha.tenant.schema_name, endpoint="GET /api/v1/decisions/", status=200, latency_ms=4,
                               key_id=1, user_id=None)  # fmt: skip
    metering.barrier()
    body = staff_client.get(URL, {"fresh": "1"}).json()
    a = _tenant(body, "alpha")
    assert a["requests"] == 300 and a["error_rate"]["value"] == round(2 / 300, 5) and a["latency_p99_ms"] == 5.0
    assert a["error_rate"]["status"] == "critical" and a["status"] == "degraded"
    assert body["checks"]["error_rate"]["figures"]["requests"]["value"] == 300
