"""Alert rules and their alerts, per tenant.

A rule watches one metric of the catalogue (``analytics.metrics``) against a threshold. Every
tenant has the seed's thresholds as built-in rules (created on first use, see :data:`SEED`):

    accuracy < 0.60        live consensus accuracy, last 200 resolved BUY/SELL (>= 30 needed)
    inference > 20 ms      decision latency p99, the last hour's decisions
    error rate > 0.5 %     5xx share of the tenant's API requests, the last hour (>= 100 requests)
    stream < 40 TPS        stream decisions per second, last 5 minutes, while the stream runs
    availability < 99.5 %  successful readiness probes of the web tier, the last 24 hours
    controls > 0           decisions held by a pre-trade control in the last 5 minutes, or the
                           tenant halted by a halting control (fired at once by the decision path)

A tenant may retune a built-in rule (threshold, severity, cool-down, escalation) or disable it, not
delete it; it adds its own rules on any metric. Rules are judged every minute (beat
``analytics.tenants_tick`` -> :func:`alerts_evaluate`) and, for ``controls``, at once by the code
that held a decision (:func:`alert_fire`); both go through :func:`_judge`.

Semantics of one rule's alert:

- **fire**: the metric crosses and no alert fires -> a new ``Alert`` (``alert.fired``). One firing
  alert per rule (a partial unique index backs it); while it fires its row is updated (value,
  message, last seen), never repeated.
- **resolve**: the metric is back (or the rule was disabled or deleted) -> ``alert.resolved``.
  No data (``None``) changes nothing: no alert on silence.
- **cool-down**: crossing again within ``cooldown_minutes`` of the last resolution reopens that same
  alert (``reopen_count`` + 1) without a new ``alert.fired``: a flapping metric notifies once. A
  reopened alert still firing once its cool-down has passed is not flapping: it is announced then
  (``alert.fired`` again); resolving a period never announced is silent too.
- **escalation**: an alert still firing, not acknowledged, ``escalate_after_minutes`` after its
  firing period began raises ``alert.escalated`` (critical) once per period. Acknowledging stops it.

Each event is written to the notifications outbox (``notifications.services.emit``, in the same
transaction, deduplicated by ``alert:<id>:<event>:<reopen_count>``) and published on the tenant's
event bus after commit."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from api.errors import ApplicationError, NotFound

from .metrics import METRICS, metric_values
from .models import Alert, AlertRule, Severity

log = logging.getLogger(__name__)

Comparator = AlertRule.Comparator
MAX_MINUTES = 7 * 24 * 60  # cool-down and escalation: up to a week


@dataclass(frozen=True)
class Seed:
    name: str
    label: str
    comparator: str
    threshold: float
    severity: str

    @property
    def metric(self) -> str:
        return self.name  # a built-in rule watches the metric it is named after


SEED = (
    Seed("accuracy", "Live consensus accuracy", Comparator.BELOW, 0.60, Severity.WARNING),
    Seed("inference_p99_ms", "Decision latency p99", Comparator.ABOVE, 20.0, Severity.WARNING),
    Seed("error_rate", "API server error rate", Comparator.ABOVE, 0.005, Severity.CRITICAL),
    Seed("stream_tps", "Stream throughput", Comparator.BELOW, 40.0, Severity.WARNING),
    Seed("availability", "Availability", Comparator.BELOW, 0.995, Severity.CRITICAL),
    Seed("controls", "Decisions held by controls (5 min)", Comparator.ABOVE, 0.0, Severity.CRITICAL),
)
SEED_BY_NAME = {s.name: s for s in SEED}
# what a tenant may change on a built-in rule
BUILTIN_TUNABLE = ("threshold", "severity", "cooldown_minutes", "escalate_after_minutes", "enabled")
EDITABLE = ("label", "metric", "comparator", *BUILTIN_TUNABLE)


def rule_message(rule: AlertRule, value: float) -> str:
    metric = METRICS.get(rule.metric)
    unit = metric.unit if metric else ""
    shown = f"{value:.2%}" if unit == "%" else f"{value:.4g}{unit}"
    limit = f"{rule.threshold:.2%}" if unit == "%" else f"{rule.threshold:g}{unit}"
    return f"{rule.label} is {shown}, {rule.comparator} {limit}"[:300]


# --- built-in rules -------------------------------------------------------------------------------


def alert_rules_ensure() -> None:
    """The seed's rules exist in the current tenant (idempotent; one query once they do)."""
    have = set(AlertRule.objects.filter(builtin=True).values_list("name", flat=True))
    missing = [s for s in SEED if s.name not in have]
    if missing:
        AlertRule.objects.bulk_create(
            [
                AlertRule(
                    name=s.name,
                    label=s.label,
                    metric=s.metric,
                    comparator=s.comparator,
                    threshold=s.threshold,
                    severity=s.severity,
                    builtin=True,
                    created_by="system",
                )
                for s in missing
            ],  # fmt: skip
            ignore_conflicts=True,
        )


