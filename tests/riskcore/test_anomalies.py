"""Anomaly detection: robust z by hand, planted spikes found in bars and decision streams, stored
once, emitted as anomaly.detected; the API's codes, roles and tenants."""

import datetime as dt
import json

import numpy as np
import pytest
from django_tenants.utils import schema_context

from marketdata.synthetic import generate_bars
from riskcore import detection
from riskcore.models import Anomaly
from tests.conftest import error_code
from tests.riskcore.helpers import import_bars

pytestmark = pytest.mark.django_db
URL = "/api/v1/anomalies/detect/"


def test_robust_z_by_hand():
    # median 3; |x - 3| = 2, 1, 0, 1, 97 -> MAD 1; z = (x - 3) / 1.4826
    z = detection.robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert z == pytest.approx(np.array([-2, -1, 0, 1, 97]) / 1.4826)
    assert list(detection.flagged(z, 5.0)) == [4]
    # more than half equal: MAD 0, the mean absolute deviation (0.2 x 1.2533) stands in
    z = detection.robust_z(np.array([5.0, 5.0, 5.0, 5.0, 6.0]))
    assert z[-1] == pytest.approx(1 / (1.2533 * 0.2))
    assert not detection.robust_z(np.ones(4)).any()


def _spiked(n=300, at=200):
    frame = generate_bars(n, seed=21, annual_vol=0.3)
    frame.iloc[at:, :4] = frame.iloc[at:, :4] * 1.25  # a 25 % jump into bar ``at``
    frame.iloc[at, frame.columns.get_loc("low")] = min(frame.iloc[at]["low"], frame.iloc[at - 1]["close"])
    frame.iloc[at, frame.columns.get_loc("volume")] = frame["volume"].median() * 40
    return frame


