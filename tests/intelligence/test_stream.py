"""The live decision stream: bars in, one decision per bar out, stored with the bars in one
transaction, outcomes fed back, paper ledger moved; a crash mid-batch or a restart loses no bar
and decides none twice."""

from unittest import mock

import pytest
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence.models import Decision, EngineState, Fill, Position
from intelligence.stream import TenantStream
from marketdata.models import Bar
from tests.intelligence.helpers import clear_streams, live_market

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    yield schema, live_market(alpha.tenant, "STR", seed=61, live=60)
    clear_streams(schema)


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
    # the paper broker executed the actionable ones: one trade.executed per fill
    with schema_context(schema):
        fills = Fill.objects.filter(symbol="STR").count()
    assert bus.client().xlen(bus.stream_key("trade.executed", schema)) == fills


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


@pytest.fixture
def four(alpha):
    """Four instruments, two per partition of 2, with history and 12 live bars each."""
    from intelligence.stream import partition_of

    schema = alpha.tenant.schema_name
    clear_streams(schema)
    symbols = []
    for candidate in (f"PX{i}" for i in range(40)):
        if sum(partition_of(s, 2) == partition_of(candidate, 2) for s in symbols) < 2:
            symbols.append(candidate)
        if len(symbols) == 4:
            break
    live = [live_market(alpha.tenant, symbol, seed=80 + k, live=12) for k, symbol in enumerate(symbols)]
    yield schema, symbols, [bar for step in zip(*live, strict=True) for bar in step]
    clear_streams(schema)


def test_partitions_share_the_instruments_and_decide_each_bar_once(alpha, four):
    from intelligence.stream import partition_of

    schema, symbols, live = four
    first, rest = live[:8], live[8:]  # 2 bars per instrument decided before the work is split
    bus.publish_many("market.data.update", first, schema=schema)
    single = TenantStream(alpha.tenant, consumer_name="one")
    single.start()
    with mock.patch("intelligence.stream.publish_decisions"):
        _drain(single)
        bus.publish_many("market.data.update", rest, schema=schema)
        parts = [TenantStream(alpha.tenant, consumer_name=f"p{i}", partition=i, partitions=2) for i in range(2)]
        for p in parts:
            p.start()  # new groups start where the decisions group got to: nothing is read twice
        for p in parts:
            _drain(p)
    for i, p in enumerate(parts):
        assert p.consumer.handled == len(rest)  # read everything, decided only its own
        assert set(p.last_bar) == {s for s in symbols if partition_of(s, 2) == i}
        assert len(p.last_bar) == 2
    with schema_context(schema):
        for symbol in symbols:
            assert Decision.objects.filter(source="stream", symbol=symbol).count() == 12
    info = {g["name"]: g for g in bus.stream_info("market.data.update", schema=schema)["groups"]}
    assert {"decisions-0of2", "decisions-1of2"} <= set(info)
    assert all(g["pending"] == 0 for g in info.values())


def test_a_second_process_for_a_partition_is_a_standby_until_the_owner_goes(alpha, market):
    schema, live = market
    owner = TenantStream(alpha.tenant, consumer_name="owner", lease=True)
    standby = TenantStream(alpha.tenant, consumer_name="standby", lease=True)
    owner.start()
    bus.publish_many("market.data.update", live[:10], schema=schema)
    with mock.patch("intelligence.stream.publish_decisions"):
        assert owner.owns() and not standby.owns()
        assert standby.run_once(block_ms=10) == 0  # waits; reads nothing
        _drain(owner)
        with schema_context(schema):
            assert Decision.objects.filter(source="stream").count() == 10
        owner.release()  # stopping (or its lease running out) hands over
        bus.publish_many("market.data.update", live[10:20], schema=schema)
        assert standby.owns() and not owner.owns()
        _drain(standby)
    with schema_context(schema):
        assert Decision.objects.filter(source="stream").count() == 20
    standby.release()


def test_the_command_refuses_a_partition_outside_the_range():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--partition must be 0..1"):
        call_command("run_decision_stream", "--partitions", "2", "--partition", "2")


def test_bars_decided_before_a_crash_but_not_acknowledged_are_resolved_after_the_restart(alpha, market):
    # a process stores and commits decisions for bars 0-29, then dies before acknowledging 20-29:
    # a new process gets 20-29 again (then 30-39) and must resolve the stored decisions, not twins
    schema, live = market
    with mock.patch("intelligence.stream.publish_decisions"):
        first = TenantStream(alpha.tenant, consumer_name="first")
        first.start()
        bus.publish_many("market.data.update", live[:30], schema=schema)
        _drain(first)
        bus.publish_many("market.data.update", live[20:40], schema=schema)
        restarted = TenantStream(alpha.tenant, consumer_name="restarted")
        _drain(restarted)
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream").order_by("ts"))
        assert len(decisions) == 40  # none twice
        unresolved = [int(d.ts.timestamp()) for d in decisions if d.resolved_at is None]
        assert unresolved == [live[39]["ts"]]  # only the last bar waits for its outcome
        assert decisions[29].realized == (1 if live[30]["close"] > live[29]["close"] else -1)


def test_a_batch_that_fails_in_a_live_process_is_decided_in_full_when_it_comes_back(alpha, market):
    """The process forgets what it held for the failed batch (series past its bars, learning from
    its outcomes), so the redelivery decides every bar, from what was stored."""
    schema, live = market
    bus.publish_many("market.data.update", live[:20], schema=schema)
    stream = TenantStream(alpha.tenant, consumer_name="a", batch=20)
    stream.start()
    stream.consumer.claim_idle_ms = 0
    with mock.patch("intelligence.stream.publish_decisions"):
        with mock.patch("intelligence.stream.ledger_apply", side_effect=RuntimeError("database went away")):
            assert stream.run_once(block_ms=10) == 0
        _drain(stream)
    with schema_context(schema):
        decided = [int(d.ts.timestamp()) for d in Decision.objects.filter(source="stream").order_by("ts")]
        assert decided == [b["ts"] for b in live[:20]]
        assert Decision.objects.filter(source="stream", resolved_at__isnull=False).count() == 19
