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


def _series(fx, symbol, n=30, seed=5):
    with schema_context(fx.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(n, seed=seed)), "csv")
        md_services.bars_import(tenant=fx.tenant, symbol=symbol, timeframe="1d", raw=raw)


def test_the_hub_publishes_every_tenants_enabled_replays_at_their_own_pace(alpha, beta):
    from marketdata.models import Bar

    keys = [bus.stream_key("market.data.update", fx.tenant.schema_name) for fx in (alpha, beta)]
    bus.client().delete(*keys)
    try:
        _series(alpha, "AAA")
        _series(alpha, "OFF", seed=6)
        _series(beta, "BBB", seed=7)
        with schema_context(alpha.tenant.schema_name):
            md_services.live_replay_set(symbol="AAA", timeframe="1d", speed=4, actor="t")
            md_services.live_replay_set(symbol="OFF", timeframe="1d", speed=4, actor="t")
            md_services.live_replay_set(symbol="OFF", timeframe="1d", enabled=False, actor="t")
            last = Bar.objects.filter(instrument__symbol="AAA").order_by("-ts").first()
        with schema_context(beta.tenant.schema_name):
            md_services.live_replay_set(symbol="BBB", timeframe="1d", speed=2, actor="t")
        hub = replay.ReplayHub()
        hub.refresh()
        mine = {
            (s, src.symbol)
            for (s, _), src in hub.sources.items()
            if s in {alpha.tenant.schema_name, beta.tenant.schema_name}
        }
        assert mine == {(alpha.tenant.schema_name, "AAA"), (beta.tenant.schema_name, "BBB")}
        for src in hub.sources.values():
            src.started = 0.0  # a fixed clock: 2.5 s after the start
        hub.step(now=2.5)
        assert len(bus.client().xrange(keys[0])) == 10 and len(bus.client().xrange(keys[1])) == 5  # 4/s and 2/s
        # the series continues after its last stored bar, a day at a time
        events = [replay_event(f) for _, f in bus.client().xrange(keys[0])]
        assert [e["ts"] for e in events] == [int(last.ts.timestamp()) + 86400 * (i + 1) for i in range(10)]
        assert {e["symbol"] for e in events} == {"AAA"}
        hub.step(now=2.5)  # nothing more is due yet
        assert len(bus.client().xrange(keys[0])) == 10
        # turned off: gone at the next refresh; a new speed applies from then on
        with schema_context(alpha.tenant.schema_name):
            md_services.live_replay_set(symbol="AAA", timeframe="1d", enabled=False, actor="t")
        with schema_context(beta.tenant.schema_name):
            md_services.live_replay_set(symbol="BBB", timeframe="1d", speed=10, actor="t")
        hub.refresh()
        assert (alpha.tenant.schema_name, "AAA") not in {(s, src.symbol) for (s, _), src in hub.sources.items()}
        (bbb,) = [src for src in hub.sources.values() if src.symbol == "BBB"]
        assert bbb.speed == 10
    finally:
        bus.client().delete(*keys)


def replay_event(fields):
    import json

    return json.loads(fields[b"e"])["data"]


def test_live_replay_set_checks_its_input(alpha):
    from api.errors import ApplicationError
    from compliance.models import AuditRecord

    _series(alpha, "AAA")
    with schema_context(alpha.tenant.schema_name):
        for kwargs, code in (
            ({"symbol": "AAA", "timeframe": "7d"}, "invalid_timeframe"),
            ({"symbol": "AAA", "timeframe": "1d", "speed": 0}, "invalid_speed"),
            ({"symbol": "AAA", "timeframe": "1d", "speed": 1000}, "invalid_speed"),
            ({"symbol": "NOPE", "timeframe": "1d"}, "instrument_not_found"),
            ({"symbol": "AAA", "timeframe": "1h"}, "not_enough_data"),
        ):
            with pytest.raises(ApplicationError) as exc:
                md_services.live_replay_set(actor="t", **kwargs)
            assert exc.value.code == code
        from marketdata.models import LiveReplay

        assert (
            not LiveReplay.objects.exists()
            and not AuditRecord.objects.filter(action__startswith="live_replay").exists()
        )
        md_services.live_replay_set(symbol="aaa", timeframe="1d", actor="t")
        md_services.live_replay_set(symbol="AAA", timeframe="1d", actor="t")  # unchanged: no second record
        assert AuditRecord.objects.filter(action="live_replay.started").count() == 1


def test_the_all_command_runs_the_hub_until_stopped(alpha, monkeypatch, capsys):
    _series(alpha, "AAA")
    with schema_context(alpha.tenant.schema_name):
        md_services.live_replay_set(symbol="AAA", timeframe="1d", speed=50, actor="t")
    key = bus.stream_key("market.data.update", alpha.tenant.schema_name)
    bus.client().delete(key)
    calls = []

    def stop_after_a_few(self, *, stop, on_publish=None):
        self.refresh()
        for src in self.sources.values():
            src.started -= 1.0  # a second has passed
        calls.append(self.step())
        return self.published

    monkeypatch.setattr(replay.ReplayHub, "run", stop_after_a_few)
    try:
        call_command("replay_market", "--all", "--tenant", alpha.slug)
        out = capsys.readouterr().out
        assert f"started {alpha.tenant.schema_name} AAA 1d at 50 bars/s" in out
        assert calls[0] >= 50 and len(bus.client().xrange(key)) == calls[0]
        assert f"published {calls[0]} bar(s)" in out
    finally:
        bus.client().delete(key)