def test_planted_jump_and_volume_are_found_stored_once_and_emitted(alpha, django_capture_on_commit_callbacks):
    from eventbus import bus

    frame = _spiked()
    import_bars(alpha, "SPK", frame=frame)
    key = bus.stream_key("anomaly.detected", alpha.tenant.schema_name)
    bus.client().delete(key)
    c = alpha.client(role="analyst")
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(URL, {"symbol": "SPK", "threshold": 6}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    when = frame.index[200].isoformat()
    kinds = {(a["kind"], a["ts"]) for a in body["anomalies"]}
    assert ("bar_return", when) in kinds and ("bar_volume", when) in kinds
    assert body["new"] == body["flagged"] >= 2
    events = [json.loads(e[b"e"])["data"] for _, e in bus.client().xrange(key)]
    assert {(e["kind"], e["symbol"]) for e in events} >= {("bar_return", "SPK"), ("bar_volume", "SPK")}
    assert len(events) == body["new"]
    from notifications.models import Event

    with schema_context(alpha.tenant.schema_name):  # one notification for the run, none for the repeat below
        note = Event.objects.get(type="anomaly.detected")
    assert note.data["symbol"] == "SPK" and note.data["count"] == body["new"] and "bar_volume" in note.data["kinds"]
    # a second run finds the same and stores nothing new
    again = c.post(URL, {"symbol": "SPK", "threshold": 6}, format="json").json()
    assert again["flagged"] == body["flagged"] and again["new"] == 0
    assert sorted(a["id"] for a in again["anomalies"]) == sorted(a["id"] for a in body["anomalies"])
    with schema_context(alpha.tenant.schema_name):
        assert Event.objects.filter(type="anomaly.detected").count() == 1
    listed = c.get("/api/v1/anomalies/?symbol=SPK&kind=bar_return").json()["anomalies"]
    assert [a["ts"] for a in listed if a["ts"] == when] == [when]
    bus.client().delete(key)


def test_isolation_forest_puts_the_jump_on_top(alpha):
    frame = _spiked()
    import_bars(alpha, "SPK", frame=frame)
    r = alpha.client().post(URL, {"symbol": "SPK", "method": "isolation_forest", "contamination": 0.01}, format="json")
    assert r.status_code == 200, r.content
    got = r.json()["anomalies"]
    assert len(got) == 3 and frame.index[200].isoformat() in [a["ts"] for a in got]
    assert all(a["kind"] == "bar_isolation" for a in got)


def test_decision_stream_burst_and_confidence_shift(alpha):
    from intelligence.models import Decision

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for h in range(100):  # 2 decisions an hour at ~0.6 confidence; hour 70: 30 decisions at 0.99
        n, conf = (30, 0.99) if h == 70 else (2, 0.6 + 0.01 * (h % 3))
        for k in range(n):
            rows.append((start + dt.timedelta(hours=h, minutes=k), conf))
    with schema_context(alpha.tenant.schema_name):
        made = Decision.objects.bulk_create(
            [Decision(source="api", symbol="DEC", timeframe="1h", ts=ts, action="BUY", confidence=c) for ts, c in rows]
        )
        for d, (ts, _) in zip(made, rows, strict=True):  # created_at is auto_now_add: set afterwards
            Decision.objects.filter(pk=d.pk).update(created_at=ts)
    r = alpha.client().post(URL, {"stream": "decisions", "symbol": "DEC", "bucket": "1h"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    burst = (start + dt.timedelta(hours=70)).isoformat()
    assert body["buckets"] == 100
    assert {(a["kind"], a["ts"]) for a in body["anomalies"]} == {("decision_rate", burst), ("confidence_shift", burst)}


def test_detect_bad_input_writes_nothing(alpha):
    import_bars(alpha, "SPK", 20)
    c = alpha.client()
    for body, code in (
        ({"symbol": "SPK"}, "insufficient_bars"),
        ({"symbol": "SPK", "method": "tea_leaves"}, "invalid_method"),
        ({}, "symbol_required"),
        ({"stream": "tweets"}, "invalid_stream"),
        ({"stream": "decisions", "bucket": "5m"}, "invalid_bucket"),
        ({"symbol": "SPK", "threshold": 0}, "invalid_input"),
    ):
        r = c.post(URL, body, format="json")
        assert r.status_code == 400 and error_code(r) == code, (body, r.content)
    assert c.get("/api/v1/anomalies/?kind=odd").status_code == 400
    with schema_context(alpha.tenant.schema_name):
        assert Anomaly.objects.count() == 0


def test_detect_roles_and_tenants(alpha, beta):
    import_bars(alpha, "SPK", 60)
    r = alpha.client(role="viewer").post(URL, {"symbol": "SPK"}, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    r = alpha.client(scope="read").post(URL, {"symbol": "SPK"}, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert alpha.client(role="viewer").get("/api/v1/anomalies/").status_code == 200
    r = beta.client().post(URL, {"symbol": "SPK"}, format="json")
    assert r.status_code == 404 and error_code(r) == "not_found"


def test_the_hourly_sweep_scans_every_stored_series_and_repeats_nothing(alpha, django_capture_on_commit_callbacks):
    """Beat's riskcore.anomaly_sweep runs a tick per tenant: every instrument and timeframe with
    enough bars scanned (a short one skipped), new anomalies stored and emitted, none twice."""
    from django.conf import settings

    from eventbus import bus
    from riskcore.tasks import anomaly_sweep_task

    assert settings.CELERY_BEAT_SCHEDULE["riskcore-anomaly-sweep"]["task"] == "riskcore.anomaly_sweep"
    import_bars(alpha, "SPK", frame=_spiked())
    import_bars(alpha, "TINY", n=20, seed=3)
    key = bus.stream_key("anomaly.detected", alpha.tenant.schema_name)
    bus.client().delete(key)
    with schema_context(alpha.tenant.schema_name):
        with django_capture_on_commit_callbacks(execute=True):
            first = anomaly_sweep_task()
        assert first["series"] == 1 and first["new_bar_anomalies"] >= 2
        assert Anomaly.objects.filter(symbol="SPK", kind="bar_return").exists()
        assert not Anomaly.objects.filter(symbol="TINY").exists()
        assert (
            bus.client().xlen(key)
            == first["new_bar_anomalies"] + first["new_decision_anomalies"] + first["new_usage_anomalies"]
        )
        with django_capture_on_commit_callbacks(execute=True):
            again = anomaly_sweep_task()
        assert again["series"] == 1 and again["new_bar_anomalies"] == 0 and again["new_decision_anomalies"] == 0
    assert (
        bus.client().xlen(key)
        == first["new_bar_anomalies"] + first["new_decision_anomalies"] + first["new_usage_anomalies"]
    )
    bus.client().delete(key)


def test_usage_stream_burst_and_error_share(alpha):
    """The metered API usage per hour: a burst of calls and an hour of refusals are flagged."""
    from analytics.models import UsageHourly

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for h in range(100):  # ~100 ok calls and ~2 refused an hour; hour 40: 3,000 calls; hour 80: 60 % refused
        hour = start + dt.timedelta(hours=h)
        ok = 3000 if h == 40 else 100 + h % 7
        rows.append(UsageHourly(hour=hour, kind="request", name="decisions", status="2xx", count=ok))
        rows.append(UsageHourly(hour=hour, kind="request", name="decisions", status="4xx", count=150 if h == 80 else 2))
    rows.append(UsageHourly(hour=start, kind="unit", name="decision", count=10**6))  # units are not requests
    with schema_context(alpha.tenant.schema_name):
        UsageHourly.objects.bulk_create(rows)
    r = alpha.client().post(URL, {"stream": "usage", "bucket": "1h", "threshold": 6}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    found = {(a["kind"], a["ts"]) for a in body["anomalies"]}
    assert ("usage_rate", (start + dt.timedelta(hours=40)).isoformat()) in found
    assert ("usage_errors", (start + dt.timedelta(hours=80)).isoformat()) in found
    assert body["buckets"] == 100 and body["new"] == len(found)
    again = alpha.client().post(URL, {"stream": "usage", "threshold": 6}, format="json").json()
    assert again["new"] == 0
    r = alpha.client().post(URL, {"stream": "usage", "bucket": "5m"}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_bucket"
