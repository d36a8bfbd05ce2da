"""The seed's alert thresholds, evaluated per tenant every minute (beat ``analytics.tenants_tick``):

    accuracy < 0.60        live consensus accuracy, last 200 resolved BUY/SELL (>= 30 needed)
    inference > 20 ms      decision latency p99, the last hour's decisions
    error rate > 0.5 %     5xx share of the tenant's API requests, the last hour (>= 100 requests)
    stream < 40 TPS        stream decisions per second, last 5 minutes, while the stream runs
    availability < 99.5 %  successful readiness probes of the web tier, the last 24 hours
    controls > 0           decisions held by a pre-trade control in the last 5 minutes, or the
                           tenant halted by a halting control (fired at once by the decision path)

A rule that crosses fires an ``Alert`` (one row per episode, updated while it fires) and is
resolved when the metric is back; each change is published as an ``alert.fired`` /
``alert.resolved`` event on the tenant's bus, which notifications deliver. A metric without
enough data is not evaluated (no alert on silence)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from .models import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    name: str
    label: str
    threshold: float
    below: bool  # fires when the value is below the threshold (else above)
    unit: str = ""

    def crossed(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold

    def message(self, value: float) -> str:
        shown = f"{value:.2%}" if self.unit == "%" else f"{value:.4g}{self.unit}"
        limit = f"{self.threshold:.2%}" if self.unit == "%" else f"{self.threshold:g}{self.unit}"
        return f"{self.label} is {shown}, {'below' if self.below else 'above'} {limit}"


RULES = {
    "accuracy": Rule("accuracy", "Live consensus accuracy", 0.60, True, "%"),
    "inference_p99_ms": Rule("inference_p99_ms", "Decision latency p99", 20.0, False, " ms"),
    "error_rate": Rule("error_rate", "API server error rate", 0.005, False, "%"),
    "stream_tps": Rule("stream_tps", "Stream throughput", 40.0, True, " decisions/s"),
    "availability": Rule("availability", "Availability", 0.995, True, "%"),
    "controls": Rule("controls", "Decisions held by controls (5 min)", 0.0, False),
}


def metrics_now(*, now: dt.datetime | None = None) -> dict[str, float | None]:
    """Each rule's metric for the current tenant (None: not enough data to judge)."""
    from intelligence.models import Decision
    from ops.models import AvailabilityProbe

    from .models import Kind, UsageHourly

    now = now or timezone.now()
    out: dict[str, float | None] = dict.fromkeys(RULES)
    recent = list(Decision.objects.exclude(correct=None).order_by("-id").values_list("correct", flat=True)[:200])
    if len(recent) >= 30:
        out["accuracy"] = sum(recent) / len(recent)
    latencies = sorted(
        Decision.objects.filter(created_at__gte=now - dt.timedelta(hours=1)).values_list("latency_ms", flat=True)
    )
    if latencies:
        out["inference_p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    hour = now.replace(minute=0, second=0, microsecond=0)
    requests = UsageHourly.objects.filter(kind=Kind.REQUEST, hour__gte=hour - dt.timedelta(hours=1))
    total = requests.aggregate(n=Sum("count"))["n"] or 0
    if total >= 100:
        out["error_rate"] = (requests.filter(status="5xx").aggregate(n=Sum("count"))["n"] or 0) / total
    window = now - dt.timedelta(minutes=5)
    streamed = Decision.objects.filter(source="stream", created_at__gte=window)
    n = streamed.count()
    if n:
        first = streamed.order_by("created_at").values_list("created_at", flat=True).first()
        span = max((now - first).total_seconds(), 1.0)
        out["stream_tps"] = n / span if span >= 60 else None  # judged on a minute at least
    held = Decision.objects.filter(created_at__gte=window, vetoed_by__startswith="control:").count()
    out["controls"] = float(held + _halted_by_controls())
    probes = AvailabilityProbe.objects.filter(at__gte=now - dt.timedelta(hours=24))
    counted = probes.count()
    if counted >= 10:
        out["availability"] = probes.filter(ok=True).count() / counted
    return out


def _halted_by_controls() -> int:
    from django.db import connection

    from tenants.models import KillSwitch

    return int(
        KillSwitch.objects.filter(
            tenant__schema_name=connection.schema_name, lifted_at=None, engaged_by="system:controls"
        ).exists()
    )


def alert_fire(rule: str, *, value: float, threshold: float, message: str) -> None:
    """Fire ``rule`` now from the code that saw it cross (the minute's evaluation resolves it)."""
    from django.db import connection

    now = timezone.now()
    with transaction.atomic():
        current = Alert.objects.select_for_update().filter(rule=rule, state=Alert.State.FIRING).first()
        if current is not None:
            Alert.objects.filter(pk=current.pk).update(value=value, message=message, last_seen_at=now)
            return
        alert = Alert.objects.create(rule=rule, value=value, threshold=threshold, message=message, last_seen_at=now)
        events = [("alert.fired", _event(alert))]
        schema = connection.schema_name
        transaction.on_commit(lambda: _publish(events, schema))


def alerts_evaluate(*, schema: str, now: dt.datetime | None = None) -> list[dict]:
    """Fire or resolve each rule for the current tenant; the changes (also published as events)."""
    now = now or timezone.now()
    values = metrics_now(now=now)
    changes = []
    with transaction.atomic():
        firing = {a.rule: a for a in Alert.objects.select_for_update().filter(state=Alert.State.FIRING)}
        for name, rule in RULES.items():
            value = values.get(name)
            current = firing.get(name)
            if value is None:
                continue
            if rule.crossed(value):
                if current is None:
                    alert = Alert.objects.create(
                        rule=name, value=value, threshold=rule.threshold, message=rule.message(value), last_seen_at=now
                    )
                    changes.append(("alert.fired", alert))
                else:
                    Alert.objects.filter(pk=current.pk).update(
                        value=value, message=rule.message(value), last_seen_at=now
                    )
            elif current is not None:
                Alert.objects.filter(pk=current.pk).update(state=Alert.State.RESOLVED, resolved_at=now, value=value)
                current.state, current.value, current.resolved_at = Alert.State.RESOLVED, value, now
                changes.append(("alert.resolved", current))
        events = [(kind, _event(a)) for kind, a in changes]
        if events:
            transaction.on_commit(lambda: _publish(events, schema))
    return [dict(e, event=kind) for kind, e in events]


def _event(alert: Alert) -> dict:
    return {
        "alert_id": alert.pk, "rule": alert.rule, "state": alert.state, "value": alert.value,
        "threshold": alert.threshold, "message": alert.message,
    }  # fmt: skip


def _publish(events: list[tuple[str, dict]], schema: str) -> None:
    from eventbus import bus

    for kind, data in events:
        try:
            bus.publish(kind, data, schema=schema)
        except Exception as exc:  # noqa: BLE001 - the alert row stands; delivery retries from it
            log.warning("alert event %s not published: %s", kind, exc)


def alerts_firing() -> list[Alert]:
    return list(Alert.objects.filter(state=Alert.State.FIRING))
