"""The generic event-consumer runner: registered consumers run per tenant schema in their schema,
failures stay pending then dead-letter; and a consumer process killed mid-batch (SIGKILL, after
handling part of a batch, before its ack) loses no event: the next consumer reclaims the batch."""

import os
import signal
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.db import connection

from eventbus import bus, runner
from tests.conftest import service_env

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema():
    name = f"t_run_{uuid.uuid4().hex[:8]}"
    yield name
    for key in bus.client().scan_iter(f"stream:{name}:*"):
        bus.client().delete(key)


def _trade(i: int) -> dict:
    return {"order_id": f"D{i}", "symbol": "X", "side": "BUY", "qty": 1.0, "requested_qty": 1.0, "price": 1.0,
            "fee": 0.0, "ts": i, "partial": False}  # fmt: skip


def test_the_runner_hands_each_batch_to_its_consumer_inside_the_tenant_schema(schema):
    seen = []
    consumer = runner.Registered("trade.executed", "t", lambda entries: seen.extend(
        (connection.schema_name, e.data["order_id"]) for e in entries))  # fmt: skip
    bus.publish_many("trade.executed", [_trade(i) for i in range(5)], schema=schema)
    run = runner.Runner([schema], [consumer], batch=2)
    assert run.drain() == 5
    assert seen == [(schema, f"D{i}") for i in range(5)]
    assert bus.stream_info("trade.executed", schema=schema)["groups"][0]["pending"] == 0


def test_a_failing_consumer_leaves_entries_pending_then_dead_letters_them(schema):
    def broken(entries):
        raise RuntimeError("boom")

    bus.publish("trade.executed", _trade(1), schema=schema)
    run = runner.Runner([schema], [runner.Registered("trade.executed", "t", broken)], claim_idle_ms=0)
    for _ in range(7):
        run.run_once()
    dead = bus.dlq_list(schema=schema)
    assert [d["data"]["order_id"] for d in dead] == ["D1"] and "boom" in dead[0]["error"]
    assert bus.stream_info("trade.executed", schema=schema)["groups"][0]["pending"] == 0


def test_registering_an_unknown_event_fails_at_once():
    with pytest.raises(Exception) as exc:
        runner.consumes("no.such.event", "g")
    assert getattr(exc.value, "code", "") == "unknown_event"


def test_the_registered_consumers_cover_the_decision_side_events():
    groups = {(r.event, r.group) for r in runner.load()}
    assert {("trade.executed", "performance"), ("feedback.prediction.outcome", "performance-feedback"),
            ("performance.update", "risk-limits"), ("ml.threshold.adjusted", "risk-limits"),
            ("ml.risk.limit.update", "apply")} <= groups  # fmt: skip


KILLED = """
import os, signal, sys, django
django.setup()
from eventbus import bus
schema, marker = sys.argv[1], sys.argv[2]
count = {"n": 0}
def handler(entries):
    for e in entries:
        bus.client().sadd(marker, e.id)  # handled (its effect is done) ...
        count["n"] += 1
        if count["n"] == 250:  # ... mid-batch: 50 of the third batch of 100 handled, none of it acked
            os.kill(os.getpid(), signal.SIGKILL)
c = bus.Consumer("trade.executed", "killtest", handler, schema=schema, name="doomed", batch=100)
c.ensure_group()
while True:
    c.run_once(block_ms=100)
"""


def test_a_consumer_killed_mid_batch_loses_no_event(schema):
    ids = bus.publish_many("trade.executed", [_trade(i) for i in range(1000)], schema=schema)
    marker = f"test:{schema}:handled"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, schema, marker],
        cwd=settings.BASE_DIR, env={**os.environ, **service_env()}, capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    handled_by_dead = {i.decode() for i in bus.client().smembers(marker)}
    bus.client().delete(marker)
    group = bus.stream_info("trade.executed", schema=schema)["groups"][0]
    assert len(handled_by_dead) == 250 and group["pending"] == 100  # the killed batch: delivered, never acked
    # a new consumer takes the dead one's pending batch over, then reads the rest
    seen = []
    successor = bus.Consumer("trade.executed", "killtest", lambda b: seen.extend(e.id for e in b), schema=schema,
                             name="successor", batch=100, claim_idle_ms=0)  # fmt: skip
    while successor.run_once(block_ms=10):
        pass
    assert set(ids) == handled_by_dead | set(seen)  # every event handled; the 50 of the killed batch twice
    assert len(set(seen) & handled_by_dead) == 50 and len(seen) == len(set(seen)) == 800
    group = bus.stream_info("trade.executed", schema=schema)["groups"][0]
    assert group["pending"] == 0 and group["lag"] == 0


def test_run_event_consumers_drains_a_tenants_events_once(alpha):
    from django.core.management import call_command

    from tests.intelligence.helpers import clear_streams

    schema = alpha.tenant.schema_name
    clear_streams(schema)
    bus.publish("trade.executed", _trade(1), schema=schema)
    call_command("run_event_consumers", "--tenant", alpha.tenant.slug, "--once")
    assert bus.stream_info("performance.update", schema=schema)["length"] >= 1  # the snapshot the fill caused
    groups = {g["name"]: g for g in bus.stream_info("trade.executed", schema=schema)["groups"]}
    assert groups["performance"]["pending"] == 0 and groups["performance"]["lag"] == 0
    clear_streams(schema)
    bus.client().delete(f"risk:{schema}:limits")
