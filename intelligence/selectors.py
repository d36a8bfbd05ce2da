"""Reads for decisions, positions and flows."""

from __future__ import annotations

from django.db.models import QuerySet

from api.errors import NotFound

from .models import Decision, Flow, Position


def decision_payload(d: Decision) -> dict:
    """The one shape of a decision, in REST and on the WebSocket feed."""
    return {
        "id": d.id,
        "symbol": d.symbol,
        "timeframe": d.timeframe,
        "ts": d.ts.isoformat(),
        "action": d.action,
        "confidence": d.confidence,
        "size": d.size,
        "votes": d.votes,
        "weights": d.weights,
        "explanation": d.explanation,
        "conservative": d.conservative,
        "vetoed_by": d.vetoed_by or None,
        "flow": d.flow,
        "model_version": d.model_version or None,
        "latency_ms": d.latency_ms,
        "created_at": d.created_at.isoformat() if d.created_at else None,
        "outcome": None if d.resolved_at is None else {"realized": d.realized, "correct": d.correct},
    }


def decision_list(*, symbol: str | None = None, after: int | None = None, limit: int = 100) -> QuerySet[Decision]:
    """Newest first; with ``after``, the decisions after that id, oldest first (to resume a feed)."""
    qs = Decision.objects.all().defer("features")
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    if after is not None:
        return qs.filter(id__gt=after).order_by("id")[:limit]
    return qs.order_by("-id")[:limit]


def decisions_after(*, after: int, symbols: set[str] | None = None, limit: int = 1000) -> list[dict]:
    qs = Decision.objects.filter(id__gt=after).defer("features").order_by("id")
    if symbols:
        qs = qs.filter(symbol__in=symbols)
    return [decision_payload(d) for d in qs[:limit]]


def decision_get(*, decision_id: int) -> Decision:
    d = Decision.objects.filter(pk=decision_id).first()
    if d is None:
        raise NotFound("decision")
    return d


def position_list() -> QuerySet[Position]:
    return Position.objects.order_by("symbol")


def flow_list() -> QuerySet[Flow]:
    return Flow.objects.order_by("name", "-version")


def flow_active() -> Flow | None:
    return Flow.objects.filter(active=True).first()
