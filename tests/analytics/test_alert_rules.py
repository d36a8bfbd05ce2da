"""Alert rules and the life of an alert: built-in rules appear once per tenant; a crossing fires once
(updated while it fires) and resolves; crossing again within the cool-down reopens the same alert
without a second alert.fired (announced only if it is still firing once the cool-down passed);
escalation once per firing period unless acknowledged; tenant rules on any metric; disabled rules
never fire; every announcement is a notifications Event (outbox) with a dedupe key. Times are given
explicitly (``now=``), never slept."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from analytics import alerts
from analytics.alerts import SEED, alert_acknowledge, alert_rule_create, alert_rule_update, alerts_evaluate
from analytics.metrics import METRICS, metric_values
from analytics.models import Alert, AlertRule
from api.errors import ApplicationError
from notifications.models import Event
from ops.models import AvailabilityProbe

pytestmark = pytest.mark.django_db

M = dt.timedelta(minutes=1)


def _availability(ok: int, down: int) -> None:
    """The probes of the last 24 hours: ok / (ok + down) is the metric."""
    AvailabilityProbe.objects.all().delete()
    AvailabilityProbe.objects.bulk_create(
        [AvailabilityProbe(ok=True, status_code=200) for _ in range(ok)]
        + [AvailabilityProbe(ok=False, status_code=503) for _ in range(down)]
    )


def _bad() -> None:
    _availability(95, 5)  # 95 % < 99.5 %


def _good() -> None:
    _availability(100, 0)


def _events(kind: str | None = None) -> list[Event]:
    qs = Event.objects.filter(type__startswith="alert.").order_by("id")
    return list(qs.filter(type=kind) if kind else qs)


def _kinds(changes: list[dict]) -> list[tuple[str, str]]:
    return [(c["event"], c["rule"]) for c in changes]


def test_builtin_rules_are_created_once_with_the_seed_defaults(alpha):
    with schema_context(alpha.tenant.schema_name):
        alerts.alert_rules_ensure()
        alerts.alert_rules_ensure()
        rows = {r.name: r for r in AlertRule.objects.filter(builtin=True)}
        assert set(rows) == {s.name for s in SEED} == {
            "accuracy", "inference_p99_ms", "error_rate", "stream_tps", "availability", "controls",
        }  # fmt: skip
        assert (rows["accuracy"].comparator, rows["accuracy"].threshold) == ("below", 0.60)
        assert (rows["inference_p99_ms"].comparator, rows["inference_p99_ms"].threshold) == ("above", 20.0)
        assert (rows["error_rate"].threshold, rows["stream_tps"].threshold) == (0.005, 40.0)
        assert (rows["availability"].threshold, rows["controls"].threshold) == (0.995, 0.0)
        assert all(r.cooldown_minutes == 15 and r.escalate_after_minutes is None for r in rows.values())
        assert all(r.metric in METRICS for r in rows.values())


def test_fires_once_updates_while_firing_and_resolves_with_outbox_events(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        _bad()
        assert _kinds(alerts_evaluate(now=t0)) == [("alert.fired", "availability")]
        AvailabilityProbe.objects.bulk_create([AvailabilityProbe(ok=False, status_code=503) for _ in range(5)])
        assert alerts_evaluate(now=t0 + M) == []
        alert = Alert.objects.get(rule="availability")
        assert alert.state == "firing" and alert.value == pytest.approx(95 / 105) and alert.last_seen_at == t0 + M
        assert alert.severity == "critical" and alert.label == "Availability" and alert.metric == "availability"
        _good()
        assert _kinds(alerts_evaluate(now=t0 + 2 * M)) == [("alert.resolved", "availability")]
        alert.refresh_from_db()
        assert alert.state == "resolved" and alert.resolved_at == t0 + 2 * M and alert.value == 1.0
        fired, resolved = _events()
        assert (fired.type, fired.severity, fired.dedupe_key) == (
            "alert.fired",
            "critical",
            f"alert:{alert.pk}:fired:0",
        )
        assert fired.data == {
            "alert_id": alert.pk, "rule": "availability", "label": "Availability", "metric": "availability",
            "state": "firing", "value": 0.95, "threshold": 0.995, "severity": "critical",
            "message": "Availability is 95.00%, below 99.50%",
        }  # fmt: skip
        assert (resolved.type, resolved.severity, resolved.dedupe_key) == (
            "alert.resolved", "info", f"alert:{alert.pk}:resolved:0",
        )  # fmt: skip
        assert resolved.data["state"] == "resolved" and resolved.data["value"] == 1.0


def test_no_data_changes_nothing(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        _bad()
        alerts_evaluate(now=t0)
        AvailabilityProbe.objects.all().delete()  # no probes: no data
        assert metric_values(["availability"])["availability"] is None
        assert alerts_evaluate(now=t0 + M) == []
        assert Alert.objects.get(rule="availability").state == "firing"


def test_crossing_again_within_the_cooldown_reopens_the_same_alert_silently(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        _bad()
        alerts_evaluate(now=t0)
        _good()
        alerts_evaluate(now=t0 + M)
        _bad()
        assert alerts_evaluate(now=t0 + 5 * M) == []  # within 15 minutes of the resolution: no alert.fired
        alert = Alert.objects.get(rule="availability")  # the same row, not a second one
        assert alert.state == "firing" and alert.reopen_count == 1 and alert.fired_at == t0 + 5 * M
        assert alert.resolved_at is None
        # flapping back: resolving a period never announced is silent too
        _good()
        assert alerts_evaluate(now=t0 + 6 * M) == []
        _bad()
        assert alerts_evaluate(now=t0 + 7 * M) == []
        alert.refresh_from_db()
        assert alert.reopen_count == 2 and Alert.objects.filter(rule="availability").count() == 1
        assert [e.type for e in _events()] == ["alert.fired", "alert.resolved"]
        # still firing once its cool-down has passed: not flapping any more, announced once
        assert alerts_evaluate(now=t0 + 21 * M) == []
        assert _kinds(alerts_evaluate(now=t0 + 22 * M)) == [("alert.fired", "availability")]
        assert alerts_evaluate(now=t0 + 23 * M) == []
        _good()
        assert _kinds(alerts_evaluate(now=t0 + 24 * M)) == [("alert.resolved", "availability")]
        assert [e.dedupe_key for e in _events()] == [
            f"alert:{alert.pk}:fired:0", f"alert:{alert.pk}:resolved:0",
            f"alert:{alert.pk}:fired:2", f"alert:{alert.pk}:resolved:2",
        ]  # fmt: skip


def test_crossing_after_the_cooldown_is_a_new_alert(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        _bad()
        alerts_evaluate(now=t0)
        _good()
        alerts_evaluate(now=t0 + M)
        _bad()
        assert _kinds(alerts_evaluate(now=t0 + 17 * M)) == [("alert.fired", "availability")]
        assert list(Alert.objects.filter(rule="availability").order_by("id").values_list("state", "reopen_count")) == [
            ("resolved", 0), ("firing", 0),
        ]  # fmt: skip
        # a rule without a cool-down never reopens
        alert_rule_update(name="availability", data={"cooldown_minutes": 0}, actor="test")
        _good()
        alerts_evaluate(now=t0 + 18 * M)
        _bad()
        assert _kinds(alerts_evaluate(now=t0 + 18 * M + dt.timedelta(seconds=1))) == [("alert.fired", "availability")]


def test_escalation_once_per_firing_period_and_acknowledging_stops_it(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        alert_rule_update(name="availability", data={"escalate_after_minutes": 10, "severity": "warning"}, actor="x")
        _bad()
        alerts_evaluate(now=t0)
        assert alerts_evaluate(now=t0 + 9 * M) == []
        escalated = alerts_evaluate(now=t0 + 10 * M)
        assert _kinds(escalated) == [("alert.escalated", "availability")] and escalated[0]["severity"] == "critical"
        assert alerts_evaluate(now=t0 + 11 * M) == [] and alerts_evaluate(now=t0 + 60 * M) == []
        alert = Alert.objects.get(rule="availability")
        assert alert.escalated_at == t0 + 10 * M
        event = _events("alert.escalated")[0]
        assert (event.severity, event.dedupe_key) == ("critical", f"alert:{alert.pk}:escalated:0")
        assert event.data["severity"] == "critical" and alert.severity == "warning"  # the event is critical
        # a second episode, acknowledged in time: never escalated
        _good()
        alerts_evaluate(now=t0 + 61 * M)
        _bad()
        alerts_evaluate(now=t0 + 100 * M)
        second = Alert.objects.get(rule="availability", state="firing")
        assert second.pk != alert.pk
        acked = alert_acknowledge(alert_id=second.pk, actor=alpha.users["analyst"], now=t0 + 105 * M)
        assert acked.acknowledged_at == t0 + 105 * M and acked.acknowledged_by == "analyst@alpha.test"
        assert alerts_evaluate(now=t0 + 200 * M) == []
        second.refresh_from_db()
        assert second.escalated_at is None and len(_events("alert.escalated")) == 1


def test_escalation_counts_from_a_reopen_and_needs_no_data_that_minute(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        alert_rule_update(name="availability", data={"escalate_after_minutes": 10, "cooldown_minutes": 60}, actor="x")
        _bad()
        alerts_evaluate(now=t0)
        _good()
        alerts_evaluate(now=t0 + 2 * M)
        _bad()
        alerts_evaluate(now=t0 + 5 * M)  # reopened: its firing period starts now
        assert alerts_evaluate(now=t0 + 12 * M) == []
        AvailabilityProbe.objects.all().delete()  # no data this minute: still firing, still escalated
        assert _kinds(alerts_evaluate(now=t0 + 15 * M)) == [("alert.escalated", "availability")]
        alert = Alert.objects.get(rule="availability")
        assert _events("alert.escalated")[0].dedupe_key == f"alert:{alert.pk}:escalated:1"


def test_a_tenant_rule_on_another_metric_fires_and_a_disabled_rule_never_does(alpha, beta):
    from models_registry.models import TrainingJob

    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        rule = alert_rule_create(
            data={"name": "training-failures", "metric": "training_failed_24h", "comparator": "above",
                  "threshold": 0, "severity": "info"},
            actor=alpha.users["admin"],
        )  # fmt: skip
        assert (
            rule.label == "Training jobs failed (24 h)" and rule.created_by == "admin@alpha.test" and not rule.builtin
        )
        assert alerts_evaluate(now=t0) == []  # none failed: 0 is not above 0
        TrainingJob.objects.create(model_name="m", params={}, state="failed", finished_at=t0 - M)
        changes = alerts_evaluate(now=t0 + M)
        assert _kinds(changes) == [("alert.fired", "training-failures")]
        assert changes[0]["message"] == "Training jobs failed (24 h) is 1, above 0"
        assert _events()[0].severity == "info"
        # disabling resolves it at once; a disabled rule never fires
        alert_rule_update(name="training-failures", data={"enabled": False}, actor="test")
        assert Alert.objects.get(rule="training-failures").state == "resolved"
        alert_rule_update(name="availability", data={"enabled": False}, actor="test")
        _bad()
        assert alerts_evaluate(now=t0 + 30 * M) == []
        assert not Alert.objects.filter(rule="availability").exists()
        assert [e.type for e in _events()] == ["alert.fired", "alert.resolved"]
    with schema_context(beta.tenant.schema_name):  # another tenant's rules are its own
        assert not AlertRule.objects.filter(name="training-failures").exists()


def test_deleting_a_rule_resolves_its_alert_and_keeps_the_history(alpha):
    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        alert_rule_create(
            data={"name": "flaky", "metric": "availability", "comparator": "below", "threshold": 0.99}, actor="test"
        )
        _bad()
        alerts_evaluate(now=t0)
        alerts.alert_rule_delete(name="flaky", actor="test", now=t0 + M)
        alert = Alert.objects.get(rule="flaky")
        assert alert.state == "resolved" and "the rule was deleted" in alert.message
        assert not AlertRule.objects.filter(name="flaky").exists()
        with pytest.raises(ApplicationError) as err:
            alerts.alert_rule_delete(name="availability", actor="test")
        assert err.value.code == "builtin_rule_undeletable" and err.value.status == 409


def test_a_builtin_rule_keeps_its_metric_and_comparator(alpha):
    with schema_context(alpha.tenant.schema_name):
        alerts.alert_rules_ensure()
        with pytest.raises(ApplicationError) as err:
            alert_rule_update(name="accuracy", data={"metric": "stream_tps", "threshold": 0.5}, actor="test")
        assert err.value.code == "builtin_rule_fixed" and err.value.details["fields"] == ["metric"]
        assert AlertRule.objects.get(name="accuracy").threshold == 0.60  # nothing written
        rule = alert_rule_update(name="accuracy", data={"threshold": 0.55, "severity": "critical"}, actor="test")
        assert (rule.threshold, rule.severity) == (0.55, "critical")


def test_the_decision_path_and_the_minute_share_one_alert(alpha):
    from intelligence.models import Decision

    t0 = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        Decision.objects.create(
            source="api", symbol="CTL", timeframe="1d", ts=t0, action="HOLD", confidence=0.5,
            vetoed_by="control:max_position",
        )  # fmt: skip
        fired = alerts.alert_fire("controls", message="A decision was held by the max_position control: too big")
        assert _kinds(fired) == [("alert.fired", "controls")]
        assert alerts.alert_fire("controls", message="again") == []  # firing: updated, not repeated
        alert = Alert.objects.get(rule="controls")
        assert alert.message == "again" and alert.value == 1.0
        assert alerts_evaluate(now=t0 + M) == []  # the minute's evaluation sees the same crossing
        assert _kinds(alerts_evaluate(now=t0 + 6 * M)) == [("alert.resolved", "controls")]  # nothing held in 5 min
        # a disabled rule: the decision path fires nothing
        alert_rule_update(name="controls", data={"enabled": False}, actor="test")
        assert alerts.alert_fire("controls", message="held") == []


def test_every_metric_computes_on_an_empty_tenant_and_with_data(alpha):
    from intelligence.models import Decision, Position
    from tenants.models import KillSwitch

    with schema_context(alpha.tenant.schema_name):
        empty = metric_values()
        assert set(empty) == set(METRICS)
        assert {k for k, v in empty.items() if v is not None} == {
            "controls", "training_failed_24h", "ws_connections", "kill_switch",
        }  # fmt: skip
        now = timezone.now()
        Decision.objects.bulk_create(
            Decision(source="api", symbol="MET", timeframe="1d", ts=now - dt.timedelta(days=i), action="BUY",
                     confidence=0.6 + i / 100, latency_ms=float(i), correct=i % 4 != 0)
            for i in range(40)
        )  # fmt: skip
        Position.objects.create(symbol="MET", qty=10, avg_price=100.0, last_price=90.0, realized_pnl=-50.0)
        KillSwitch.objects.create(tenant=alpha.tenant, reason="test", engaged_by="test")
        values = metric_values()
        assert values["accuracy"] == pytest.approx(0.75) and values["inference_p99_ms"] == 39.0
        assert values["decisions_1h"] == 40 and values["confidence_1h"] == pytest.approx(0.795)
        assert values["pnl_today"] == 0.0  # no ledger days kept and no fill today
        assert values["drawdown"] == pytest.approx(150 / 100_000)  # -50 realised, -100 unrealised
        assert values["kill_switch"] == 1.0
        for name, metric in METRICS.items():
            assert metric.label and metric.help and metric.format(values[name])
