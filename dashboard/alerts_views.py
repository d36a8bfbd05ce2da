"""Alerts in the dashboard (under Notifications): the alert history, firing first, with
acknowledging (analysts and up); the rules with their metric's current value, tuning and adding
rules (admins and owners). Both call ``analytics.alerts`` like the REST API does."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from analytics import alerts as alert_services
from analytics import selectors
from analytics.metrics import METRICS
from analytics.models import Alert, AlertRule, Severity
from api.errors import ApplicationError
from tenants.models import Role

from .access import can, forbidden, tenant_page
from .paging import Choice, Dates, ListSpec, Search

HISTORY_LIST = ListSpec(
    "alerts",
    "resolved alerts",
    search=Search(("rule", "label", "message"), "Rule or message"),
    filters=(
        Choice("severity", "Severity", Severity.choices),
        Choice.either("acknowledged", "Acknowledged", ("yes", "Acknowledged"), ("no", "Not acknowledged"),
                      Q(acknowledged_at__isnull=False)),
        Dates("started_at", "Fired"),
    ),
)  # fmt: skip


@tenant_page()
def alerts(request):
    """The alerts firing now (one at most per rule: never many) above the resolved ones, which page
    and filter; ``?state=`` shows one of the two."""
    state = request.GET.get("state", "")
    if state not in Alert.State.values:
        state = ""
    firing = list(selectors.alert_list(state=Alert.State.FIRING)) if state in ("", Alert.State.FIRING) else []
    history = HISTORY_LIST.apply(request, selectors.alert_list(state=Alert.State.RESOLVED))
    rules = {r.name: r for r in selectors.alert_rule_list()}
    context = {
        "state": state,
        "states": Alert.State.values,
        "firing": [_row(a, rules) for a in firing],
        "history": history,
        "history_rows": [_row(a, rules) for a in history.rows],
        "can_acknowledge": can(request, Role.ANALYST),
    }
    return render(request, "dashboard/alerts.html", context)


def _row(alert: Alert, rules: dict) -> dict:
    metric = METRICS.get(alert.metric)
    rule = rules.get(alert.rule)
    return {
        "alert": alert,
        "value": metric.format(alert.value) if metric else f"{alert.value:g}",
        "threshold": metric.format(alert.threshold) if metric else f"{alert.threshold:g}",
        "comparator": rule.comparator if rule else "",
        "escalates": rule is not None and rule.escalate_after_minutes is not None,
    }


@require_POST
@tenant_page()
def alert_acknowledge(request, alert_id: int):
    if not can(request, Role.ANALYST):
        return forbidden(request, Role.ANALYST)
    try:
        alert = alert_services.alert_acknowledge(alert_id=alert_id, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Acknowledged: {alert.label or alert.rule}. It will not be escalated.")
    return redirect("dashboard:alerts")


RULE_LIST = ListSpec(
    "alert-rules",
    "rules",
    search=Search(("name", "label", "metric"), "Name or metric"),
    filters=(
        Choice("severity", "Severity", Severity.choices),
        Choice.either("enabled", "On", ("yes", "Enabled"), ("no", "Disabled"), Q(enabled=True)),
        Choice.either("kind", "Kind", ("builtin", "Built-in"), ("custom", "Yours"), Q(builtin=True)),
    ),
)  # fmt: skip


@tenant_page()
def alert_rules(request):
    can_manage = can(request, Role.ADMIN)
    if request.method == "POST":
        if not can_manage:
            return forbidden(request, Role.ADMIN)
        data = _form_data(request.POST, create=True)
        try:
            rule = alert_services.alert_rule_create(data=data, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, f"Not saved ({exc.code}): {exc.message}")
        else:
            messages.success(request, f"Rule {rule.name} added: it is judged every minute.")
        return redirect("dashboard:alert-rules")
    values = {m["name"]: m for m in selectors.metric_catalogue()}
    listed = RULE_LIST.apply(request, selectors.alert_rule_list())
    rules = [
        {"rule": r, "metric": METRICS.get(r.metric), "now": values.get(r.metric, {}).get("display", "")}
        for r in listed.rows
    ]
    context = {
        "listed": listed,
        "rules": rules,
        "metrics": list(METRICS.values()),
        "comparators": AlertRule.Comparator.values,
        "severities": Severity.values,
        "can_manage": can_manage,
    }
    return render(request, "dashboard/alert_rules.html", context)


def _form_data(post, *, create: bool) -> dict:
    """The rule fields the form posted (an empty escalation: never)."""
    keys = ["threshold", "severity", "cooldown_minutes", "escalate_after_minutes"]
    if create:
        keys = ["name", "label", "metric", "comparator", *keys]
    data = {k: post.get(k, "").strip() for k in keys if k in post}
    if create and not data.get("label"):
        data.pop("label", None)
    if "escalate_after_minutes" in data and data["escalate_after_minutes"] == "":
        data["escalate_after_minutes"] = None
    data["enabled"] = post.get("enabled") == "on"
    return data


@require_POST
@tenant_page()
def alert_rule_change(request, name: str):
    if not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    try:
        if request.POST.get("action") == "delete":
            alert_services.alert_rule_delete(name=name, actor=request.user)
            messages.success(request, f"Rule {name} deleted; its alerts stay in the history.")
        else:
            alert_services.alert_rule_update(name=name, data=_form_data(request.POST, create=False), actor=request.user)
            messages.success(request, f"Rule {name} saved.")
    except ApplicationError as exc:
        messages.error(request, f"Not saved ({exc.code}): {exc.message}")
    return redirect(f"{reverse('dashboard:alert-rules')}#rule-{name}")
