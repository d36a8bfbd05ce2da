"""The paper ledger: actionable decisions move a paper position to a target, with fees, realised
and unrealised P&L, exposure and drawdown, which the risk agent reads back.

Sizing convention: a decision's ``size`` is the fraction of the paper equity to hold, long for
BUY and short for SELL (``allow_short`` false: SELL only closes). HOLD changes nothing. The fill
is at the bar's close (the decision is made at the close), fees in bps of the traded notional.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import orjson
from django.db import connection, models, transaction
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


def ledger_apply(
    decisions: list[tuple[Decision, float]], cfg: LedgerConfig, *, fresh: bool = False, broker=None
) -> list[Fill]:
    """Apply decisions (each with the price it was made at), in order, in one transaction; one fill
    per decision at most (a redelivered decision is never filled twice). ``fresh``: the decisions
    were created in this transaction, so none can have a fill yet (one query saved). ``broker``
    (:mod:`intelligence.broker`): orders are executed through it (spread, latency, partial fills)
    and ``trade.executed`` / ``position.opened`` / ``position.closed`` are published after commit."""
    fills: list[Fill] = []
    events: list = []
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
            if decision.pk in filled:
                pos.last_price = price
                continue
            if broker is not None:
                from .broker import execute_decision

                fill = execute_decision(broker, pos, decision, price, cfg, events)
            else:
                fill = _move(pos, decision, price, cfg)
            if fill is not None:
                fills.append(fill)
        for pos in positions.values():
            mark_peak(pos, cfg)
            pos.save()
        Fill.objects.bulk_create(fills)
        if events:
            from .broker import publish_events

            schema = connection.schema_name
            transaction.on_commit(lambda: publish_events(events, schema))
    return fills


def position_move(pos: Position, action: str, size: float, price: float, cfg: LedgerConfig):
    """Move ``pos`` (in memory) to the target of ``action`` / ``size`` at ``price``: the traded
    ``(qty, fee, realized)``, or None when nothing trades. Backtests keep their paper position with it."""
    pos.last_price = price
    want = target_qty(action, size, price, pos.qty, cfg)
    delta = want - pos.qty
    if abs(delta) * price < 1e-6:
        return None
    fee = abs(delta) * price * cfg.fee_bps / 10_000
    return delta, fee, apply_fill(pos, delta, price, fee)


def _move(pos: Position, decision: Decision, price: float, cfg: LedgerConfig) -> Fill | None:
    """Move ``pos`` to ``decision``'s target at ``price``; the fill, or None when nothing trades."""
    traded = position_move(pos, decision.action, decision.size, price, cfg)
    if traded is None:
        return None
    qty, fee, realized = traded
    return Fill(decision=decision, symbol=decision.symbol, qty=qty, price=price, fee=fee, realized_pnl=realized)


def mark_peak(pos: Position, cfg: LedgerConfig) -> None:
    equity = cfg.equity + pos.realized_pnl + pos.unrealized_pnl
    pos.peak_equity = max(pos.peak_equity or cfg.equity, equity)


