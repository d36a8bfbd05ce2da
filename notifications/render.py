"""Turning an event into a message: a title, a plain text (Telegram, the e-mail's text part, in-app),
and HTML (the e-mail's HTML part).

Each event type may have its own templates, ``templates/notifications/<type>.txt`` and ``.html``
(the type's dots become underscores); without one the generic ``_default`` templates list the
event's fields. A template that fails to render never loses the event: the message falls back to
a plain listing of the event's fields, and the delivery notes the template error."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

from django.conf import settings
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string

from .events import EVENTS
from .models import Event

log = logging.getLogger(__name__)


@dataclass
class Message:
    title: str
    text: str
    html: str
    url: str
    severity: str
    note: str = ""  # e.g. a template error, for the delivery log


_TITLES = {
    "decision": "{action} {symbol} ({confidence_pct})",
    "model.deployed": "Model {name} v{version} deployed",
    "model.rolled_back": "Model {name} rolled back to v{version}",
    "training.finished": "Training {job_id} finished",
    "training.failed": "Training {job_id} failed",
    "workflow.finished": "Workflow for {model} finished: {message}",
    "workflow.failed": "Workflow for {model} failed",
    "workflow.awaiting_approval": "Workflow for {model} v{version} awaits approval",
    "alert.fired": "Alert: {message}",
    "alert.resolved": "Resolved: {message}",
    "alert.escalated": "Escalated, still firing: {message}",
    "anomaly.detected": "{count} new anomalies in {symbol} ({kinds})",
    "quota.80": "{quota_label}: 80 % used",
    "quota.100": "{quota_label}: used up",
    "kill_switch.engaged": "Kill switch engaged: {reason}",
    "kill_switch.lifted": "Kill switch lifted",
    "payment.succeeded": "Payment received: {amount} {currency}",
    "payment.failed": "Payment failed: {amount} {currency}",
    "invoice.issued": "Invoice {number} issued: {amount} {currency}",
    "test": "Test message from {tenant}",
    "digest": "{count} notifications",
}
_LINKS = {
    "decision": "/app/decisions/{decision_id}/",
    "model.deployed": "/app/models/",
    "model.rolled_back": "/app/models/",
    "training.finished": "/app/models/",
    "training.failed": "/app/models/",
    "workflow.finished": "/app/workflows/{workflow_id}/",
    "workflow.failed": "/app/workflows/{workflow_id}/",
    "workflow.awaiting_approval": "/app/workflows/{workflow_id}/",
    "alert.fired": "/app/notifications/alerts/",
    "alert.resolved": "/app/notifications/alerts/",
    "alert.escalated": "/app/notifications/alerts/",
    "anomaly.detected": "/app/risk/{symbol}/",
    "quota.80": "/app/usage/",
    "quota.100": "/app/usage/",
    "kill_switch.engaged": "/app/kill-switch/",
    "kill_switch.lifted": "/app/kill-switch/",
    "payment.succeeded": "/app/billing/",
    "payment.failed": "/app/billing/",
    "invoice.issued": "/app/billing/",
}


class _Fields(dict):
    def __missing__(self, key):
        return "?"


def _fields(event: Event) -> _Fields:
    data = _Fields(event.data or {})
    if "confidence" in data and isinstance(data["confidence"], int | float):
        data["confidence_pct"] = f"{data['confidence']:.0%}"
    if "quota" in data:
        data.setdefault("quota_label", str(data["quota"]).replace("_", " ").capitalize())
    return data


def title_of(event: Event) -> str:
    return _TITLES.get(event.type, event.type).format_map(_fields(event))[:200]


def link_of(event: Event) -> str:
    path = _LINKS.get(event.type)
    if not path:
        return ""
    return settings.PUBLIC_BASE_URL.rstrip("/") + path.format_map(_fields(event))


def _plain(event: Event, title: str) -> str:
    lines = [title] + [f"{k}: {v}" for k, v in sorted((event.data or {}).items()) if not isinstance(v, dict | list)]
    return "\n".join(lines)


def render(event: Event) -> Message:
    """The message for ``event``; never raises (a broken template gives the plain fallback)."""
    spec = EVENTS.get(event.type)
    severity = event.severity or (spec.severity if spec else "info")
    try:
        title = title_of(event)
    except Exception as exc:  # noqa: BLE001 - a bad payload must not lose the event
        title = event.type
        log.warning("notification title of %s failed: %s", event, exc)
    url = ""
    try:
        url = link_of(event)
    except Exception:  # noqa: BLE001
        pass
    context = {"event": event, "data": event.data, "title": title, "url": url, "severity": severity,
               "label": spec.label if spec else event.type}  # fmt: skip
    name = event.type.replace(".", "_")
    try:
        text = _template(f"notifications/{name}.txt", "notifications/_default.txt", context).strip()
        body = _template(f"notifications/{name}.html", "notifications/_default.html", context)
        page = render_to_string("notifications/email.html", {**context, "body": body})
        return Message(title, text, page, url, severity)
    except Exception as exc:  # noqa: BLE001 - template errors never lose the event
        log.warning("notification template for %s failed: %s", event, exc)
        text = _plain(event, title)
        page = f"<pre>{html.escape(text)}</pre>"
        return Message(title, text, page, url, severity, note=f"template error ({type(exc).__name__}): plain text sent")


def _template(name: str, fallback: str, context: dict) -> str:
    try:
        return render_to_string(name, context)
    except TemplateDoesNotExist as exc:
        if getattr(exc, "args", None) and exc.args[0] != name:
            raise  # a template it includes is missing: that is an error of the template
        return render_to_string(fallback, context)
