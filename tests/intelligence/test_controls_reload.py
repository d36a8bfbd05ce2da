"""Pre-trade and halting controls (configured in the configuration service, enforced in the
decision paths) and the hot reload of the live configuration into a running stream."""

import time
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django_tenants.utils import schema_context

from analytics.models import Alert
from api.errors import ApplicationError
from compliance import controls as compliance_controls
from configuration import services as config_services
from eventbus import bus
from intelligence import controls as decision_controls
from intelligence.ledger import LedgerConfig
from intelligence.models import Decision, EngineCheckpoint, Position
from intelligence.rerun import decisions_replay
from intelligence.services import flow_create
from intelligence.stream import TenantStream
from tenants.models import KillSwitch, Role
from tests.conftest import error_code
from tests.intelligence.helpers import clear_streams, live_market

pytestmark = pytest.mark.django_db
LEDGER = LedgerConfig(equity=100_000.0, fee_bps=0.0)


def _buy(size=0.5, confidence=0.8) -> Decision:
    return Decision(action="BUY", size=size, confidence=confidence, explanation="agents agree", inputs={})


def _runtime(**controls) -> dict:
    base = dict.fromkeys(
        ("max_position", "max_order_value", "price_collar_pct", "max_decisions_per_second", "daily_loss_limit",
         "max_drawdown_pct"),
    )  # fmt: skip
    return {"min_confidence": 0.0, "publish": True, "controls": {**base, **controls}}


# --- pre-trade controls, one decision ---------------------------------------------------------------


def test_each_pretrade_control_holds_the_decision_with_its_reason():
    flat = {"qty": 0.0, "last_price": 100.0}
    # 0.5 of 100,000 at 100: an order of 500 units worth 50,000
    d = _buy()
    assert not decision_controls.pretrade(d, price=100.0, position=flat, runtime=_runtime(), ledger=LEDGER)
    assert d.action == "BUY"
    d = _buy()
    assert decision_controls.pretrade(
        d, price=100.0, position=flat, runtime=_runtime(max_order_value=40_000), ledger=LEDGER
    )
    assert (d.action, d.size, d.vetoed_by) == ("HOLD", 0.0, "control:max_order_value")
    assert d.inputs["blocked"] == {
        "control": "max_order_value", "reason": "order value 50,000.00 is above the limit 40,000.00",
        "action": "BUY", "size": 0.5,
    }  # fmt: skip
    assert d.explanation.startswith("Held by the max_order_value control") and d.explanation.endswith("agents agree")
    d = _buy()
    decision_controls.pretrade(d, price=100.0, position=flat, runtime=_runtime(max_position=499), ledger=LEDGER)
    assert d.vetoed_by == "control:max_position"
    # a price 3 % away from the last traded one, with a 2 % collar
    d = _buy()
    decision_controls.pretrade(d, price=103.0, position=flat, runtime=_runtime(price_collar_pct=2.0), ledger=LEDGER)
    assert d.vetoed_by == "control:price_collar" and "3.00%" in d.inputs["blocked"]["reason"]
    d = _buy(confidence=0.55)
    decision_controls.pretrade(
        d, price=100.0, position=flat, runtime={**_runtime(), "min_confidence": 0.6}, ledger=LEDGER
    )
    assert d.vetoed_by == "control:min_confidence"


def test_reducing_a_position_is_never_held_by_the_position_limit():
    long_800 = {"qty": 800.0, "last_price": 100.0}
    d = _buy(size=0.5)  # target 500 units: a reduction of 300
    assert not decision_controls.pretrade(
        d, price=100.0, position=long_800, runtime=_runtime(max_position=100), ledger=LEDGER
    )
    hold = Decision(action="HOLD", size=0.0, confidence=0.9, explanation="", inputs={})
    assert not decision_controls.pretrade(
        hold, price=1e9, position=long_800, runtime=_runtime(max_order_value=1), ledger=LEDGER
    )


def test_decisions_per_second_are_shared_across_calls_of_the_same_second(usage_redis):
    with mock.patch("compliance.controls.time.time", return_value=1_900_000_000.2):
        batch = [_buy() for _ in range(3)] + [Decision(action="HOLD", size=0, confidence=1, explanation="", inputs={})]
        held = decision_controls.throttle(batch, runtime=_runtime(max_decisions_per_second=2), schema="dps_t")
        assert held == 1 and [d.action for d in batch] == ["BUY", "BUY", "HOLD", "HOLD"]
        assert batch[2].vetoed_by == "control:max_decisions_per_second" and batch[3].vetoed_by == ""
        later = [_buy()]
        assert decision_controls.throttle(later, runtime=_runtime(max_decisions_per_second=2), schema="dps_t") == 1
    with mock.patch("compliance.controls.time.time", return_value=1_900_000_001.0):  # the next second
        fresh = [_buy()]
        assert decision_controls.throttle(fresh, runtime=_runtime(max_decisions_per_second=2), schema="dps_t") == 0


# --- halting controls over REST ---------------------------------------------------------------------


@pytest.fixture
def stored_bars(alpha):
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table

    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(300, seed=9)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="CTL", timeframe="1d", raw=raw)


