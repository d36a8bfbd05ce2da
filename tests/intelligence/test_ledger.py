"""The paper ledger: target positions from decisions, fees, realised P&L on reductions and
flips, one fill per decision, and the state the risk agent reads."""

import datetime as dt

import pytest
from django_tenants.utils import schema_context

from intelligence.ledger import LedgerConfig, decision_insert_applied, ledger_apply, position_state
from intelligence.models import Decision, Fill, Position

pytestmark = pytest.mark.django_db

CFG = LedgerConfig(equity=10_000.0, fee_bps=10.0, allow_short=True)


def _decision(action: str, size: float = 0.5, n: int = 0) -> Decision:
    return Decision.objects.create(
        source="api",
        symbol="PAPER",
        timeframe="1d",
        ts=dt.datetime(2024, 1, 1 + n, tzinfo=dt.UTC),
        action=action,
        confidence=0.6,
        size=size,
    )


def test_buy_then_flip_short_then_close_books_pnl_and_fees(alpha):
    with schema_context(alpha.tenant.schema_name):
        d1, d2, d3, d4 = _decision("BUY", 0.5, 0), _decision("SELL", 0.25, 1), _decision("HOLD", 0.9, 2), None
        ledger_apply([(d1, 100.0)], CFG)  # long 50 @ 100
        pos = Position.objects.get(symbol="PAPER")
        assert pos.qty == pytest.approx(50) and pos.avg_price == 100.0 and pos.fees == pytest.approx(5.0)
        ledger_apply([(d2, 110.0), (d3, 120.0)], CFG)  # to short 2500/110: sells 50 + 22.7 @ 110; HOLD: nothing
        pos.refresh_from_db()
        assert pos.qty == pytest.approx(-2500 / 110) and pos.avg_price == 110.0
        assert pos.realized_pnl == pytest.approx(50 * 10 - 5.0 - (50 + 2500 / 110) * 110 * 0.001)
        assert pos.last_price == 120.0 and pos.unrealized_pnl == pytest.approx(-2500 / 110 * 10)
        assert Fill.objects.count() == 2  # HOLD made no fill
        d4 = _decision("BUY", 0.0, 3)  # size 0: flat
        ledger_apply([(d4, 100.0)], CFG)
        pos.refresh_from_db()
        assert pos.qty == pytest.approx(0) and pos.avg_price == 0.0


def test_a_decision_is_filled_once_and_risk_state_reports_drawdown(alpha):
    with schema_context(alpha.tenant.schema_name):
        d = _decision("BUY", 1.0)
        ledger_apply([(d, 100.0)], CFG)
        ledger_apply([(d, 100.0)], CFG)  # redelivered
        assert Fill.objects.filter(decision=d).count() == 1
        hold = _decision("HOLD", n=1)
        ledger_apply([(hold, 80.0)], CFG)  # price falls 20 %
        state = position_state(Position.objects.get(symbol="PAPER"), CFG)
        assert state["exposure"] == pytest.approx(0.8) and state["unrealised_pnl"] == pytest.approx(-2000)
        assert state["drawdown"] == pytest.approx((10_000 - 10 - 8_000 + 10) / 10_000 + 0.001, abs=0.01)


def test_without_shorting_sell_only_closes(alpha):
    cfg = LedgerConfig(equity=10_000.0, fee_bps=0.0, allow_short=False)
    with schema_context(alpha.tenant.schema_name):
        ledger_apply([(_decision("SELL", 0.5), 100.0)], cfg)
        assert not Position.objects.filter(qty__lt=0).exists()
        ledger_apply([(_decision("BUY", 0.5, 1), 100.0), (_decision("SELL", 0.5, 2), 90.0)], cfg)
        pos = Position.objects.get(symbol="PAPER")
        assert pos.qty == 0 and pos.realized_pnl == pytest.approx(-500)


def _unsaved(action: str, size: float, n: int) -> Decision:
    return Decision(
        source="api",
        symbol="PAPER",
        timeframe="1d",
        ts=dt.datetime(2024, 2, 1 + n, tzinfo=dt.UTC),
        action=action,
        confidence=0.6,
        size=size,
        votes=[{"agent": "trend", "action": action}],
        weights={"trend": 1.0},
    )


def _position() -> Position | None:
    return Position.objects.filter(symbol="PAPER").first()


def test_the_one_statement_write_books_exactly_what_the_locked_path_books(alpha):
    """The REST path (decision + position move + fill in one statement) against ledger_apply on
    the same sequence: same positions and fills, field by field."""
    steps = [("BUY", 0.5, 100.0), ("HOLD", 0.9, 104.0), ("SELL", 0.25, 110.0), ("BUY", 0.0, 95.0), ("SELL", 0.4, 90.0)]
    with schema_context(alpha.tenant.schema_name):
        booked = []
        for n, (action, size, price) in enumerate(steps):
            d = _unsaved(action, size, n)
            assert decision_insert_applied(d, price, CFG, _position())
            assert d.pk is not None and d.created_at is not None
            booked.append((_position(), list(Fill.objects.filter(decision=d).values_list("qty", "price", "fee"))))
        stored = Decision.objects.get(pk=d.pk)
        assert stored.votes == [{"agent": "trend", "action": "SELL"}] and stored.size == 0.4
        Position.objects.all().delete()
        Fill.objects.all().delete()
        for n, (action, size, price) in enumerate(steps):
            d = _unsaved(action, size, n + 10)
            d.save()
            ledger_apply([(d, price)], CFG, fresh=True)
            pos, fills = booked[n]
            ref = _position()
            for field in ("qty", "avg_price", "realized_pnl", "fees", "last_price", "peak_equity"):
                assert getattr(pos, field) == pytest.approx(getattr(ref, field)), (n, field)
            assert fills == list(Fill.objects.filter(decision=d).values_list("qty", "price", "fee"))
        assert Fill.objects.count() == 4  # the HOLD traded nothing


def test_the_one_statement_write_writes_nothing_when_the_position_moved_meanwhile(alpha):
    with schema_context(alpha.tenant.schema_name):
        assert decision_insert_applied(_unsaved("BUY", 0.5, 0), 100.0, CFG, None)
        seen = _position()
        assert decision_insert_applied(_unsaved("SELL", 0.5, 1), 100.0, CFG, seen)  # another request
        decisions, fills = Decision.objects.count(), Fill.objects.count()
        late = _unsaved("BUY", 1.0, 2)
        assert not decision_insert_applied(late, 100.0, CFG, seen)  # decided on the old position
        assert late.pk is None and Decision.objects.count() == decisions and Fill.objects.count() == fills
        assert _position().qty == pytest.approx(-50)  # short half the equity: untouched by the late one
        # a first position racing another first position: the loser writes nothing either
        assert not decision_insert_applied(_unsaved("BUY", 0.5, 3), 100.0, CFG, None)
        assert Decision.objects.count() == decisions
