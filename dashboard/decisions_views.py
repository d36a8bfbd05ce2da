"""The dashboard's Decisions area: the live feed (WebSocket, resumable), a decision's vote
breakdown, and the paper positions."""

from __future__ import annotations

import os

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render

from api.errors import NotFound

from .access import tenant_page


def _ws_base(request) -> str:
    configured = getattr(settings, "WS_PUBLIC_URL", "")
    if configured:
        return configured.rstrip("/")
    host = request.get_host().split(":")[0]
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{host}:{os.environ.get('WS_PORT', '8001')}"


def _ticket(request) -> str:
    from tenants.channels import ws_ticket_issue

    return ws_ticket_issue(tenant_id=request.tenant.pk, user_id=request.user.pk, key_id=None)


@tenant_page()
def decisions(request):
    from intelligence import selectors
    from intelligence.ledger import position_state
    from intelligence.services import pipeline_load

    recent = [selectors.decision_payload(d) for d in selectors.decision_list(limit=50)]
    for d in recent:  # the same formatting the page's script gives live rows
        d["bar"] = d["ts"][:16].replace("T", " ")
        d["confidence_pct"] = f"{d['confidence'] * 100:.1f} %"
    cfg = pipeline_load(request.tenant).ledger
    positions = [{"p": p, **position_state(p, cfg)} for p in selectors.position_list()]
    context = {
        "decisions": recent,
        "last_id": recent[0]["id"] if recent else 0,
        "positions": positions,
        "ws_url": f"{_ws_base(request)}/ws/decisions/",
        "ticket": _ticket(request),
    }
    return render(request, "dashboard/decisions.html", context)


@tenant_page()
def decisions_ticket(request):
    """A fresh one-use ticket for the page's WebSocket (after a disconnect)."""
    return JsonResponse({"ticket": _ticket(request)}, headers={"Cache-Control": "no-store"})


@tenant_page()
def decision_detail(request, decision_id: int):
    from intelligence import selectors

    try:
        d = selectors.decision_get(decision_id=decision_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    payload = selectors.decision_payload(d)
    votes = sorted(payload["votes"], key=lambda v: -(payload["weights"].get(v["agent"], 0)))
    for v in votes:
        v["weight"] = payload["weights"].get(v["agent"])
    return render(request, "dashboard/decision.html", {"d": payload, "votes": votes, "features": d.features})