# --- judging --------------------------------------------------------------------------------------


def _judge(
    rule: AlertRule, value: float | None, latest: Alert | None, *, now: dt.datetime, message: str | None = None
) -> list[tuple[str, Alert]]:
    """Apply one observation of ``rule``'s metric (``None``: no data; the rule's row is locked by
    the caller). ``latest`` is the rule's most recent alert. The events to announce."""
    firing = latest if latest is not None and latest.state == Alert.State.FIRING else None
    if not rule.enabled:
        return _resolve(firing, value, now=now, why="the rule was disabled") if firing else []
    if value is None:
        return _escalate(rule, firing, now=now) if firing else []
    if not rule.crossed(value):
        return _resolve(firing, value, now=now) if firing else []
    text = message or rule_message(rule, value)
    if firing is not None:
        firing.value, firing.message, firing.last_seen_at = value, text, now
        firing.threshold, firing.severity, firing.label = rule.threshold, rule.severity, rule.label
        events = []
        fired_at = firing.fired_at or firing.started_at
        if not firing.announced and now - fired_at >= dt.timedelta(minutes=rule.cooldown_minutes):
            firing.announced = True  # reopened and still firing past the cool-down: not flapping
            events.append(("alert.fired", firing))
        firing.save(update_fields=["value", "message", "last_seen_at", "threshold", "severity", "label", "announced"])
        return events + _escalate(rule, firing, now=now)
    if (
        latest is not None
        and latest.resolved_at is not None
        and now - latest.resolved_at <= dt.timedelta(minutes=rule.cooldown_minutes)
        and rule.cooldown_minutes > 0
    ):
        latest.state, latest.resolved_at, latest.fired_at, latest.escalated_at = Alert.State.FIRING, None, now, None
        latest.reopen_count += 1
        latest.announced = False
        latest.value, latest.message, latest.last_seen_at = value, text, now
        latest.threshold, latest.severity, latest.label = rule.threshold, rule.severity, rule.label
        latest.save()
        return []  # within the cool-down: the same alert again, no new notification
    alert = Alert.objects.create(
        rule=rule.name, label=rule.label, metric=rule.metric, severity=rule.severity, value=value,
        threshold=rule.threshold, message=text, fired_at=now, last_seen_at=now,
    )  # fmt: skip
    return [("alert.fired", alert)]


def _resolve(alert: Alert, value: float | None, *, now: dt.datetime, why: str = "") -> list[tuple[str, Alert]]:
    alert.state, alert.resolved_at = Alert.State.RESOLVED, now
    fields = ["state", "resolved_at"]
    if value is not None:
        alert.value = value
        fields.append("value")
    if why:
        alert.message = f"{alert.message} (resolved: {why})"[:300]
        fields.append("message")
    alert.save(update_fields=fields)
    return [("alert.resolved", alert)] if alert.announced else []


def _escalate(rule: AlertRule, alert: Alert, *, now: dt.datetime) -> list[tuple[str, Alert]]:
    after = rule.escalate_after_minutes
    if after is None or alert.acknowledged_at is not None or alert.escalated_at is not None:
        return []
    if now - (alert.fired_at or alert.started_at) < dt.timedelta(minutes=after):
        return []
    alert.escalated_at = now
    alert.save(update_fields=["escalated_at"])
    return [("alert.escalated", alert)]


def _latest(names) -> dict[str, Alert]:
    """Each rule's most recent alert (``DISTINCT ON``, index ``alert_rule_latest``)."""
    return {a.rule: a for a in Alert.objects.filter(rule__in=list(names)).order_by("rule", "-id").distinct("rule")}


def alerts_evaluate(*, schema: str | None = None, now: dt.datetime | None = None) -> list[dict]:
    """Judge every rule of the current tenant; the events announced (each also in the outbox and,
    after commit, on the bus). Firing alerts of deleted rules are resolved."""
    schema = schema or connection.schema_name
    now = now or timezone.now()
    alert_rules_ensure()
    wanted = set(AlertRule.objects.filter(enabled=True).values_list("metric", flat=True))
    values = metric_values(sorted(wanted), now=now)  # outside the transaction: no lock is held meanwhile
    changes: list[tuple[str, Alert]] = []
    with transaction.atomic():
        rules = list(AlertRule.objects.select_for_update().order_by("name"))
        latest = _latest(r.name for r in rules)
        for rule in rules:
            changes += _judge(rule, values.get(rule.metric), latest.get(rule.name), now=now)
        names = [r.name for r in rules]
        for orphan in Alert.objects.select_for_update().filter(state=Alert.State.FIRING).exclude(rule__in=names):
            changes += _resolve(orphan, None, now=now, why="the rule was deleted")
        events = _announce(changes, schema)
    return [dict(data, event=kind) for kind, data in events]


