"""``/api/v1/alerts/``: rules (list, create, update, delete), the metric catalogue with current
values, the alert history (filters, cursor pages) and acknowledging. Bad input is refused with a
code and writes nothing; viewers read, analysts acknowledge, admins and owners write rules;
another tenant's rules and alerts are 404."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from analytics.alerts import alerts_evaluate
from analytics.metrics import METRICS
from analytics.models import Alert, AlertRule
from compliance.models import AuditRecord
from ops.models import AvailabilityProbe
from tests.conftest import error_code

pytestmark = pytest.mark.django_db

RULES = "/api/v1/alerts/rules/"
ALERTS = "/api/v1/alerts/"
NEW = {"name": "slow-stream", "metric": "stream_tps", "comparator": "below", "threshold": 10, "severity": "info"}


def _rules(fx) -> dict:
    with schema_context(fx.tenant.schema_name):
        return {r.name: r for r in AlertRule.objects.all()}


def _firing_alert(fx, now=None) -> Alert:
    with schema_context(fx.tenant.schema_name):
        AvailabilityProbe.objects.bulk_create(
            [AvailabilityProbe(ok=True, status_code=200) for _ in range(90)]
            + [AvailabilityProbe(ok=False, status_code=503) for _ in range(10)]
        )
        alerts_evaluate(now=now)
        return Alert.objects.get(rule="availability", state="firing")


def test_rules_are_listed_builtin_first_and_an_admin_adds_changes_and_deletes_one(alpha):
    r = alpha.client(role="viewer").get(RULES)
    assert r.status_code == 200
    names = [row["name"] for row in r.json()]
    assert names[:6] == sorted(names[:6]) and {"accuracy", "availability", "controls"} <= set(names)
    availability = next(row for row in r.json() if row["name"] == "availability")
    assert availability == {
        **availability, "metric": "availability", "unit": "%", "comparator": "below", "threshold": 0.995,
        "builtin": True, "enabled": True, "cooldown_minutes": 15, "escalate_after_minutes": None,
    }  # fmt: skip
    admin = alpha.client(role="admin")
    r = admin.post(RULES, NEW, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["label"] == "Stream throughput" and r.json()["builtin"] is False
    assert r.json()["created_by"] == "admin@alpha.test"
    r = admin.patch(f"{RULES}slow-stream/", {"threshold": 5, "escalate_after_minutes": 30}, format="json")
    assert r.status_code == 200 and (r.json()["threshold"], r.json()["escalate_after_minutes"]) == (5.0, 30)
    assert alpha.client(role="viewer").get(f"{RULES}slow-stream/").json()["threshold"] == 5.0
    # a built-in rule: tuned and disabled, never deleted
    r = admin.patch(f"{RULES}accuracy/", {"threshold": 0.55, "enabled": False}, format="json")
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = admin.delete(f"{RULES}accuracy/")
    assert r.status_code == 409 and error_code(r) == "builtin_rule_undeletable"
    r = admin.patch(f"{RULES}accuracy/", {"comparator": "above"}, format="json")
    assert r.status_code == 400 and error_code(r) == "builtin_rule_fixed"
    assert admin.delete(f"{RULES}slow-stream/").status_code == 204
    assert "slow-stream" not in _rules(alpha) and "accuracy" in _rules(alpha)
    with schema_context(alpha.tenant.schema_name):
        actions = list(
            AuditRecord.objects.filter(action__startswith="alert_rule.").order_by("id").values_list("action", flat=True)
        )
    assert actions == ["alert_rule.created", "alert_rule.updated", "alert_rule.updated", "alert_rule.deleted"]
    # an API key with the admin scope writes rules too
    assert alpha.client(scope="admin").post(RULES, {**NEW, "name": "by-key"}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**NEW, "metric": "temperature"}, "unknown_metric"),
        ({**NEW, "comparator": "equals"}, "invalid_comparator"),
        ({**NEW, "cooldown_minutes": -1}, "invalid_cooldown"),
        ({**NEW, "escalate_after_minutes": 0}, "invalid_escalation"),
        ({**NEW, "severity": "loud"}, "invalid_severity"),
        ({**NEW, "name": "Not A Slug"}, "invalid_name"),
        ({**NEW, "threshold": "lots"}, "invalid_input"),
        ({key: v for key, v in NEW.items() if key != "threshold"}, "invalid_input"),
    ],
)
def test_bad_input_is_refused_with_a_code_and_nothing_is_written(alpha, body, code):
    admin = alpha.client(role="admin")
    before = _rules(alpha)
    r = admin.post(RULES, body, format="json")
    assert r.status_code == 400 and error_code(r) == code, r.content
    assert set(_rules(alpha)) == set(before) and "slow-stream" not in _rules(alpha)


def test_bad_updates_change_nothing_and_names_are_unique(alpha):
    admin = alpha.client(role="admin")
    assert admin.post(RULES, NEW, format="json").status_code == 201
    r = admin.patch(f"{RULES}slow-stream/", {"threshold": 1, "cooldown_minutes": -5}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_cooldown"
    r = admin.patch(f"{RULES}slow-stream/", {"metric": "nope"}, format="json")
    assert (
        r.status_code == 400
        and error_code(r) == "unknown_metric"
        and "accuracy" in r.json()["error"]["details"]["metrics"]
    )
    assert _rules(alpha)["slow-stream"].threshold == 10.0
    r = admin.post(RULES, NEW, format="json")
    assert r.status_code == 409 and error_code(r) == "rule_exists"
    r = admin.post(RULES, {**NEW, "name": "availability"}, format="json")
    assert r.status_code == 409 and error_code(r) == "rule_exists"
    assert admin.patch(f"{RULES}nope/", {"threshold": 1}, format="json").status_code == 404


def test_roles_viewers_read_analysts_acknowledge_admins_write(alpha):
    for role in ("viewer", "analyst"):
        c = alpha.client(role=role)
        assert c.get(RULES).status_code == 200 and c.get(f"{ALERTS}metrics/").status_code == 200
        r = c.post(RULES, NEW, format="json")
        assert r.status_code == 403 and error_code(r) == "insufficient_role"
        assert c.patch(f"{RULES}accuracy/", {"threshold": 0.1}, format="json").status_code == 403
        assert c.delete(f"{RULES}accuracy/").status_code == 403
    r = alpha.client(scope="read").post(RULES, NEW, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert "slow-stream" not in _rules(alpha) and _rules(alpha)["accuracy"].threshold == 0.60
    alert = _firing_alert(alpha)
    r = alpha.client(role="viewer").post(f"{ALERTS}{alert.pk}/acknowledge/")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    r = alpha.client(role="analyst").post(f"{ALERTS}{alert.pk}/acknowledge/")
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "analyst@alpha.test"


def test_metric_catalogue_with_current_values(alpha):
    _firing_alert(alpha)
    r = alpha.client(role="viewer").get(f"{ALERTS}metrics/")
    assert r.status_code == 200
    rows = {m["name"]: m for m in r.json()}
    assert set(rows) == set(METRICS) and len(rows) >= 12
    assert rows["availability"]["value"] == 0.9 and rows["availability"]["display"] == "90.00%"
    assert rows["availability"]["rules"] == ["availability"]
    assert rows["accuracy"]["value"] is None and rows["accuracy"]["display"] == "no data"


def test_alert_history_filters_pages_and_acknowledging(alpha):
    now = timezone.now()
    alert = _firing_alert(alpha, now=now)
    with schema_context(alpha.tenant.schema_name):
        for i in range(3):
            Alert.objects.create(
                rule=f"old-{i}", state="resolved", value=1, threshold=0, message="old", last_seen_at=now,
                resolved_at=now - dt.timedelta(days=10),
            )  # fmt: skip
        Alert.objects.filter(rule__startswith="old-").update(started_at=now - dt.timedelta(days=11))
    viewer = alpha.client(role="viewer")
    r = viewer.get(ALERTS, {"page_size": 2})
    assert r.status_code == 200 and len(r.json()["results"]) == 2 and r.json()["next"]
    assert r.json()["results"][0]["rule"] == "old-2"
    firing = viewer.get(ALERTS, {"state": "firing"}).json()["results"]
    assert [a["id"] for a in firing] == [alert.pk] and firing[0]["value"] == 0.9
    assert [a["rule"] for a in viewer.get(ALERTS, {"rule": "old-1"}).json()["results"]] == ["old-1"]
    since = (now - dt.timedelta(days=1)).isoformat()
    assert [a["rule"] for a in viewer.get(ALERTS, {"since": since}).json()["results"]] == ["availability"]
    r = viewer.get(ALERTS, {"state": "burning"})
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    assert viewer.get(f"{ALERTS}{alert.pk}/").json()["state"] == "firing"
    analyst = alpha.client(role="analyst")
    first = analyst.post(f"{ALERTS}{alert.pk}/acknowledge/").json()
    again = analyst.post(f"{ALERTS}{alert.pk}/acknowledge/").json()  # idempotent
    assert first["acknowledged_at"] and again["acknowledged_at"] == first["acknowledged_at"]
    with schema_context(alpha.tenant.schema_name):
        old = Alert.objects.get(rule="old-0").pk
    r = analyst.post(f"{ALERTS}{old}/acknowledge/")
    assert r.status_code == 409 and error_code(r) == "alert_not_firing"
    assert analyst.post(f"{ALERTS}999999/acknowledge/").status_code == 404


def test_another_tenant_gets_404_and_changes_nothing(alpha, beta):
    alpha.client(role="admin").post(RULES, NEW, format="json")
    alert = _firing_alert(alpha)
    other = beta.client(role="owner")
    for r in (
        other.get(f"{RULES}slow-stream/"),
        other.patch(f"{RULES}slow-stream/", {"threshold": 1}, format="json"),
        other.delete(f"{RULES}slow-stream/"),
        other.get(f"{ALERTS}{alert.pk}/"),
        other.post(f"{ALERTS}{alert.pk}/acknowledge/"),
    ):
        assert r.status_code == 404 and error_code(r) == "not_found"
    assert _rules(alpha)["slow-stream"].threshold == 10.0
    with schema_context(alpha.tenant.schema_name):
        assert Alert.objects.get(pk=alert.pk).acknowledged_at is None
    assert other.get(ALERTS).json()["results"] == []
