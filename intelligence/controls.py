"""The tenant's configured controls applied to a decision before it trades the paper ledger: the
minimum confidence, the pre-trade controls (price collar, order value, position, decisions per
second) and, after the ledger moved, the halting ones (daily loss, drawdown). The checks are
:mod:`compliance.controls`; this module maps a decision onto them.

A blocked decision is stored as HOLD with ``vetoed_by = "control:<code>"``, the reason first in
its explanation, and what the consensus wanted in ``inputs["blocked"]``; a replay applies the same
controls from the recorded configuration (the per-second limit, a matter of the clock, is taken
as recorded)."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import connection
from django.db.models import F, FloatField, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from compliance import controls as compliance_controls

from .ledger import LedgerConfig, target_qty
from .models import Action, Decision, LedgerDay, Position

log = logging.getLogger(__name__)
THROTTLE = "max_decisions_per_second"
RISK_LIMIT = "max_exposure"  # adaptive (event_consumers), read from Redis per batch: replayed as recorded


def block(decision: Decision, code: str, reason: str) -> None:
    decision.inputs = {
        **(decision.inputs or {}),
        "blocked": {"control": code, "reason": reason, "action": decision.action, "size": decision.size},
    }
    decision.action = Action.HOLD
    decision.size = 0.0
    decision.vetoed_by = f"control:{code}"
    decision.explanation = f"Held by the {code} control: {reason}. The consensus said: {decision.explanation}"


def pretrade(decision: Decision, *, price: float, position: dict, runtime: dict, ledger: LedgerConfig) -> bool:
    """Apply the minimum confidence and the pre-trade controls (not the per-second limit) to an
    unsaved decision; whether it was blocked."""
    if decision.action == Action.HOLD or not runtime:
        return False
    floor = runtime.get("min_confidence") or 0.0
    if decision.confidence < floor:
        block(decision, "min_confidence", f"confidence {decision.confidence:.2f} is below {floor:.2f}")
        return True
    limits = runtime.get("controls") or {}
    if not any(limits.get(k) for k in ("price_collar_pct", "max_order_value", "max_position")):
        return False
    current = float(position.get("qty") or 0.0)
    target = target_qty(decision.action, decision.size, price, current, ledger)
    breach = compliance_controls.pretrade_check(
        limits, current_qty=current, target_qty=target, price=price, last_price=float(position.get("last_price") or 0.0)
    )
    if breach is None:
        return False
    block(decision, *breach)
    return True


def throttle(decisions: list[Decision], *, runtime: dict, schema: str) -> int:
    """The per-second limit over a batch of unsaved decisions (in order): those past it are held.
    How many were held."""
    per_second = (runtime.get("controls") or {}).get(THROTTLE)
    actionable = [d for d in decisions if d.action != Action.HOLD]
    if not per_second or not actionable:
        return 0
    admitted = compliance_controls.decisions_admit(schema, len(actionable), per_second)
    for d in actionable[admitted:]:
        block(d, THROTTLE, f"more than {per_second} BUY/SELL decisions in one second")
    return len(actionable) - admitted


def replayed(decision: Decision, *, recorded: dict, price: float, position: dict, runtime: dict, ledger) -> None:
    """The controls on a replayed decision: as live, with a recorded per-second or adaptive exposure
    hold taken as given (neither is part of the recorded configuration)."""
    if pretrade(decision, price=price, position=position, runtime=runtime, ledger=ledger):
        return
    blocked = (recorded or {}).get("blocked") or {}
    if blocked.get("control") in (THROTTLE, RISK_LIMIT) and decision.action != Action.HOLD:
        block(decision, blocked["control"], blocked.get("reason", ""))


def risk_limit(decision: Decision, *, max_exposure: float | None) -> bool:
    """The adaptive exposure limit (``ml.risk.limit.update``, :mod:`intelligence.event_consumers`):
    a BUY/SELL whose target size (fraction of the paper equity) is above it is held; whether it was."""
    if max_exposure is None or decision.action == Action.HOLD or decision.size <= max_exposure + 1e-9:
        return False
    block(decision, RISK_LIMIT, f"size {decision.size:.2f} is above the adaptive exposure limit {max_exposure:.2f}")
    return True


def ledger_totals() -> float:
    """The paper ledger's P&L: realised plus unrealised over every position."""
    row = Position.objects.aggregate(
        pnl=Sum(F("realized_pnl") + F("qty") * (F("last_price") - F("avg_price")), output_field=FloatField())
    )
    return float(row["pnl"] or 0.0)


def ledger_guard(*, tenant, runtime: dict, ledger: LedgerConfig, now: dt.datetime | None = None):
    """After the ledger moved: today's P&L and the drawdown against the halting limits. A breach
    engages the tenant's kill switch (only staff lift it) and fires an alert; returns the breach."""
    limits = runtime.get("controls") or {}
    if not (limits.get("daily_loss_limit") or limits.get("max_drawdown_pct")):
        return None
    pnl = ledger_totals()
    today = (now or timezone.now()).date()
    day = LedgerDay.objects.filter(day=today).first()
    if day is None:
        before = LedgerDay.objects.filter(day__lt=today).order_by("-day").first()
        day, _ = LedgerDay.objects.get_or_create(
            day=today,
            defaults={
                "open_pnl": before.last_pnl if before else 0.0,
                "peak_pnl": max(before.peak_pnl if before else 0.0, pnl),
                "last_pnl": pnl,
            },
        )
    LedgerDay.objects.filter(pk=day.pk).update(last_pnl=pnl, peak_pnl=Greatest(F("peak_pnl"), pnl))
    peak = max(day.peak_pnl, pnl)
    peak_equity = ledger.equity + peak
    equity = ledger.equity + pnl
    drawdown = (peak_equity - equity) / peak_equity * 100.0 if peak_equity > 0 else 0.0
    breach = compliance_controls.ledger_check(limits, pnl_today=pnl - day.open_pnl, drawdown_pct=drawdown)
    if breach is None:
        return None
    log.warning("tenant %s halted by the %s control: %s", connection.schema_name, *breach)
    compliance_controls.halt_for_breach(tenant=tenant, code=breach[0], reason=breach[1])
    alert_blocked(breach[0], breach[1], halted=True)
    return breach


def alert_blocked(code: str, reason: str, *, halted: bool = False) -> None:
    """Judge the tenant's ``controls`` rule now (the held decision is saved): it fires at once, and
    resolves once no decision was held by a control for five minutes (``analytics.alerts``)."""
    from analytics.alerts import alert_fire

    what = "Trading halted" if halted else "A decision was held"
    alert_fire("controls", message=f"{what} by the {code} control: {reason}"[:300])
