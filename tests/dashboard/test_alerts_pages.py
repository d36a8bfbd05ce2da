"""The alert pages under Notifications: the history (firing first, value, threshold, times, an
acknowledge button for analysts and up, a state filter) and the rules (a table with the metric's
current value; admins tune, add and delete rules, others read). Bad input says what is wrong and
stores nothing; another tenant's alerts and rules are never shown."""

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from analytics.alerts import alerts_evaluate
from analytics.models import Alert, AlertRule
from ops.models import AvailabilityProbe
from tenants.models import Role
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db
ALERTS = "/app/notifications/alerts/"
RULES = "/app/notifications/alert-rules/"


def _firing(fx) -> Alert:
    with schema_context(fx.tenant.schema_name):
        AvailabilityProbe.objects.bulk_create(
            [AvailabilityProbe(ok=True, status_code=200) for _ in range(90)]
            + [AvailabilityProbe(ok=False, status_code=503) for _ in range(10)]
        )
        alerts_evaluate()
        Alert.objects.create(
            rule="old", label="Old trouble", value=1, threshold=0, message="it was bad", last_seen_at=timezone.now(),
            state="resolved", resolved_at=timezone.now(),
        )  # fmt: skip
        return Alert.objects.get(rule="availability")


def _rule(fx, name: str) -> AlertRule | None:
    with schema_context(fx.tenant.schema_name):
        return AlertRule.objects.filter(name=name).first()


def test_the_history_shows_firing_first_and_an_analyst_acknowledges(alpha):
    alert = _firing(alpha)
    analyst = dashboard_client(alpha, Role.ANALYST)
    page = analyst.get(ALERTS).content.decode()
    assert page.index("data-firing") < page.index("data-history")
    assert f'data-alert="{alert.pk}"' in page and "90.00%" in page and "below 99.50%" in page
    assert "Old trouble" in page and f'data-acknowledge="{alert.pk}"' in page
    assert 'data-page="dashboard:alerts"' in page and 'data-page="dashboard:alert-rules"' in page  # in the menu
    r = analyst.post(f"{ALERTS}{alert.pk}/ack/", follow=True)
    assert "Acknowledged: Availability" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert Alert.objects.get(pk=alert.pk).acknowledged_by == "analyst@alpha.test"
    # the state filter
    firing_only = analyst.get(ALERTS + "?state=firing").content.decode()
    assert "data-history" not in firing_only and f'data-alert="{alert.pk}"' in firing_only
    resolved_only = analyst.get(ALERTS + "?state=resolved").content.decode()
    assert "data-firing" not in resolved_only and "Old trouble" in resolved_only


def test_viewers_see_alerts_but_cannot_acknowledge(alpha, beta):
    alert = _firing(alpha)
    viewer = dashboard_client(alpha, Role.VIEWER)
    page = viewer.get(ALERTS).content.decode()
    assert f'data-alert="{alert.pk}"' in page and "data-acknowledge" not in page
    assert viewer.post(f"{ALERTS}{alert.pk}/ack/").status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert Alert.objects.get(pk=alert.pk).acknowledged_at is None
    other = dashboard_client(beta, Role.OWNER).get(ALERTS).content.decode()
    assert "Old trouble" not in other and "Nothing firing" in other


def test_an_admin_adds_tunes_and_deletes_rules(alpha):
    admin = dashboard_client(alpha, Role.ADMIN)
    page = admin.get(RULES).content.decode()
    assert 'data-rule="availability"' in page and 'data-builtin="yes"' in page and 'data-form="alert-rule"' in page
    form = {"name": "failures", "metric": "training_failed_24h", "comparator": "above", "threshold": "0",
            "severity": "warning", "cooldown_minutes": "15", "escalate_after_minutes": "", "enabled": "on"}  # fmt: skip
    r = admin.post(RULES, form, follow=True)
    assert "Rule failures added" in r.content.decode()
    rule = _rule(alpha, "failures")
    assert rule.label == "Training jobs failed (24 h)" and rule.escalate_after_minutes is None and rule.enabled
    # tune a built-in rule: threshold, escalation; unticked: disabled
    r = admin.post(
        f"{RULES}availability/",
        {"action": "save", "threshold": "0.99", "severity": "warning", "cooldown_minutes": "30",
         "escalate_after_minutes": "20"},
        follow=True,
    )  # fmt: skip
    assert "Rule availability saved" in r.content.decode()
    rule = _rule(alpha, "availability")
    assert (rule.threshold, rule.cooldown_minutes, rule.escalate_after_minutes, rule.enabled) == (0.99, 30, 20, False)
    # a built-in rule cannot be deleted; a tenant rule can
    r = admin.post(f"{RULES}availability/", {"action": "delete"}, follow=True)
    assert "builtin_rule_undeletable" in r.content.decode() and _rule(alpha, "availability")
    admin.post(f"{RULES}failures/", {"action": "delete"})
    assert _rule(alpha, "failures") is None


def test_bad_rule_input_says_what_is_wrong_and_stores_nothing(alpha):
    admin = dashboard_client(alpha, Role.ADMIN)
    form = {"name": "bad", "metric": "nope", "comparator": "above", "threshold": "1", "cooldown_minutes": "15"}
    r = admin.post(RULES, form, follow=True)
    assert "unknown_metric" in r.content.decode() and _rule(alpha, "bad") is None
    r = admin.post(RULES, {**form, "metric": "accuracy", "cooldown_minutes": "-3"}, follow=True)
    assert "invalid_cooldown" in r.content.decode() and _rule(alpha, "bad") is None
    r = admin.post(f"{RULES}accuracy/", {"action": "save", "threshold": "high", "enabled": "on"}, follow=True)
    assert "invalid_threshold" in r.content.decode() and _rule(alpha, "accuracy").threshold == 0.60


def test_only_admins_change_rules(alpha, beta):
    admin = dashboard_client(alpha, Role.ADMIN)
    admin.post(RULES, {"name": "mine", "metric": "accuracy", "comparator": "below", "threshold": "0.5"})
    analyst = dashboard_client(alpha, Role.ANALYST)
    page = analyst.get(RULES).content.decode()
    assert 'data-rule="mine"' in page and 'data-form="alert-rule"' not in page
    assert "Admins and owners change rules" in page
    r = analyst.post(RULES, {"name": "theirs", "metric": "accuracy", "comparator": "below", "threshold": "0.5"})
    assert r.status_code == 403 and _rule(alpha, "theirs") is None
    r = analyst.post(f"{RULES}mine/", {"action": "delete"})
    assert r.status_code == 403 and _rule(alpha, "mine") is not None
    other = dashboard_client(beta, Role.OWNER).get(RULES).content.decode()
    assert 'data-rule="mine"' not in other and 'data-rule="accuracy"' in other
