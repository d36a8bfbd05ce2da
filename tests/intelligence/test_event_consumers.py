"""The decision side's event consumers acting on their events: fills -> performance.update
snapshot; outcomes -> feedback.performance (agent accuracies); a drawdown or conservative mode ->
the exposure limit halved within its bounds (ml.risk.limit.update), applied and audited; a
recovered drawdown -> relaxed one step; and the live stream's adaptive threshold moving ->
ml.threshold.adjusted, audited."""

import datetime as dt
import json

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from eventbus import bus
from eventbus.runner import Runner
from intelligence import event_consumers as ec
from intelligence.broker import PaperBroker
from intelligence.ledger import LedgerConfig, ledger_apply
from intelligence.models import Decision, Position
from tests.intelligence.helpers import clear_streams

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(alpha):
    name = alpha.tenant.schema_name
    clear_streams(name)
    bus.client().delete(f"risk:{name}:limits")
    yield name
    clear_streams(name)
    bus.client().delete(f"risk:{name}:limits")


def _data(schema, event):
    return [json.loads(f[b"e"])["data"] for _, f in bus.client().xrange(bus.stream_key(event, schema))]


def _decision(action, size, n, **kw):
    return Decision.objects.create(
        source="stream", symbol="EVC", timeframe="1d", ts=dt.datetime(2024, 1, 1 + n, tzinfo=dt.UTC),
        action=action, confidence=0.6, size=size, **kw,
    )  # fmt: skip


def test_fills_become_a_performance_snapshot_and_a_drawdown_tightens_the_exposure_limit(
    alpha, schema, django_capture_on_commit_callbacks
):
    cfg = LedgerConfig(equity=100_000.0, fee_bps=0.0)
    broker = PaperBroker(spread_bps=0.0, latency_ms=0.0, latency_jitter_ms=0.0, vol_bps_per_s=0.0, partial_prob=0.0)
    with schema_context(schema):
        with django_capture_on_commit_callbacks(execute=True):
            ledger_apply([(_decision("BUY", 1.0, 0), 100.0)], cfg, broker=broker)  # all-in long @ 100
        pos = Position.objects.get(symbol="EVC")
        pos.last_price = 80.0  # marked 20 % down: 20 % drawdown
        pos.save()
    run = Runner([schema])
    run.drain()
    snaps = _data(schema, "performance.update")
    assert snaps and snaps[0]["reason"] == "trade" and snaps[0]["trades"] == 1 and snaps[0]["open_positions"] == 1
    assert snaps[0]["unrealized_pnl"] == pytest.approx(-20_000.0) and snaps[0]["drawdown"] == pytest.approx(0.2)
    assert snaps[0]["exposure"] == pytest.approx(0.8)
    limits = _data(schema, "ml.risk.limit.update")
    # the limit in force stated once, then halved
    assert [(c["old"], c["new"], c["reason"][:8]) for c in limits] == [(1.0, 1.0, "initial "), (1.0, 0.5, "drawdown")]
    assert ec.risk_limits(schema)["max_exposure"] == 0.5  # applied by the "apply" consumer
    with schema_context(schema):
        audited = AuditRecord.objects.filter(action="ml.risk.limit.update").order_by("id")
        assert [r.details["new"] for r in audited] == [1.0, 0.5]
    # repeated drawdowns halve it down to the floor, never below
    for _ in range(6):
        bus.publish("performance.update", {**snaps[0], "reason": "test"}, schema=schema)
        run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == ec.EXPOSURE_MIN
    # the drawdown recovered: relaxed one step per snapshot, up to the ceiling
    bus.publish("performance.update", {**snaps[0], "drawdown": 0.0, "reason": "test"}, schema=schema)
    run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == pytest.approx(ec.EXPOSURE_MIN + ec.RELAX_STEP)


def test_conservative_mode_halves_the_limit_and_blocks_relaxing(schema):
    event = {"name": "min_confidence", "old": 0.55, "new": 0.6, "min": 0.5, "max": 0.8, "reason": "t", "ts": 1,
             "conservative": True}  # fmt: skip
    bus.publish("ml.threshold.adjusted", event, schema=schema)
    run = Runner([schema])
    run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == 0.5
    snap = {"ts": 1, "equity": 1e5, "realized_pnl": 0.0, "unrealized_pnl": 0.0, "drawdown": 0.0, "exposure": 0.0,
            "trades": 0}  # fmt: skip
    bus.publish("performance.update", snap, schema=schema)
    run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == 0.5  # no relaxing while conservative
    bus.publish("ml.threshold.adjusted", {**event, "conservative": False}, schema=schema)
    run.drain()  # (streams are independent: no order between two events of different streams)
    bus.publish("performance.update", snap, schema=schema)
    run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == pytest.approx(0.6)


