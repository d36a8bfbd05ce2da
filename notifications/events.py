"""The event types a tenant can subscribe to: their label, default severity and whether the
decision filters (confidence, symbols, actions) apply. ``emit`` accepts only these."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Severity


@dataclass(frozen=True)
class EventSpec:
    name: str
    label: str
    severity: str = Severity.INFO
    subscribable: bool = True


EVENTS: dict[str, EventSpec] = {
    e.name: e
    for e in (
        EventSpec("decision", "Decision (BUY/SELL above a confidence)"),
        EventSpec("model.deployed", "Model version deployed"),
        EventSpec("model.rolled_back", "Model rolled back", Severity.WARNING),
        EventSpec("training.finished", "Training finished"),
        EventSpec("training.failed", "Training failed", Severity.WARNING),
        EventSpec("workflow.finished", "Workflow finished"),
        EventSpec("workflow.failed", "Workflow failed", Severity.WARNING),
        EventSpec("workflow.awaiting_approval", "Workflow awaiting approval", Severity.WARNING),
        EventSpec("alert.fired", "Alert fired", Severity.WARNING),
        EventSpec("alert.resolved", "Alert resolved"),
        EventSpec("alert.escalated", "Alert escalated", Severity.CRITICAL),
        EventSpec("rl.recommendation", "RL agent recommends going long or short"),
        EventSpec("anomaly.detected", "Anomaly detected (bars or decisions)", Severity.WARNING),
        EventSpec("quota.80", "Quota 80 % used", Severity.WARNING),
        EventSpec("quota.100", "Quota used up", Severity.CRITICAL),
        EventSpec("kill_switch.engaged", "Kill switch engaged", Severity.CRITICAL),
        EventSpec("kill_switch.lifted", "Kill switch lifted", Severity.WARNING),
        EventSpec("payment.succeeded", "Payment received"),
        EventSpec("payment.failed", "Payment failed", Severity.WARNING),
        EventSpec("invoice.issued", "Invoice issued"),
        # not subscribable: a channel's test message, and the summary a digest sends
        EventSpec("test", "Test message", subscribable=False),
        EventSpec("digest", "Digest", subscribable=False),
    )
}
SUBSCRIBABLE = sorted(name for name, spec in EVENTS.items() if spec.subscribable)
