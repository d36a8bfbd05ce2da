"""The seed's alert thresholds (built-in rules): a metric that crosses fires one alert (updated,
not repeated, while it fires), resolves when it is back, publishes alert.fired / alert.resolved; no
data, no alert. Availability comes from readiness probes of the web tier. Rules, cool-down and
escalation: test_alert_rules.py."""

import datetime as dt
import http.server
import threading

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from analytics.alerts import alerts_evaluate
from analytics.metrics import metric_values
from analytics.models import Alert
from eventbus import bus
from ops.models import AvailabilityProbe
from ops.tasks import availability_probe
from tests.intelligence.helpers import clear_streams

pytestmark = pytest.mark.django_db


def _probes(ok: int, down: int) -> None:
    AvailabilityProbe.objects.bulk_create(
        [AvailabilityProbe(ok=True, status_code=200) for _ in range(ok)]
        + [AvailabilityProbe(ok=False, status_code=503) for _ in range(down)]
    )


def test_a_crossing_fires_once_then_resolves_with_events(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    with schema_context(schema):
        assert metric_values()["availability"] is None  # no probes: nothing judged
        assert alerts_evaluate(schema=schema) == [] and not Alert.objects.exists()
        _probes(ok=95, down=5)  # 95 % < 99.5 %
        fired = alerts_evaluate(schema=schema)
        assert [(c["event"], c["rule"]) for c in fired] == [("alert.fired", "availability")]
        assert "Availability is 95.00%, below 99.50%" in fired[0]["message"]
        assert alerts_evaluate(schema=schema) == []  # still firing: the same row, updated
        assert Alert.objects.filter(rule="availability", state="firing").count() == 1
        AvailabilityProbe.objects.filter(ok=False).delete()
        _probes(ok=1000, down=0)
        resolved = alerts_evaluate(schema=schema)
        assert [(c["event"], c["rule"]) for c in resolved] == [("alert.resolved", "availability")]
        assert Alert.objects.get(rule="availability").state == "resolved"
    # published after commit (the test transaction does not commit: run the callbacks' effect here)
    assert bus.client().xlen(bus.stream_key("alert.fired", schema)) == 0
    clear_streams(schema)


def test_alert_events_are_published_after_commit(alpha, django_capture_on_commit_callbacks):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    with schema_context(schema), django_capture_on_commit_callbacks(execute=True):
        _probes(ok=90, down=10)
        alerts_evaluate(schema=schema)
    entries = bus.client().xrange(bus.stream_key("alert.fired", schema))
    assert len(entries) == 1 and b"availability" in entries[0][1][b"e"]
    clear_streams(schema)


def test_decision_metrics_are_judged_from_recent_decisions(alpha):
    from intelligence.models import Decision

    schema = alpha.tenant.schema_name
    with schema_context(schema):
        now = dt.datetime.now(dt.UTC)
        Decision.objects.bulk_create(
            Decision(
                source="api",
                symbol="ALR",
                timeframe="1d",
                ts=now - dt.timedelta(days=i),
                action="BUY",
                confidence=0.7,
                correct=(i % 2 == 0),
                latency_ms=30.0 if i < 5 else 2.0,
            )  # fmt: skip
            for i in range(40)
        )
        m = metric_values()
        assert m["accuracy"] == pytest.approx(0.5) and m["inference_p99_ms"] == 30.0
        changes = {c["rule"] for c in alerts_evaluate(schema=schema)}
        assert changes == {"accuracy", "inference_p99_ms"}


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_the_probe_records_up_and_down():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/health/ready"
    try:
        with override_settings(AVAILABILITY_PROBE_URL=url):
            assert availability_probe()["ok"] is True
            _Ready.status = 503
            down = availability_probe()
            assert down["ok"] is False and down["status"] == 503
        with override_settings(AVAILABILITY_PROBE_URL="http://127.0.0.1:9/health/ready"):
            assert availability_probe()["error"]  # nothing listening: recorded as down
        assert list(AvailabilityProbe.objects.order_by("id").values_list("ok", flat=True)) == [True, False, False]
    finally:
        server.shutdown()
        _Ready.status = 200


def test_market_data_past_the_plans_retention_is_deleted_decisions_are_not(beta):
    from marketdata import services as md_services
    from marketdata.models import Bar
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table

    schema = beta.tenant.schema_name
    with schema_context(schema):
        bars = generate_bars(100, seed=4)  # daily bars
        md_services.bars_import(tenant=beta.tenant, symbol="RET", timeframe="1d", raw=read_table(as_csv(bars), "csv"))
        beta.tenant.plan.limits = {**beta.tenant.plan.limits, "market_data_retention_days": 30}
        now = bars.index[-1].to_pydatetime() + dt.timedelta(days=1)
        deleted = md_services.bars_retention_apply(tenant=beta.tenant, now=now)
        assert deleted == 70 and Bar.objects.filter(instrument__symbol="RET").count() == 30
        from compliance.models import AuditRecord

        assert AuditRecord.objects.get(action="bars.expired").details["rows"] == 70
        beta.tenant.plan.limits = {**beta.tenant.plan.limits, "market_data_retention_days": None}
        assert md_services.bars_retention_apply(tenant=beta.tenant, now=now) == 0


def test_beat_jobs_fan_out_one_task_per_active_tenant(alpha, beta):
    from unittest import mock

    from analytics.tasks import tenant_tick, tenants_tick
    from tenants.models import Tenant

    seen = []
    with mock.patch.object(tenant_tick, "delay", side_effect=lambda: seen.append(connection_schema())):
        assert tenants_tick() == len(seen) == Tenant.objects.filter(status="active").count()
    assert {alpha.tenant.schema_name, beta.tenant.schema_name} <= set(seen) and "public" not in seen
    # the per-tenant tick itself: rollups and alerts in that tenant's schema
    with schema_context(alpha.tenant.schema_name):
        out = tenant_tick()
        assert out["days_rolled_up"] == 0 and out["alert_changes"] == 0 and out["audit_records_sealed"] >= 0


def connection_schema() -> str:
    from django.db import connection

    return connection.schema_name