def test_outcomes_become_feedback_performance_with_each_agents_accuracy(schema):
    votes_up = [{"agent": "trend", "action": "BUY"}, {"agent": "meanrev", "action": "SELL"}]
    with schema_context(schema):
        for n in range(4):
            _decision("BUY", 0.1, n, votes=votes_up, realized=1 if n < 3 else -1, resolved_at=timezone.now())
        _decision("HOLD", 0.0, 5, votes=[{"agent": "trend", "action": "HOLD"}], realized=1, resolved_at=timezone.now())
    bus.publish(
        "feedback.prediction.outcome",
        {"decision_id": 1, "symbol": "EVC", "timeframe": "1d", "ts": 1, "realized": 1},
        schema=schema,
    )
    Runner([schema]).drain()
    (fb,) = _data(schema, "feedback.performance")
    assert fb["resolved"] == 5 and fb["accuracy"] == 0.75
    assert fb["agents"] == {
        "trend": {"n": 4, "hits": 3, "accuracy": 0.75},
        "meanrev": {"n": 4, "hits": 1, "accuracy": 0.25},
    }
    snaps = [s for s in _data(schema, "performance.update") if s["reason"] == "outcome"]
    assert snaps and snaps[0]["accuracy"] == 0.75 and snaps[0]["resolved"] == 5


def test_the_streams_threshold_move_is_audited_and_published(alpha, schema, django_capture_on_commit_callbacks):
    from django.db import transaction

    from intelligence import services
    from intelligence.stream import TenantStream

    stream = TenantStream(alpha.tenant)
    with schema_context(schema):
        stream.pipeline = services.pipeline_load(alpha.tenant, fresh=True)
        engine = stream.pipeline.engine
        now = engine.min_confidence()
        stream._threshold_seen = (engine, now, engine.conservative)
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            stream._threshold_changed(schema)  # nothing moved: nothing said
        assert not _data(schema, "ml.threshold.adjusted")
        stream._threshold_seen = (engine, now - 0.05, engine.conservative)
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            stream._threshold_changed(schema)
            assert not _data(schema, "ml.threshold.adjusted")  # after commit only
        (record,) = AuditRecord.objects.filter(action="ml.threshold.adjusted")
        assert record.actor == "system" and record.details["new"] == now
    (event,) = _data(schema, "ml.threshold.adjusted")
    assert event["old"] == pytest.approx(now - 0.05) and event["new"] == now and event["min"] <= now <= event["max"]


def test_a_served_models_prediction_becomes_ml_prediction_ready():
    from intelligence.stream import prediction_event

    ts = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    ml = {"label": "up", "class": 1, "probabilities": {"down": 0.3, "up": 0.7}, "version": "m@3"}
    d = Decision(pk=5, symbol="EVC", timeframe="1h", ts=ts, action="BUY", confidence=0.6, model_version="m@3",
                 inputs={"ml": ml})  # fmt: skip
    event = prediction_event(d)
    bus.EVENTS["ml.prediction.ready"].check(event)
    assert event == {"symbol": "EVC", "timeframe": "1h", "ts": int(ts.timestamp()), "model_version": "m@3",
                     "prediction": "up", "probabilities": {"down": 0.3, "up": 0.7}, "decision_id": 5}  # fmt: skip
    d.inputs = {"ml": {"prediction": 0.012, "version": "m@3"}}  # a regressor
    assert prediction_event(d)["prediction"] == "0.012" and prediction_event(d)["probabilities"] == {}
    d.inputs, d.model_version = {}, ""
    assert prediction_event(d) is None


def test_a_consensus_worse_than_a_coin_halves_the_limit_and_positions_give_snapshots(schema):
    base = {"ts": 1, "window": 200, "agents": {}}
    bus.publish("feedback.performance", {**base, "accuracy": 0.4, "resolved": 10}, schema=schema)  # too few
    run = Runner([schema])
    run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == 1.0
    bus.publish("feedback.performance", {**base, "accuracy": 0.4, "resolved": 50}, schema=schema)
    run.drain()
    assert ec.risk_limits(schema)["max_exposure"] == 0.5
    closed = {"symbol": "EVC", "side": "LONG", "qty": 1.0, "avg_price": 1.0, "exit_price": 2.0, "realized_pnl": 1.0,
              "ts": 1}  # fmt: skip
    bus.publish("position.closed", closed, schema=schema)
    run.drain()
    assert "position.closed" in [s["reason"] for s in _data(schema, "performance.update")]


