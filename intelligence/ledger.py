"""The paper ledger: actionable decisions move a paper position to a target, with fees, realised
and unrealised P&L, exposure and drawdown, which the risk agent reads back.

Sizing convention: a decision's ``size`` is the fraction of the paper equity to hold, long for
BUY and short for SELL (``allow_short`` false: SELL only closes). HOLD changes nothing. The fill
is at the bar's close (the decision is made at the close), fees in bps of the traded notional.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .models import Action, Decision, Fill, Position

DEFAULT_EQUITY = 100_000.0


@dataclass(frozen=True)
class LedgerConfig:
    equity: float = DEFAULT_EQUITY
    fee_bps: float = 10.0
    allow_short: bool = True

    @classmethod
    def from_flow(cls, flow: dict) -> LedgerConfig:
        paper = (flow or {}).get("paper") or {}
        return cls(
            equity=float(paper.get("equity", DEFAULT_EQUITY)),
            fee_bps=float(paper.get("fee_bps", (flow or {}).get("fees_bps", 10.0))),
            allow_short=bool(paper.get("allow_short", True)),
        )


def target_qty(action: str, size: float, price: float, current: float, cfg: LedgerConfig) -> float:
    if action == Action.HOLD or price <= 0:
        return current
    qty = max(0.0, min(1.0, size)) * cfg.equity / price
    if action == Action.BUY:
        return qty
    return -qty if cfg.allow_short else 0.0


def apply_fill(pos: Position, qty: float, price: float, fee: float) -> float:
    """Move ``pos`` by ``qty`` at ``price``; returns the P&L realised by the part that reduced it."""
    realized = 0.0
    old = pos.qty
    new = old + qty
    if old and (old > 0) != (qty > 0):  # reducing (or flipping through zero)
        closed = min(abs(qty), abs(old)) * (1 if old > 0 else -1)
        realized = (price - pos.avg_price) * closed
    if new == 0:
        pos.avg_price = 0.0
        pos.opened_at = None
    elif old == 0 or (old > 0) != (new > 0):  # opened, or flipped: the remainder is new at this price
        pos.avg_price = price
        pos.opened_at = timezone.now()
    elif abs(new) > abs(old):  # added to the same side: average in
        pos.avg_price = (pos.avg_price * abs(old) + price * abs(qty)) / abs(new)
    pos.qty = new
    pos.realized_pnl += realized - fee
    pos.fees += fee
    pos.last_price = price
    return realized


def ledger_apply(decisions: list[tuple[Decision, float]], cfg: LedgerConfig, *, fresh: bool = False) -> list[Fill]:
    """Apply decisions (each with the price it was made at), in order, in one transaction; one fill
    per decision at most (a redelivered decision is never filled twice). ``fresh``: the decisions
    were created in this transaction, so none can have a fill yet (one query saved)."""
    fills: list[Fill] = []
    if not decisions:
        return fills
    symbols = {d.symbol for d, _ in decisions}
    # part of the caller's transaction when there is one (no savepoint: two round trips saved;
    # an error rolls the caller's whole transaction back, so nothing is half-written)
    with transaction.atomic(savepoint=False):
        positions = {p.symbol: p for p in Position.objects.select_for_update().filter(symbol__in=symbols)}
        filled = (
            set()
            if fresh
            else set(Fill.objects.filter(decision__in=[d for d, _ in decisions]).values_list("decision_id", flat=True))
        )
        for decision, price in decisions:
            pos = positions.get(decision.symbol)
            if pos is None:
                pos = positions[decision.symbol] = Position(symbol=decision.symbol, peak_equity=cfg.equity)
            pos.last_price = price
            if decision.pk in filled:
                continue
            want = target_qty(decision.action, decision.size, price, pos.qty, cfg)
            delta = want - pos.qty
            if abs(delta) * price < 1e-6:
                continue
            fee = abs(delta) * price * cfg.fee_bps / 10_000
            realized = apply_fill(pos, delta, price, fee)
            fills.append(
                Fill(decision=decision, symbol=decision.symbol, qty=delta, price=price, fee=fee, realized_pnl=realized)
            )
        for pos in positions.values():
            equity = cfg.equity + pos.realized_pnl + pos.unrealized_pnl
            pos.peak_equity = max(pos.peak_equity or cfg.equity, equity)
            pos.save()
        Fill.objects.bulk_create(fills)
    return fills


def position_state(pos: Position | None, cfg: LedgerConfig) -> dict:
    """What the risk agent reads: quantity, average price, unrealised P&L, exposure (fraction of
    equity), drawdown from the peak (fraction)."""
    if pos is None:
        return {"qty": 0.0, "avg_price": 0.0, "unrealised_pnl": 0.0, "exposure": 0.0, "drawdown": 0.0}
    equity = cfg.equity + pos.realized_pnl + pos.unrealized_pnl
    peak = max(pos.peak_equity or cfg.equity, equity)
    return {
        "qty": pos.qty,
        "avg_price": pos.avg_price,
        "unrealised_pnl": pos.unrealized_pnl,
        "exposure": abs(pos.qty * pos.last_price) / cfg.equity if cfg.equity else 0.0,
        "drawdown": (peak - equity) / peak if peak > 0 else 0.0,
    }