def alert_fire(rule: str, *, message: str, now: dt.datetime | None = None) -> list[dict]:
    """Judge ``rule`` now, from the code that saw its metric move (the held decision is saved):
    the same path as the minute's evaluation, which resolves it later."""
    now = now or timezone.now()
    alert_rules_ensure()
    with transaction.atomic():
        row = AlertRule.objects.select_for_update().filter(name=rule).first()
        if row is None or not row.enabled:
            return []
        value = metric_values([row.metric], now=now)[row.metric]
        latest = Alert.objects.filter(rule=rule).order_by("-id").first()
        events = _announce(_judge(row, value, latest, now=now, message=message), connection.schema_name)
    return [dict(data, event=kind) for kind, data in events]


# --- announcing -----------------------------------------------------------------------------------


def event_data(alert: Alert, kind: str = "") -> dict:
    return {
        "alert_id": alert.pk, "rule": alert.rule, "label": alert.label, "metric": alert.metric,
        "state": alert.state, "value": alert.value, "threshold": alert.threshold, "message": alert.message,
        "severity": Severity.CRITICAL.value if kind == "alert.escalated" else alert.severity,
    }  # fmt: skip


def _announce(changes: list[tuple[str, Alert]], schema: str) -> list[tuple[str, dict]]:
    """Into the notifications outbox now (same transaction), onto the bus after commit."""
    from notifications.services import emit

    events = []
    for kind, alert in changes:
        data = event_data(alert, kind)
        severity = Severity.INFO.value if kind == "alert.resolved" else data["severity"]
        emit(kind, data, severity=severity, dedupe_key=f"alert:{alert.pk}:{kind.split('.')[1]}:{alert.reopen_count}")
        events.append((kind, data))
    if events:
        transaction.on_commit(lambda: _publish(events, schema))
    return events


def _publish(events: list[tuple[str, dict]], schema: str) -> None:
    from eventbus import bus

    for kind, data in events:
        try:
            bus.publish(kind, data, schema=schema)
        except Exception as exc:  # noqa: BLE001 - the alert row and the outbox stand
            log.warning("alert event %s not published: %s", kind, exc)


# --- rules: writes --------------------------------------------------------------------------------


def _invalid(code: str, message: str, field: str, **details) -> ApplicationError:
    return ApplicationError(code, message, {"field": field, **details})


def _clean(data: dict, *, current: AlertRule | None) -> dict:
    """The rule fields in ``data`` checked and normalised (all of them, before anything is written)."""
    out = {}
    if "label" in data:
        label = str(data["label"] or "").strip()
        if not label or len(label) > 120:
            raise _invalid("invalid_label", "Give a label of 1-120 characters.", "label")
        out["label"] = label
    if "metric" in data:
        if data["metric"] not in METRICS:
            raise _invalid(
                "unknown_metric", f"Unknown metric '{data['metric']}'; GET /alerts/metrics/ lists them.", "metric",
                metrics=sorted(METRICS),
            )  # fmt: skip
        out["metric"] = data["metric"]
    if "comparator" in data:
        if data["comparator"] not in Comparator.values:
            raise _invalid("invalid_comparator", "The comparator is 'above' or 'below'.", "comparator")
        out["comparator"] = data["comparator"]
    if "threshold" in data:
        try:
            threshold = float(data["threshold"])
        except (TypeError, ValueError):
            threshold = math.nan
        if not math.isfinite(threshold):
            raise _invalid("invalid_threshold", "The threshold is a finite number.", "threshold")
        out["threshold"] = threshold
    if "severity" in data:
        if data["severity"] not in Severity.values:
            raise _invalid("invalid_severity", "The severity is info, warning or critical.", "severity")
        out["severity"] = data["severity"]
    if "cooldown_minutes" in data:
        out["cooldown_minutes"] = _minutes(data["cooldown_minutes"], "cooldown_minutes", "invalid_cooldown", low=0)
    if "escalate_after_minutes" in data:
        raw = data["escalate_after_minutes"]
        out["escalate_after_minutes"] = (
            None if raw in (None, "") else _minutes(raw, "escalate_after_minutes", "invalid_escalation", low=1)
        )
    if "enabled" in data:
        out["enabled"] = bool(data["enabled"])
    if current is not None and current.builtin:
        fixed = sorted(k for k, v in out.items() if k not in BUILTIN_TUNABLE and v != getattr(current, k))
        if fixed:
            raise ApplicationError(
                "builtin_rule_fixed",
                f"A built-in rule keeps its {', '.join(fixed)}; change its threshold, severity, cool-down or "
                "escalation, disable it, or add a rule of your own.",
                {"fields": fixed},
            )
    return out