def test_a_daily_loss_past_the_limit_halts_the_tenant_and_only_staff_lift_it(
    alpha, stored_bars, usage_redis, django_capture_on_commit_callbacks
):
    admin = alpha.client(role="admin")
    r = admin.patch("/api/v1/config/prod/", {"values": {"controls": {"daily_loss_limit": 1000}}}, format="json")
    assert r.status_code == 200
    with schema_context(alpha.tenant.schema_name):
        Position.objects.create(symbol="OLD", qty=0.0, realized_pnl=0.0)
    trade = alpha.client(scope="trade")
    with django_capture_on_commit_callbacks(execute=True):
        assert trade.post("/api/v1/decisions/", {"symbol": "CTL"}, format="json").status_code == 201
    # a loss of 1,500 on the paper ledger today
    with schema_context(alpha.tenant.schema_name):
        Position.objects.filter(symbol="OLD").update(realized_pnl=-1500.0)
    with django_capture_on_commit_callbacks(execute=True):
        assert trade.post("/api/v1/decisions/", {"symbol": "CTL"}, format="json").status_code == 201
    switch = KillSwitch.objects.get(tenant=alpha.tenant, lifted_at=None)
    assert switch.engaged_by == "system:controls" and "daily_loss_limit" in switch.reason
    with schema_context(alpha.tenant.schema_name):
        alert = Alert.objects.get(rule="controls", state="firing")
        assert "Trading halted by the daily_loss_limit control" in alert.message
    compliance_controls.reset_local()
    r = trade.post("/api/v1/decisions/", {"symbol": "CTL"}, format="json")
    assert r.status_code == 423 and error_code(r) == "kill_switch_active"
    # the tenant's admin cannot lift it; staff can
    r = admin.post("/api/v1/kill-switch/", {"action": "lift"}, format="json")
    assert KillSwitch.objects.filter(tenant=alpha.tenant, lifted_at=None).exists(), r.content
    with pytest.raises(ApplicationError) as refused:
        compliance_controls.kill_lift(tenant=alpha.tenant, actor=alpha.users[Role.ADMIN])
    assert refused.value.code == "staff_only"
    staff = get_user_model().objects.create_user(email="desk@ctl.test", password="x" * 14, is_staff=True)
    assert compliance_controls.kill_lift(tenant=alpha.tenant, actor=staff)


# --- hot reload into a running stream ---------------------------------------------------------------


@pytest.fixture
def market(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    yield schema, live_market(alpha.tenant, "HOT", seed=61, live=60)
    clear_streams(schema)


def _drain(stream: TenantStream) -> None:
    while stream.run_once(block_ms=10):
        pass


def test_a_live_configuration_change_reaches_the_running_stream_without_a_restart(
    alpha, market, django_capture_on_commit_callbacks
):
    schema, live = market
    with schema_context(schema):  # a flow that acts on weak signals (BUY/SELL to hold back)
        flow_create(
            tenant=alpha.tenant, name="eager", actor="test",
            config={"min_confidence": 0.5, "min_agreement": 0.3, "conflict_share": 0.5},
        )  # fmt: skip
    stream = TenantStream(alpha.tenant, batch=10)
    stream.start()
    stream.watcher.poll_s = 1e9  # the push alone (channel layer) must carry the change
    try:
        with mock.patch("intelligence.stream.publish_decisions") as feed:
            bus.publish_many("market.data.update", live[:30], schema=schema)
            with django_capture_on_commit_callbacks(execute=True):
                _drain(stream)
            published_before = feed.call_count
            assert published_before == 3  # three batches of ten, each published
            # when an admin changes prod: no BUY/SELL below 100 % confidence, no publishing
            with schema_context(schema), django_capture_on_commit_callbacks(execute=True):
                config_services.config_set(
                    tenant=alpha.tenant, environment="prod", partial=True, actor="test",
                    values={"decisions": {"min_confidence": 1.0}, "feed": {"publish": False}},
                )  # fmt: skip
            deadline = time.monotonic() + 10
            while stream.watcher.pushed < 1:
                assert time.monotonic() < deadline, "the change was not pushed over the channel layer"
                time.sleep(0.01)
            bus.publish_many("market.data.update", live[30:], schema=schema)
            with django_capture_on_commit_callbacks(execute=True):
                _drain(stream)
            # then the same process runs the new configuration from the next batch on
            assert stream.reloads == 1 and feed.call_count == published_before
    finally:
        stream.stop()
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream").order_by("ts"))
        assert [int(d.ts.timestamp()) for d in decisions] == [b["ts"] for b in live]  # no bar lost or repeated
        # each decision names the configuration it ran under: prod@1 (the flow), then prod@2
        assert {d.inputs["config"] for d in decisions[:30]} == {"prod@1"}
        assert {d.inputs["config"] for d in decisions[30:]} == {"prod@2"}
        assert all(d.action == "HOLD" for d in decisions[30:])
        reload_cp = EngineCheckpoint.objects.get(reason="reload")
        assert reload_cp.flow_config["runtime"]["config"] == "prod@2"  # prod@1: the flow
        # and the period replays exactly, switching configuration where the live process did
        report = decisions_replay(check_model=False)["report"]
        assert report["exact"] and report["compared"] == 60, report["first_mismatch"]
        assert report["switched_checkpoints"] >= 1
