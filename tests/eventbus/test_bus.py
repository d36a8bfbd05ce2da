"""The event bus on a real Redis: validated versioned envelopes, per-tenant streams, consumer
groups with at-least-once delivery, reclaim of a dead consumer's entries, dead letters with replay,
trimming."""

import uuid

import pytest
from django.core.management import call_command
from django.test import override_settings

from api.errors import ApplicationError
from eventbus import bus


@pytest.fixture
def schema():
    """A schema name of its own, so tests never see each other's streams; streams removed after."""
    name = f"t_bus_{uuid.uuid4().hex[:8]}"
    yield name
    r = bus.client()
    for key in r.scan_iter(f"stream:{name}:*"):
        r.delete(key)


def _bar(ts: int, close: float = 100.0) -> dict:
    return {
        "symbol": "BTC-USD",
        "timeframe": "1m",
        "ts": ts,
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": close,
        "volume": 10,
    }


def test_events_are_validated_before_they_enter_a_stream(schema):
    with pytest.raises(ApplicationError) as exc:
        bus.publish_many("market.data.update", [_bar(60), {**_bar(120), "close": "high"}], schema=schema)
    assert exc.value.code == "invalid_event" and "close must be number" in exc.value.message
    with pytest.raises(ApplicationError) as exc:
        bus.publish("market.data.update", {**_bar(60), "colour": "red"}, schema=schema)
    assert "colour is not a field" in exc.value.message
    with pytest.raises(ApplicationError) as exc:
        bus.publish("no.such.event", {}, schema=schema)
    assert exc.value.code == "unknown_event"
    assert bus.stream_info("market.data.update", schema=schema)["length"] == 0  # all or none
    with pytest.raises(ApplicationError):
        bus.publish("market.data.update", _bar(60), schema="public")  # events always belong to a tenant


def test_a_group_gets_every_event_once_in_order_and_acks_after_handling(schema):
    ids = bus.publish_many("market.data.update", [_bar(60 * i) for i in range(250)], schema=schema)
    seen = []
    consumer = bus.Consumer("market.data.update", "decider", lambda batch: seen.extend(batch), schema=schema, batch=100)
    consumer.ensure_group()
    while consumer.run_once(block_ms=10):
        pass
    assert [e.id for e in seen] == ids and [e.data["ts"] for e in seen] == [60 * i for i in range(250)]
    assert seen[0].type == "market.data.update" and seen[0].version == 1
    info = bus.stream_info("market.data.update", schema=schema)
    assert info["groups"][0]["pending"] == 0 and info["length"] == 250
    # another group reads the same stream independently; other tenants' streams are separate keys
    other = bus.Consumer("market.data.update", "recorder", lambda batch: None, schema=schema)
    other.ensure_group()
    assert other.run_once(block_ms=10) == 200  # its batch size
    assert bus.stream_key("market.data.update", schema) != bus.stream_key("market.data.update", "t_other")


def test_a_dead_consumers_entries_are_reclaimed_and_handled_once(schema):
    bus.publish_many("market.data.update", [_bar(60 * i) for i in range(10)], schema=schema)

    def crash(batch):
        raise KeyboardInterrupt  # a worker killed while handling: nothing acknowledged

    dead = bus.Consumer("market.data.update", "g", crash, schema=schema, name="dead")
    dead.ensure_group()
    with pytest.raises(KeyboardInterrupt):
        dead.run_once(block_ms=10)
    handled = []
    alive = bus.Consumer(
        "market.data.update",
        "g",
        lambda b: handled.extend(e.id for e in b),
        schema=schema,
        name="alive",
        claim_idle_ms=0,
    )
    assert alive.run_once(block_ms=10) == 10
    assert alive.run_once(block_ms=10) == 0
    assert len(handled) == len(set(handled)) == 10
    assert bus.stream_info("market.data.update", schema=schema)["groups"][0]["pending"] == 0


def test_poison_events_go_to_the_dead_letter_stream_and_can_be_replayed(schema):
    bus.publish_many("market.data.update", [_bar(60), _bar(120, close=-1.0), _bar(180)], schema=schema)
    good = []

    def handler(batch):
        bad = [e.id for e in batch if e.data["close"] < 0]
        good.extend(e.data["ts"] for e in batch if e.data["close"] >= 0 and e.data["ts"] not in good)
        return bad  # not handled: stays pending, retried

    consumer = bus.Consumer("market.data.update", "g", handler, schema=schema, claim_idle_ms=0, max_deliveries=3)
    consumer.ensure_group()
    for _ in range(6):
        consumer.run_once(block_ms=10)
    assert good == [60, 180]
    dead = bus.dlq_list(schema=schema)
    assert len(dead) == 1 and dead[0]["data"]["ts"] == 120 and dead[0]["deliveries"] > 3
    assert dead[0]["group"] == "g" and dead[0]["stream"] == bus.stream_key("market.data.update", schema)
    assert bus.stream_info("market.data.update", schema=schema)["groups"][0]["pending"] == 0
    # an operator fixes the cause and replays it
    assert bus.dlq_replay(schema=schema) == 1 and bus.dlq_list(schema=schema) == []
    assert bus.stream_info("market.data.update", schema=schema)["length"] == 4