def _values(obj, fields, *, add: bool) -> list:
    """Database values of ``obj``'s ``fields``, ``pre_save`` run (auto_now(_add) stamps land on
    ``obj`` too); JSON as text through orjson (the statement casts it)."""
    out = []
    for f in fields:
        value = f.pre_save(obj, add)
        if isinstance(f, models.JSONField):
            out.append(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        else:
            out.append(f.get_db_prep_save(value, connection))
    return out


@functools.cache
def _fields(model) -> tuple:
    """A model's columns other than its primary key (once per model: this is on the REST hot path)."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


# the position's state a decision was made on; the write goes through only if it still holds
_CAS_FIELDS = ("updated_at", "qty", "avg_price", "realized_pnl", "fees")
_statements: dict[tuple[bool, bool], str] = {}


def _statement(*, new_position: bool, with_fill: bool) -> str:
    """The one statement of :func:`decision_insert_applied` (four shapes, built once). Values are
    typed ``%s::type`` because they are selected from a CTE, not given as VALUES."""
    key = (new_position, with_fill)
    if key in _statements:
        return _statements[key]
    qn = connection.ops.quote_name

    def cols(fields) -> str:
        return ", ".join(qn(f.column) for f in fields)

    def marks(fields) -> list[str]:
        return [f"%s::{f.cast_db_type(connection)}" for f in fields]

    pfields, dfields = _fields(Position), _fields(Decision)
    ptable, dtable = qn(Position._meta.db_table), qn(Decision._meta.db_table)
    if new_position:  # a first position in the symbol; a concurrent first one wins, we retry
        position = f"INSERT INTO {ptable} ({cols(pfields)}) VALUES ({', '.join(marks(pfields))})"
        position += " ON CONFLICT (symbol) DO NOTHING RETURNING id"
    else:
        sets = ", ".join(f"{qn(f.column)} = {m}" for f, m in zip(pfields, marks(pfields), strict=True))
        cas = " AND ".join(f"{qn(Position._meta.get_field(n).column)} = %s" for n in _CAS_FIELDS)
        position = f"UPDATE {ptable} SET {sets} WHERE id = %s AND {cas} RETURNING id"
    sql = (
        f"WITH p AS ({position}), d AS (INSERT INTO {dtable} ({cols(dfields)})"
        f" SELECT {', '.join(marks(dfields))} FROM p RETURNING id)"
    )
    if with_fill:
        ffields = _fields(Fill)
        fmarks = ["d.id" if f.name == "decision" else m for f, m in zip(ffields, marks(ffields), strict=True)]
        sql += f", f AS (INSERT INTO {qn(Fill._meta.db_table)} ({cols(ffields)}) SELECT {', '.join(fmarks)} FROM d)"
    _statements[key] = sql = sql + " SELECT id FROM d"
    return sql


def decision_insert_applied(decision: Decision, price: float, cfg: LedgerConfig, seen: Position | None) -> bool:
    """Insert ``decision`` and apply it to the paper ledger in ONE statement (its own transaction
    in autocommit: no BEGIN, row lock or COMMIT round trips), for a single decision made on
    position ``seen`` (read without a lock; None: there was none).

    Compare-and-set: the position is written only if it still holds what ``seen`` held, and the
    decision and its fill are inserted only if the position was written (they select from the
    position's CTE). On a concurrent change nothing is written and False is returned; the caller
    then uses :func:`ledger_apply` under a row lock. ``decision`` gets its id and ``created_at``."""
    pos = copy.copy(seen) if seen is not None else Position(symbol=decision.symbol, peak_equity=cfg.equity)
    fill = _move(pos, decision, price, cfg)
    mark_peak(pos, cfg)
    params = _values(pos, _fields(Position), add=seen is None)
    if seen is not None:
        cas = [Position._meta.get_field(name) for name in _CAS_FIELDS]
        params += [seen.pk, *(f.get_db_prep_value(getattr(seen, f.attname), connection) for f in cas)]
    params += _values(decision, _fields(Decision), add=True)
    if fill is not None:
        params += _values(fill, [f for f in _fields(Fill) if f.name != "decision"], add=True)
    sql = _statement(new_position=seen is None, with_fill=fill is not None)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    decision.pk = row[0]
    decision._state.adding = False
    decision._state.db = "default"
    return True


def position_state(pos: Position | None, cfg: LedgerConfig) -> dict:
    """What the risk agent reads: quantity, average price, unrealised P&L, exposure (fraction of
    equity), drawdown from the peak (fraction)."""
    if pos is None:
        return {
            "qty": 0.0, "avg_price": 0.0, "unrealised_pnl": 0.0, "exposure": 0.0, "drawdown": 0.0, "last_price": 0.0,
        }  # fmt: skip
    equity = cfg.equity + pos.realized_pnl + pos.unrealized_pnl
    peak = max(pos.peak_equity or cfg.equity, equity)
    return {
        "qty": pos.qty,
        "avg_price": pos.avg_price,
        "unrealised_pnl": pos.unrealized_pnl,
        "exposure": abs(pos.qty * pos.last_price) / cfg.equity if cfg.equity else 0.0,
        "drawdown": (peak - equity) / peak if peak > 0 else 0.0,
        "last_price": pos.last_price,
    }
