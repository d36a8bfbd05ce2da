"""The paper broker: orders for the difference to a decision's target, filled with spread,
latency-driven slippage and partial fills (deterministic per order), applied through the paper
ledger's own P&L, and reported as trade.executed / position.opened / position.closed after
commit; a broker adapter must implement ``execute``."""

import datetime as dt
import json

import pytest
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence.broker import BrokerAdapter, Execution, Order, PaperBroker
from intelligence.ledger import LedgerConfig, ledger_apply
from intelligence.models import Decision, Fill, Position
from tests.intelligence.helpers import clear_streams

pytestmark = pytest.mark.django_db

CFG = LedgerConfig(equity=10_000.0, fee_bps=10.0, allow_short=True)


def _decision(action: str, size: float = 0.5, n: int = 0) -> Decision:
    return Decision.objects.create(
        source="stream", symbol="BRK", timeframe="1d", ts=dt.datetime(2024, 1, 1 + n, tzinfo=dt.UTC),
        action=action, confidence=0.6, size=size,
    )  # fmt: skip


def _events(schema, name):
    return [json.loads(f[b"e"])["data"] for _, f in bus.client().xrange(bus.stream_key(name, schema))]


def test_paper_broker_fills_against_the_order_with_spread_and_is_deterministic():
    broker = PaperBroker(spread_bps=10.0, latency_ms=0.0, latency_jitter_ms=0.0, partial_prob=0.0)
    buy = broker.execute(Order("D1", "X", 10.0, 100.0))
    sell = broker.execute(Order("D2", "X", -10.0, 100.0))
    assert buy.price == pytest.approx(100.05) and sell.price == pytest.approx(99.95)  # half the spread against
    assert buy.qty == 10.0 and sell.qty == -10.0 and not buy.partial
    noisy = PaperBroker(spread_bps=2.0, latency_ms=50.0, partial_prob=0.5)
    runs = [noisy.execute(Order(f"D{i}", "X", 5.0, 100.0)) for i in range(200)]
    assert runs == [noisy.execute(Order(f"D{i}", "X", 5.0, 100.0)) for i in range(200)]  # same order, same fill
    partial = [r for r in runs if r.partial]
    assert 50 < len(partial) < 150 and all(2.5 <= r.qty < 5.0 for r in partial)
    assert all(40.0 <= r.latency_ms <= 60.0 for r in runs) and len({r.price for r in runs}) > 100  # slippage varies
    capped = PaperBroker(partial_prob=0.0, max_notional=500.0).execute(Order("D9", "X", -10.0, 100.0))
    assert capped.partial and capped.qty == pytest.approx(-500.0 / capped.price)
    with pytest.raises(ValueError):
        PaperBroker(partial_prob=2)
    assert PaperBroker.from_flow({"paper": {"broker": {"spread_bps": 7, "partial_prob": 0}}}).spread_bps == 7.0


def test_an_adapter_must_implement_execute():
    class Half(BrokerAdapter):
        name = "half"

        def execute(self, order):
            return Execution(order.order_id, order.qty / 2, order.ref_price, 1.0, 0.0, True)

    with pytest.raises(TypeError):
        BrokerAdapter()
    assert Half().execute(Order("D1", "X", 4.0, 10.0)).qty == 2.0


def test_decisions_execute_through_the_broker_and_the_ledger_and_emit_trade_events(
    alpha, django_capture_on_commit_callbacks
):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    broker = PaperBroker(spread_bps=10.0, latency_ms=0.0, latency_jitter_ms=0.0, partial_prob=0.0)
    with schema_context(schema):
        buy, flip, hold, close = (_decision("BUY", 0.5, 0), _decision("SELL", 0.25, 1), _decision("HOLD", 0, 2),
                                  _decision("SELL", 0.0, 3))  # fmt: skip
        close.action = "BUY"  # size 0 BUY: back to flat
        with django_capture_on_commit_callbacks(execute=True):
            ledger_apply([(buy, 100.0)], CFG, broker=broker)  # long 50 @ 100.05
        pos = Position.objects.get(symbol="BRK")
        assert pos.qty == pytest.approx(50.0) and pos.avg_price == pytest.approx(100.05)
        assert pos.last_price == 100.0  # marked at the reference price
        with django_capture_on_commit_callbacks(execute=True):
            ledger_apply([(flip, 110.0), (hold, 111.0), (close, 100.0)], CFG, broker=broker)
            assert bus.client().xlen(bus.stream_key("trade.executed", schema)) == 1  # not before commit
        pos.refresh_from_db()
        assert pos.qty == 0 and Fill.objects.filter(symbol="BRK").count() == 3  # HOLD traded nothing
        sell_fill = Fill.objects.get(decision=flip)
        assert sell_fill.price == pytest.approx(110 * 0.9995)
        # the ledger's P&L: closing 50 long bought @ 100.05 at 109.945
        assert sell_fill.realized_pnl == pytest.approx((110 * 0.9995 - 100.05) * 50)
        assert pos.realized_pnl == pytest.approx(sum(f.realized_pnl - f.fee for f in Fill.objects.filter(symbol="BRK")))
    trades = _events(schema, "trade.executed")
    assert [(t["side"], t["decision_id"]) for t in trades] == [("BUY", buy.pk), ("SELL", flip.pk), ("BUY", close.pk)]
    assert trades[0]["order_id"] == f"D{buy.pk}" and trades[0]["broker"] == "paper" and not trades[0]["partial"]
    opened = _events(schema, "position.opened")
    assert [(o["side"], o["decision_id"]) for o in opened] == [("LONG", buy.pk), ("SHORT", flip.pk)]
    closed = _events(schema, "position.closed")
    assert [(c["side"], c["decision_id"]) for c in closed] == [("LONG", flip.pk), ("SHORT", close.pk)]
    assert closed[0]["realized_pnl"] == pytest.approx(sell_fill.realized_pnl - sell_fill.fee)
    clear_streams(schema)


def test_a_redelivered_decision_is_not_executed_twice(alpha, django_capture_on_commit_callbacks):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    with schema_context(schema):
        d = _decision("BUY", 0.5)
        with django_capture_on_commit_callbacks(execute=True):
            ledger_apply([(d, 100.0)], CFG, broker=PaperBroker())
            ledger_apply([(d, 100.0)], CFG, broker=PaperBroker())
        assert Fill.objects.filter(decision=d).count() == 1
    assert bus.client().xlen(bus.stream_key("trade.executed", schema)) == 1
    clear_streams(schema)
