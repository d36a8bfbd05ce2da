"""Order execution: a broker adapter interface and the paper broker the live stream trades through.

An actionable decision (BUY/SELL, sized as a fraction of paper equity) becomes an :class:`Order`
for the difference between the paper position and the decision's target (the ledger's
``target_qty``). The broker returns an :class:`Execution` (filled quantity and price, simulated
latency and spread, partial or not); the fill is applied to the paper position with the ledger's
own ``apply_fill`` (its P&L, fees and averaging: nothing is computed twice) and the fill, the
position it opened and the position it closed are reported as ``trade.executed``,
``position.opened`` and ``position.closed`` events, published once the ledger's transaction
commits (:func:`intelligence.ledger.ledger_apply` with ``broker=``).

Plugging in a real broker (e.g. MetaTrader 5): implement :class:`BrokerAdapter` in a module of
its own, say ``MT5Broker(BrokerAdapter)`` with ``name = "mt5"``:

- ``execute(order)`` maps the order to ``mt5.order_send({"action": TRADE_ACTION_DEAL,
  "symbol": order.symbol, "volume": lots(abs(order.qty)), "type": ORDER_TYPE_BUY if order.qty > 0
  else ORDER_TYPE_SELL, "price": tick.ask / tick.bid, "deviation": max_slippage_points,
  "magic": order.decision_id, "comment": order.order_id, "type_filling": ORDER_FILLING_IOC})``
  and the result (``retcode``, ``volume``, ``price``) back to an ``Execution`` (an IOC order that
  filled less than asked is ``partial``; a rejected one is a zero fill); the measured round trip is
  ``latency_ms`` and the quoted spread ``spread_bps``;
- the ``order_id`` is deterministic per decision (``D<id>``) and goes to the broker as the order's
  comment / client id, so a redelivered decision can be matched to the order already sent instead
  of sending it twice;
- a network broker must not be called inside the ledger's database transaction: the stream
  would send orders, then apply the returned executions (the paper broker is in-memory, so it is
  called in place). None is called in this project: there is no network here.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .ledger import LedgerConfig, apply_fill, target_qty
from .models import Decision, Fill


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    symbol: str
    qty: float  # signed: > 0 buys, < 0 sells
    ref_price: float  # the price the decision was made at (the bar's close)
    decision_id: int | None = None
    timeframe: str = ""
    ts: int = 0


@dataclass(frozen=True, slots=True)
class Execution:
    order_id: str
    qty: float  # signed, filled (0: nothing filled)
    price: float
    latency_ms: float
    spread_bps: float
    partial: bool


class BrokerAdapter(ABC):
    """Where orders go. ``execute`` must be deterministic per ``order_id`` for the paper ledger's
    redelivery guarantee (a decision is filled once; see the module's note for real brokers)."""

    name = "adapter"

    @abstractmethod
    def execute(self, order: Order) -> Execution: ...


class PaperBroker(BrokerAdapter):
    """Simulated execution: a fill at the reference price moved against the order by half the
    spread and by a slippage that grows with the simulated latency (a random walk of
    ``vol_bps_per_s`` basis points per √second); a partial fill when the order is larger than
    ``max_notional`` or, with probability ``partial_prob``, of 50-95 % of it. The randomness is
    seeded by the order id, so the same order always executes the same way. Nothing sleeps: the
    latency is reported, not waited for."""

    name = "paper"

    def __init__(
        self,
        *,
        spread_bps: float = 2.0,
        latency_ms: float = 20.0,
        latency_jitter_ms: float = 10.0,
        vol_bps_per_s: float = 1.0,
        partial_prob: float = 0.05,
        max_notional: float | None = None,
    ):
        if spread_bps < 0 or latency_ms < 0 or latency_jitter_ms < 0 or not 0 <= partial_prob <= 1:
            raise ValueError("spread, latency and jitter are >= 0, partial_prob within [0, 1]")
        self.spread_bps = float(spread_bps)
        self.latency_ms = float(latency_ms)
        self.latency_jitter_ms = float(latency_jitter_ms)
        self.vol_bps_per_s = float(vol_bps_per_s)
        self.partial_prob = float(partial_prob)
        self.max_notional = float(max_notional) if max_notional else None

    @classmethod
    def from_flow(cls, flow: dict | None) -> PaperBroker:
        """The flow's ``paper.broker`` settings (``spread_bps``, ``latency_ms``, ``partial_prob``, …)."""
        conf = ((flow or {}).get("paper") or {}).get("broker") or {}
        known = ("spread_bps", "latency_ms", "latency_jitter_ms", "vol_bps_per_s", "partial_prob", "max_notional")
        return cls(**{k: conf[k] for k in known if conf.get(k) is not None})

    def execute(self, order: Order) -> Execution:
        if order.qty == 0 or order.ref_price <= 0:
            return Execution(order.order_id, 0.0, order.ref_price, 0.0, self.spread_bps, False)
        rng = random.Random(order.order_id)
        latency = max(0.0, self.latency_ms + self.latency_jitter_ms * (2 * rng.random() - 1))
        side = 1.0 if order.qty > 0 else -1.0
        slip_bps = self.vol_bps_per_s * math.sqrt(latency / 1000) * rng.gauss(0.0, 1.0)
        price = order.ref_price * (1 + (side * self.spread_bps / 2 + slip_bps) / 10_000)
        qty = order.qty
        partial = False
        if self.max_notional and abs(qty) * price > self.max_notional:
            qty, partial = side * self.max_notional / price, True
        if self.partial_prob and rng.random() < self.partial_prob:
            qty, partial = qty * (0.5 + 0.45 * rng.random()), True
        return Execution(order.order_id, qty, price, latency, self.spread_bps, partial)


def order_id(decision: Decision) -> str:
    return f"D{decision.pk}"


def execute_decision(
    broker: BrokerAdapter, pos, decision: Decision, price: float, cfg: LedgerConfig, events: list | None = None
) -> Fill | None:
    """Send the order moving ``pos`` towards ``decision``'s target and apply its execution to
    ``pos`` (in memory) with the ledger's ``apply_fill``; the fill (unsaved), or None when nothing
    trades. The events it causes are appended to ``events`` as ``(event, data)``."""
    pos.last_price = price
    want = target_qty(decision.action, decision.size, price, pos.qty, cfg)
    delta = want - pos.qty
    if abs(delta) * price < 1e-6:
        return None
    ts = int(decision.ts.timestamp()) if decision.ts else int(time.time())
    order = Order(order_id(decision), decision.symbol, delta, price, decision.pk, decision.timeframe, ts)
    ex = broker.execute(order)
    if abs(ex.qty) * ex.price < 1e-6:
        return None
    before_qty, before_avg = pos.qty, pos.avg_price
    opened_at = pos.opened_at
    fee = abs(ex.qty) * ex.price * cfg.fee_bps / 10_000
    realized = apply_fill(pos, ex.qty, ex.price, fee)
    pos.last_price = price  # marked at the reference price, not at the fill's
    fill = Fill(decision=decision, symbol=decision.symbol, qty=ex.qty, price=ex.price, fee=fee, realized_pnl=realized)
    if events is not None:
        events.extend(trade_events(order, ex, fee, realized, before_qty, before_avg, opened_at, pos, broker))
    return fill


def trade_events(order, ex, fee, realized, before_qty, before_avg, opened_at, pos, broker) -> list:
    """The ``(event, data)`` pairs of one execution: the trade, and the position it closed / opened."""
    common = {"symbol": order.symbol, "ts": order.ts, "order_id": order.order_id}
    if order.decision_id is not None:
        common["decision_id"] = order.decision_id
    out = [
        (
            "trade.executed",
            {
                **common,
                "side": "BUY" if ex.qty > 0 else "SELL",
                "qty": abs(ex.qty),
                "requested_qty": abs(order.qty),
                "price": ex.price,
                "fee": fee,
                "partial": ex.partial,
                "spread_bps": ex.spread_bps,
                "latency_ms": round(ex.latency_ms, 3),
                "realized_pnl": realized,
                "broker": broker.name,
                **({"timeframe": order.timeframe} if order.timeframe else {}),
            },
        )
    ]
    after = pos.qty
    flipped = before_qty and after and (before_qty > 0) != (after > 0)
    if before_qty and (after == 0 or flipped):
        closed = {
            **common,
            "side": "LONG" if before_qty > 0 else "SHORT",
            "qty": abs(before_qty),
            "avg_price": before_avg,
            "exit_price": ex.price,
            "realized_pnl": realized - fee,
            "fees": fee,
        }
        if opened_at is not None:
            closed["holding_s"] = max(0.0, time.time() - opened_at.timestamp())
        out.append(("position.closed", closed))
    if after and (not before_qty or flipped):
        side = "LONG" if after > 0 else "SHORT"
        out.append(("position.opened", {**common, "side": side, "qty": abs(after), "avg_price": pos.avg_price}))
    return out


def publish_events(events: list, schema: str) -> None:
    """Publish ``(event, data)`` pairs, one round trip per event type, in their order per type."""
    from eventbus import bus

    by_type: dict[str, list[dict]] = {}
    for name, data in events:
        by_type.setdefault(name, []).append(data)
    for name, items in by_type.items():
        bus.publish_many(name, items, schema=schema)