def test_the_adapted_exposure_limit_holds_larger_decisions_live_and_in_a_replay(alpha, schema):
    from intelligence import controls
    from intelligence.stream import TenantStream
    from tests.intelligence.helpers import live_market

    big = Decision(symbol="EVC", timeframe="1h", action="BUY", confidence=0.7, size=0.6, explanation="up")
    small = Decision(symbol="EVC", timeframe="1h", action="SELL", confidence=0.7, size=0.2)
    assert not controls.risk_limit(big, max_exposure=None) and big.action == "BUY"
    assert not controls.risk_limit(small, max_exposure=0.25) and small.action == "SELL"
    assert controls.risk_limit(big, max_exposure=0.25)
    assert big.action == "HOLD" and big.size == 0 and big.vetoed_by == "control:max_exposure"
    assert big.inputs["blocked"]["size"] == 0.6 and "adaptive exposure limit 0.25" in big.explanation
    # a replay (no limit in force now) takes the recorded hold as given
    again = Decision(symbol="EVC", timeframe="1h", action="BUY", confidence=0.7, size=0.6, explanation="up")
    controls.replayed(again, recorded=big.inputs, price=1.0, position={}, runtime={}, ledger=LedgerConfig())
    assert again.action == "HOLD" and again.vetoed_by == "control:max_exposure"
    # the live stream reads the limit the event consumers keep, once per batch
    bus.client().hset(f"risk:{schema}:limits", "max_exposure", 0.05)
    bus.publish_many("market.data.update", live_market(alpha.tenant, "EVL", seed=5, live=3), schema=schema)
    stream = TenantStream(alpha.tenant, batch=10)
    stream.start()
    while stream.run_once(block_ms=10):
        pass
    assert stream._max_exposure == 0.05
    with schema_context(schema):
        assert all(d.size <= 0.05 for d in Decision.objects.filter(symbol="EVL").exclude(action="HOLD"))


def test_a_model_predicting_one_class_live_raises_a_drift_alert_once(alpha, schema):
    from models_registry.models import ModelAlert
    from tests.models_registry.factories import stored_version

    with schema_context(schema):
        version = stored_version("degenerate", seed=1)
    ref = version.ref
    bus.client().delete(f"preds:{schema}:ml.prediction.ready:{ref}")

    def pred(i, label):
        return {"symbol": "EVC", "timeframe": "1h", "ts": i, "model_version": ref, "prediction": label,
                "probabilities": {"down": 0.1, "up": 0.9}}  # fmt: skip

    run = Runner([schema])
    bus.publish_many("ml.prediction.ready", [pred(i, "up") for i in range(150)], schema=schema)
    run.drain()
    with schema_context(schema):
        assert not ModelAlert.objects.filter(version=version).exists()  # too few to say
    bus.publish_many("ml.prediction.ready", [pred(i, "up") for i in range(150)] + [pred(0, "down")], schema=schema)
    run.drain()
    bus.publish_many("ml.prediction.ready", [pred(i, "up") for i in range(50)], schema=schema)
    run.drain()
    with schema_context(schema):
        (alert,) = ModelAlert.objects.filter(version=version)
        assert alert.kind == "drift" and "predicted 'up'" in alert.message and alert.details["labels"]["down"] == 1
    bus.client().delete(f"preds:{schema}:ml.prediction.ready:{ref}")


def test_a_deployed_rl_policys_events_are_watched_and_its_recommendations_notified(alpha, schema):
    from models_registry.models import ModelAlert
    from notifications.models import Event, Subscription
    from tests.models_registry.factories import stored_version

    with schema_context(schema):
        version = stored_version("policy", seed=2)
    ref = version.ref
    r = bus.client()
    r.delete(f"preds:{schema}:rl.signal.generated:{ref}", f"rlconf:{schema}:{ref}")
    ec._rl_subscribed.clear()
    base = {"symbol": "EVC", "timeframe": "1h", "model_version": ref}
    run = Runner([schema])
    try:
        # a policy long on 200 of 200 bars: drift alert, once
        bus.publish_many("rl.signal.generated", [{**base, "ts": i, "action": "BUY"} for i in range(200)], schema=schema)
        # its confidence: 0.35 on average over 100 votes (below the floor)
        bus.publish_many("rl.confidence.update", [{**base, "confidence": 0.35}] * 100, schema=schema)
        # recommendations: nobody subscribed yet -> no notification event
        recs = [{**base, "ts": i, "action": "BUY", "confidence": 0.7} for i in range(3)]
        bus.publish_many("rl.action.recommended", recs, schema=schema)
        run.drain()
        with schema_context(schema):
            alerts = {a.details["source"]: a for a in ModelAlert.objects.filter(version=version)}
            assert set(alerts) == {"rl.signal.generated", "rl.confidence.update"}
            assert "chose 'BUY' for 100%" in alerts["rl.signal.generated"].message
            assert "mean confidence 35%" in alerts["rl.confidence.update"].message
            assert not Event.objects.filter(type="rl.recommendation").exists()
            Subscription.objects.create(user_id=alpha.users["owner"].pk, events=["rl.recommendation"], channel="inapp")
        ec._rl_subscribed.clear()
        bus.publish_many("rl.action.recommended", recs + recs[:1], schema=schema)  # one redelivered
        run.drain()
        with schema_context(schema):
            events = Event.objects.filter(type="rl.recommendation")
            assert events.count() == 3 and events.first().data["model_version"] == ref
    finally:
        r.delete(f"preds:{schema}:rl.signal.generated:{ref}", f"rlconf:{schema}:{ref}")
        ec._rl_subscribed.clear()
