"""The event stream inspector (under Decisions): each of the tenant's event streams with its length,
newest entry and consumer groups (consumers, pending, lag), and the tenant's dead-letter queue with
a replay (admins; audited). Reads Redis through the event bus (``eventbus.bus``), nothing else."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tenants.models import Role

from .access import can, tenant_page

DLQ_SHOWN = 100


def _when(entry_id: str | None) -> dt.datetime | None:
    if not entry_id or "-" not in entry_id:
        return None
    return dt.datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, tz=dt.UTC)


def _streams(schema: str) -> list[dict]:
    from eventbus import bus

    rows = []
    for name in sorted(bus.EVENTS):
        info = bus.stream_info(name, schema=schema)
        rows.append({
            "event": name, "summary": bus.EVENTS[name].summary, "length": info["length"],
            "last_at": _when(info.get("last_id")), "groups": info["groups"],
            "pending": sum(g["pending"] or 0 for g in info["groups"]),
            "lag": sum(g["lag"] or 0 for g in info["groups"]),
        })  # fmt: skip
    return rows


def _page(request, status: int = 200, error: str = ""):
    from eventbus import bus

    schema = request.tenant.schema_name
    streams = _streams(schema)
    dead = bus.client().xlen(bus.stream_key(bus.DLQ, schema))
    items = bus.dlq_list(schema=schema, count=DLQ_SHOWN)
    for item in items:
        item["at_dt"] = dt.datetime.fromtimestamp(item.get("at") or 0, tz=dt.UTC)
        item["group"] = item.get("group", "")
    context = {
        "streams": [s for s in streams if s["length"] or s["groups"]],
        "silent": [s["event"] for s in streams if not s["length"] and not s["groups"]],
        "dlq": items,
        "dlq_total": dead,
        "dlq_shown": DLQ_SHOWN,
        "can_replay": can(request, Role.ADMIN),
        "error": error,
    }
    return render(request, "dashboard/events.html", context, status=status)


@tenant_page()
def events(request):
    return _page(request)


@require_POST
@tenant_page(Role.ADMIN)
def events_dlq_replay(request):
    """Re-publish dead-lettered events into their streams (the ticked ones, or all), audited."""
    from compliance.services import audit_record
    from eventbus import bus

    schema = request.tenant.schema_name
    ids = request.POST.getlist("id")
    known = {item["dlq_id"] for item in bus.dlq_list(schema=schema, count=100_000)}
    if not known:
        return _page(request, 400, "The dead-letter queue is empty: nothing to replay.")
    unknown = [i for i in ids if i not in known]
    if unknown:
        return _page(request, 400, f"Not in the dead-letter queue: {', '.join(unknown[:5])}. Nothing was replayed.")
    with transaction.atomic():
        replayed = bus.dlq_replay(schema=schema, ids=ids or None)
        audit_record(request.user, "events.dlq_replayed", details={"count": replayed, "ids": ids[:100] or "all"})
    messages.success(request, f"Replayed {replayed} event{'s' if replayed != 1 else ''} into their streams.")
    return redirect("dashboard:events")