def _minutes(raw, field: str, code: str, *, low: int) -> int:
    try:
        value = int(raw)
        ok = value == float(raw) and low <= value <= MAX_MINUTES
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise _invalid(code, f"{field} is a whole number of minutes from {low} to {MAX_MINUTES}.", field)
    return value


def alert_rule_create(*, data: dict, actor) -> AlertRule:
    """A tenant rule. ``data``: name, metric, comparator, threshold; optional label, severity,
    cooldown_minutes, escalate_after_minutes, enabled."""
    from django.utils.text import slugify

    from compliance.services import actor_display, audit_record

    name = str(data.get("name") or "")
    if not name or slugify(name) != name or len(name) > 40:
        raise _invalid("invalid_name", "The name is a slug of 1-40 characters (a-z, 0-9, - and _).", "name")
    missing = [k for k in ("metric", "comparator", "threshold") if data.get(k) in (None, "")]
    if missing:
        raise ApplicationError("invalid_input", f"Give {', '.join(missing)}.", {"missing": missing})
    fields = _clean({k: v for k, v in data.items() if k in EDITABLE}, current=None)
    fields.setdefault("label", METRICS[fields["metric"]].label)
    alert_rules_ensure()
    with transaction.atomic():
        if name in SEED_BY_NAME or AlertRule.objects.filter(name=name).exists():
            raise ApplicationError("rule_exists", f"A rule named '{name}' exists; pick another name.", status=409)
        rule = AlertRule.objects.create(name=name, created_by=actor_display(actor), **fields)
        audit_record(actor, "alert_rule.created", rule, {"name": name, **fields})
    return rule


def alert_rule_update(*, name: str, data: dict, actor, now: dt.datetime | None = None) -> AlertRule:
    """Change a rule (a built-in one: only what :data:`BUILTIN_TUNABLE` names). Disabling resolves
    its firing alert at once."""
    from compliance.services import audit_record

    unknown = sorted(set(data) - set(EDITABLE))
    if unknown:
        raise ApplicationError("invalid_input", f"Unknown fields: {', '.join(unknown)}.", {"fields": unknown})
    alert_rules_ensure()
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().filter(name=name).first()
        if rule is None:
            raise NotFound("alert rule")
        fields = _clean(data, current=rule)
        changed = {k: v for k, v in fields.items() if getattr(rule, k) != v}
        if not changed:
            return rule
        for k, v in changed.items():
            setattr(rule, k, v)
        rule.save()
        audit_record(actor, "alert_rule.updated", rule, {"name": name, "changes": changed})
        if rule.enabled is False:
            latest = Alert.objects.filter(rule=name).order_by("-id").first()
            _announce(_judge(rule, None, latest, now=now or timezone.now()), connection.schema_name)
    return rule


def alert_rule_delete(*, name: str, actor, now: dt.datetime | None = None) -> None:
    """Delete a tenant rule (a built-in one refuses: disable it). Its firing alert is resolved; its
    history stays."""
    from compliance.services import audit_record

    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().filter(name=name).first()
        if rule is None:
            raise NotFound("alert rule")
        if rule.builtin:
            raise ApplicationError(
                "builtin_rule_undeletable",
                f"'{name}' is a built-in rule: it cannot be deleted; disable it instead (enabled: false).",
                status=409,
            )
        firing = Alert.objects.select_for_update().filter(rule=name, state=Alert.State.FIRING).first()
        if firing is not None:
            _announce(
                _resolve(firing, None, now=now or timezone.now(), why="the rule was deleted"), connection.schema_name
            )
        audit_record(actor, "alert_rule.deleted", rule, {"name": name})
        rule.delete()


# --- alerts: writes -------------------------------------------------------------------------------


def alert_acknowledge(*, alert_id: int, actor, now: dt.datetime | None = None) -> Alert:
    """Someone is on it: a firing alert acknowledged is not escalated (idempotent)."""
    from compliance.services import actor_display, audit_record

    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise NotFound("alert")
        if alert.acknowledged_at is not None:
            return alert
        if alert.state != Alert.State.FIRING:
            raise ApplicationError(
                "alert_not_firing", "Only a firing alert is acknowledged; this one resolved.", status=409
            )
        alert.acknowledged_at, alert.acknowledged_by = now or timezone.now(), actor_display(actor)
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        audit_record(actor, "alert.acknowledged", alert, {"rule": alert.rule})
    return alert


def alerts_firing() -> list[Alert]:
    return list(Alert.objects.filter(state=Alert.State.FIRING))
