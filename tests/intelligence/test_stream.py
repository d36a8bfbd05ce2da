"""The live decision stream: bars in, one decision per bar out, stored with the bars in one
transaction, outcomes fed back, paper ledger moved; a crash mid-batch or a restart loses no bar
and decides none twice."""

from unittest import mock

import pytest
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence import replay
from intelligence.models import Decision, EngineState, Position
from intelligence.stream import TenantStream
from marketdata import services as md_services
from marketdata.models import Bar
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(alpha):
    schema = alpha.tenant.schema_name
    for key in bus.client().scan_iter(f"stream:{schema}:*"):
        bus.client().delete(key)
    history = generate_bars(300, seed=61)
    with schema_context(schema):
        md_services.bars_import(
            tenant=alpha.tenant, symbol="STR", timeframe="1d", raw=read_table(as_csv(history), "csv")
        )
    last_ts = int(history.index[-1].timestamp())
    events = replay.live_events(history, "STR", "1d", after_ts=last_ts, last_close=float(history["close"].iloc[-1]))
    live = [next(events) for _ in range(60)]
    yield schema, live
    for key in bus.client().scan_iter(f"stream:{schema}:*"):
        bus.client().delete(key)


def _drain(stream: TenantStream) -> None:
    while stream.run_once(block_ms=10):
        pass


def test_each_live_bar_is_stored_decided_once_and_resolved(alpha, market, django_capture_on_commit_callbacks):
    schema, live = market
    bus.publish_many("market.data.update", live, schema=schema)
    stream = TenantStream(alpha.tenant, batch=25)
    stream.start()
    with mock.patch("intelligence.stream.publish_decisions") as feed, django_capture_on_commit_callbacks(execute=True):
        _drain(stream)
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream").order_by("ts"))
        assert len(decisions) == 60 and Bar.objects.filter(instrument__symbol="STR").count() == 360
        assert [int(d.ts.timestamp()) for d in decisions] == [b["ts"] for b in live]
        assert sum(d.resolved_at is not None for d in decisions) == 59  # the last awaits tomorrow's close
        first = decisions[0]
        assert first.realized == (1 if live[1]["close"] > live[0]["close"] else -1)
        assert EngineState.objects.get(flow="default").state  # learned state kept
        assert Position.objects.filter(symbol="STR").exists() or all(
            d.action == "HOLD" or not d.size for d in decisions
        )
    # the feed got every decision, after each batch's commit
    ids = [p["id"] for call in feed.call_args_list for p in call.args[0]]
    assert ids == [d.id for d in decisions]
    outcomes = bus.client().xlen(bus.stream_key("feedback.prediction.outcome", schema))
    assert outcomes == 59


def test_a_crash_mid_batch_and_a_restart_lose_no_bar_and_decide_none_twice(alpha, market):
    schema, live = market
    bus.publish_many("market.data.update", live[:30], schema=schema)
    crashing = TenantStream(alpha.tenant, consumer_name="a", batch=30)
    crashing.start()
    with mock.patch("intelligence.stream.ledger_apply", side_effect=RuntimeError("killed")):
        crashing.run_once(block_ms=10)  # stored nothing: bars, decisions and ledger are one transaction
    with schema_context(schema):
        assert not Decision.objects.exists() and Bar.objects.filter(instrument__symbol="STR").count() == 300
    # a restarted consumer takes the pending batch over, then the rest arrives
    restarted = TenantStream(alpha.tenant, consumer_name="b", batch=30)
    restarted.consumer.claim_idle_ms = 0
    with mock.patch("intelligence.stream.publish_decisions"):
        _drain(restarted)
        bus.publish_many("market.data.update", live[30:], schema=schema)
        _drain(restarted)
        # the same bars delivered again (e.g. a replay started twice) change nothing
        bus.publish_many("market.data.update", live[:10], schema=schema)
        again = TenantStream(alpha.tenant, consumer_name="c")
        _drain(again)
    with schema_context(schema):
        assert Decision.objects.filter(source="stream").count() == 60
        assert Bar.objects.filter(instrument__symbol="STR").count() == 360
    assert bus.stream_info("market.data.update", schema=schema)["groups"][0]["pending"] == 0
