"""Market replay: history as stored, or the series continued live (re-stamped, path-continuous),
published as validated market.data.update events at a set pace."""

import time

import numpy as np
import pytest
from django.core.management import call_command
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence import replay
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table

pytestmark = pytest.mark.django_db


def test_live_events_continue_the_series_after_its_last_bar():
    bars = generate_bars(50, timeframe="1h", seed=3)
    last_ts = int(bars.index[-1].timestamp())
    events = replay.live_events(bars, "X", "1h", after_ts=last_ts, last_close=float(bars["close"].iloc[-1]))
    first = [next(events) for _ in range(120)]  # more than the history: it cycles
    assert [e["ts"] for e in first] == [last_ts + 3600 * (i + 1) for i in range(120)]
    # bar-to-bar returns are history's own, and each bar is consistent
    closes = np.array([float(bars["close"].iloc[-1])] + [e["close"] for e in first[:49]])
    hist = bars["close"].to_numpy()
    np.testing.assert_allclose(closes[1:] / closes[:-1], hist[1:] / hist[:-1], rtol=1e-12)
    assert all(e["low"] <= min(e["open"], e["close"]) <= max(e["open"], e["close"]) <= e["high"] for e in first)


def test_replay_paces_and_publishes(alpha):
    schema = alpha.tenant.schema_name
    key = bus.stream_key("market.data.update", schema)
    bus.client().delete(key)
    try:
        bars = generate_bars(40, timeframe="1m", seed=4)
        t = time.monotonic()
        n = replay.replay(replay.history_events(bars, "X", "1m"), schema=schema, speed=200, batch=5)
        took = time.monotonic() - t
        assert n == 40 and 0.15 < took < 2.0  # 40 bars at 200/s ≈ 0.2 s
        assert bus.stream_info("market.data.update", schema=schema)["length"] == 40
    finally:
        bus.client().delete(key)


def test_the_command_replays_live_bars(alpha, capsys):
    schema = alpha.tenant.schema_name
    key = bus.stream_key("market.data.update", schema)
    bus.client().delete(key)
    try:
        with schema_context(schema):
            raw = read_table(as_csv(generate_bars(30, seed=5)), "csv")
            md_services.bars_import(tenant=alpha.tenant, symbol="RPL", timeframe="1d", raw=raw)
        call_command("replay_market", "--tenant", alpha.slug, "--symbol", "RPL", "--speed", "500", "--limit", "12")
        assert "published 12 bar(s)" in capsys.readouterr().out
        rows = bus.client().xrange(key)
        assert len(rows) == 12
    finally:
        bus.client().delete(key)
