"""The event pipeline (issue 13): figures, never pass/fail.

- broker: the paper broker's execution path in-process, per actionable decision: the order for the
  difference to the target, the simulated execution (spread, latency-driven slippage, partial
  fills), the fill applied to the paper position with the ledger's P&L, and the trade / position
  event payloads built; p50 / p99 over 20,000 decisions (target: p99 <= 1.2 ms). Also printed:
  the same path validated and published to Redis (one ``publish_many`` per event type), per order.
- bus: ``publish_many`` in batches of 500 -> a consumer group (``Consumer.run_once``, batches of
  500) -> handler -> ``XACK``; events per second end to end over 50,000 ``trade.executed`` events
  (target: >= 5,000 events/s), publishing and consuming interleaved in one process.

Run alone with ``python -m benchmarks.events``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def _trade(i: int) -> dict:
    return {
        "order_id": f"D{i}", "symbol": "BENCH", "side": "BUY", "qty": 1.5, "requested_qty": 2.0, "price": 100.0 + i % 7,
        "fee": 0.1, "ts": 1_700_000_000 + i, "partial": True, "decision_id": i, "spread_bps": 2.0, "latency_ms": 20.0,
    }  # fmt: skip


def bench_broker() -> None:
    import django

    django.setup()
    from eventbus import bus
    from intelligence.broker import PaperBroker, execute_decision, publish_events
    from intelligence.ledger import LedgerConfig
    from intelligence.models import Decision, Position

    cfg = LedgerConfig(equity=100_000.0, fee_bps=10.0)
    broker = PaperBroker(spread_bps=2.0, latency_ms=20.0, partial_prob=0.1)
    pos = Position(symbol="BENCH", peak_equity=cfg.equity)
    ts = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    actions = ("BUY", "SELL", "BUY", "HOLD")
    decisions = [
        Decision(pk=i + 1, source="stream", symbol="BENCH", timeframe="1h", ts=ts, action=actions[i % 4],
                 confidence=0.6, size=0.2 + (i % 5) / 10)
        for i in range(20_000)
    ]  # fmt: skip
    times, events = [], []
    for i, d in enumerate(decisions):
        price = 100.0 + (i % 50) / 10
        events.clear()
        t = time.perf_counter()
        execute_decision(broker, pos, d, price, cfg, events)
        times.append(time.perf_counter() - t)
    print(
        f"broker execute     p50 {_pct(times, 0.5):6.3f} ms   p99 {_pct(times, 0.99):6.3f} ms   "
        f"(order -> paper fill -> ledger P&L -> events, in-process; 20,000 decisions)"
    )
    schema = f"bench_ev_{uuid.uuid4().hex[:6]}"
    try:
        times = []
        for i, d in enumerate(decisions[:2000]):
            events = []
            t = time.perf_counter()
            execute_decision(broker, pos, d, 100.0 + (i % 50) / 10, cfg, events)
            if events:
                publish_events(events, schema)
            times.append(time.perf_counter() - t)
        print(
            f"broker + publish   p50 {_pct(times, 0.5):6.3f} ms   p99 {_pct(times, 0.99):6.3f} ms   "
            f"(the same, events validated and sent to Redis, per decision)"
        )
    finally:
        for key in bus.client().scan_iter(f"stream:{schema}:*"):
            bus.client().delete(key)


def bench_bus(total: int = 50_000, batch: int = 500) -> None:
    import django

    django.setup()
    from eventbus import bus

    schema = f"bench_bus_{uuid.uuid4().hex[:6]}"
    handled = 0

    def handler(entries):
        nonlocal handled
        handled += len(entries)

    consumer = bus.Consumer("trade.executed", "bench", handler, schema=schema, batch=batch)
    consumer.ensure_group()
    items = [_trade(i) for i in range(batch)]
    try:
        t = time.perf_counter()
        published = 0
        while published < total:
            bus.publish_many("trade.executed", items, schema=schema)
            published += batch
            consumer.run_once(block_ms=1)
        while handled < total:
            if not consumer.run_once(block_ms=10):
                break
        took = time.perf_counter() - t
        pending = bus.stream_info("trade.executed", schema=schema)["groups"][0]["pending"]
        print(
            f"event bus          {handled / took:9,.0f} events/s   (publish -> consumer group -> ack, "
            f"{handled:,} of {total:,} handled, {pending} pending, batches of {batch})"
        )
    finally:
        for key in bus.client().scan_iter(f"stream:{schema}:*"):
            bus.client().delete(key)


def bench_events() -> None:
    bench_broker()
    bench_bus()


if __name__ == "__main__":
    bench_events()