def test_a_handler_exception_retries_the_batch_then_dead_letters_it(schema):
    bus.publish("market.data.update", _bar(60), schema=schema)
    calls = []

    def boom(batch):
        calls.append(len(batch))
        raise RuntimeError("database down")

    consumer = bus.Consumer("market.data.update", "g", boom, schema=schema, claim_idle_ms=0, max_deliveries=2)
    consumer.ensure_group()
    for _ in range(4):
        consumer.run_once(block_ms=10)
    assert calls and bus.dlq_list(schema=schema)[0]["error"] == "RuntimeError: database down"


@override_settings(EVENTBUS_MAXLEN=100)
def test_streams_are_trimmed(schema):
    for start in range(0, 2000, 200):
        bus.publish_many("market.data.update", [_bar(60 * (start + i)) for i in range(200)], schema=schema)
    assert bus.stream_info("market.data.update", schema=schema)["length"] < 400  # approximate trimming


@pytest.mark.django_db
def test_the_dlq_command_lists_and_replays(alpha, capsys):
    schema = alpha.tenant.schema_name
    try:
        bus.publish("market.data.update", _bar(60), schema=schema)
        consumer = bus.Consumer(
            "market.data.update", "cmd", lambda b: [e.id for e in b], schema=schema, claim_idle_ms=0, max_deliveries=1
        )
        consumer.ensure_group()
        for _ in range(3):
            consumer.run_once(block_ms=10)
        call_command("events_dlq", "--tenant", alpha.slug)
        assert "market.data.update" in capsys.readouterr().out
        call_command("events_dlq", "--tenant", alpha.slug, "--replay", "all")
        assert "replayed 1 event(s)" in capsys.readouterr().out
    finally:
        for key in bus.client().scan_iter(f"stream:{schema}:*"):
            bus.client().delete(key)


SEED_EVENTS = {
    "market.data.update", "trade.executed", "position.opened", "position.closed", "performance.update",
    "ml.threshold.adjusted", "ml.risk.limit.update", "ml.prediction.ready", "rl.signal.generated",
    "rl.confidence.update", "rl.action.recommended", "feedback.prediction.outcome", "feedback.performance",
}  # fmt: skip


def test_every_seed_event_has_a_schema_that_rejects_a_missing_field(schema):
    assert SEED_EVENTS <= set(bus.EVENTS)
    for name in SEED_EVENTS:
        kind = bus.EVENTS[name]
        required = [k for k in kind.fields if not k.endswith("?")]
        assert required, name
        with pytest.raises(ApplicationError) as exc:
            kind.check({})
        assert exc.value.code == "invalid_event" and f"{required[0]} is required" in exc.value.message


def test_rl_events_carry_what_the_rl_agent_publishes(schema):
    bus.publish(
        "rl.signal.generated",
        {"symbol": "BTC-USD", "timeframe": "1h", "ts": 3600, "model_version": "rl-1", "action": "BUY",
         "q_values": {"BUY": 0.2, "SELL": -0.1, "HOLD": 0.0}, "decision_id": 7},
        schema=schema,
    )  # fmt: skip
    bus.publish(
        "rl.confidence.update",
        {"symbol": "BTC-USD", "timeframe": "1h", "model_version": "rl-1", "confidence": 0.61, "window": 50},
        schema=schema,
    )
    bus.publish(
        "rl.action.recommended",
        {"symbol": "BTC-USD", "timeframe": "1h", "ts": 3600, "model_version": "rl-1", "action": "SELL",
         "size": 0.5, "confidence": 0.7},
        schema=schema,
    )  # fmt: skip
    with pytest.raises(ApplicationError):
        bus.publish("rl.confidence.update", {"symbol": "X", "timeframe": "1h", "model_version": "v"}, schema=schema)
    assert [bus.stream_info(e, schema=schema)["length"] for e in
            ("rl.signal.generated", "rl.confidence.update", "rl.action.recommended")] == [1, 1, 1]  # fmt: skip
