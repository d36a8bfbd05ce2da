"""Market replay: stored bars published as ``market.data.update`` events at a chosen pace.

Two modes:
- ``history``: the stored bars as they are (from ``start``), for re-running a period;
- ``live`` (the demo's): the stored series continues into the future: bar after bar is taken from
  history (cycling) and re-stamped after the last bar, its prices scaled so the path continues from
  the last close. The decision stream stores these bars like any feed's, so features, outcomes and
  the dashboard see one continuous market.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from api.errors import ApplicationError
from eventbus import bus
from marketdata.models import TIMEFRAME_SECONDS


def bar_event(symbol: str, timeframe: str, ts: int, o: float, h: float, lo: float, c: float, v: float) -> dict:
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "ts": int(ts),
        "open": float(o),
        "high": float(h),
        "low": float(lo),
        "close": float(c),
        "volume": float(v),
        "source": "replay",
    }


def _epoch(index: pd.DatetimeIndex) -> np.ndarray:
    return index.as_unit("ns").asi8 // 1_000_000_000


def history_events(bars: pd.DataFrame, symbol: str, timeframe: str) -> Iterator[dict]:
    cols = [bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
    for ts, *ohlcv in zip(_epoch(bars.index), *cols, strict=True):
        yield bar_event(symbol, timeframe, ts, *ohlcv)


def live_events(bars: pd.DataFrame, symbol: str, timeframe: str, *, after_ts: int, last_close: float) -> Iterator[dict]:
    """Endless bars after ``after_ts``: history's bar-to-bar moves replayed from ``last_close``."""
    if len(bars) < 2:
        raise ApplicationError("not_enough_data", f"{symbol} {timeframe} needs at least 2 stored bars to replay.")
    step = TIMEFRAME_SECONDS[timeframe]
    o, h, lo, c, v = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    prev = np.r_[c[-1], c[:-1]]  # each bar relative to the close before it
    ts, close = after_ts, last_close
    for i in itertools.cycle(range(1, len(bars))):
        ratio = close / prev[i]
        ts += step
        bar = bar_event(symbol, timeframe, ts, o[i] * ratio, h[i] * ratio, lo[i] * ratio, c[i] * ratio, v[i])
        close = bar["close"]
        yield bar


def replay(
    events: Iterator[dict],
    *,
    schema: str,
    speed: float,
    limit: int | None = None,
    batch: int = 1,
    stop: Callable[[], bool] = lambda: False,
    on_publish: Callable[[int], None] | None = None,
) -> int:
    """Publish ``events`` at ``speed`` bars per second (in batches of ``batch``); returns the count."""
    if speed <= 0:
        raise ApplicationError("invalid_speed", "speed is bars per second, greater than 0.")
    sent = 0
    started = time.monotonic()
    chunk: list[dict] = []
    for event in events:
        if limit is not None and sent + len(chunk) >= limit:
            break
        chunk.append(event)
        if len(chunk) < batch:
            continue
        sent += _flush(chunk, schema)
        if on_publish:
            on_publish(sent)
        if stop():
            return sent
        delay = started + sent / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return sent + _flush(chunk, schema)


def _flush(chunk: list[dict], schema: str) -> int:
    if not chunk:
        return 0
    bus.publish_many("market.data.update", chunk, schema=schema)
    n = len(chunk)
    chunk.clear()
    return n


# --- every tenant's live replays in one process (``replay_market --all``) ---------------------------


class _Source:
    __slots__ = ("schema", "pk", "symbol", "timeframe", "speed", "events", "started", "sent")

    def __init__(self, schema: str, pk: int, symbol: str, timeframe: str, speed: float, events: Iterator[dict]):
        self.schema, self.pk, self.symbol, self.timeframe = schema, pk, symbol, timeframe
        self.speed, self.events = speed, events
        self.started, self.sent = time.monotonic(), 0

    def due(self, now: float) -> int:
        return int((now - self.started) * self.speed) - self.sent


class ReplayHub:
    """The enabled ``marketdata.LiveReplay`` rows of every active tenant, each published at its own
    pace. Rows are re-read every ``refresh`` seconds: a replay turned on (the onboarding's sample
    data) starts within that, one turned off stops, a changed speed applies. A series that cannot
    continue (no bars any more) is reported once and retried at the next refresh."""

    def __init__(self, *, tenant: str | None = None, refresh: float = 5.0, max_batch: int = 100, log=None):
        self.tenant, self.refresh_every, self.max_batch = tenant, refresh, max_batch
        self.sources: dict[tuple[str, int], _Source] = {}
        self.published = 0
        self._log = log or (lambda message: None)
        self._failed: set[tuple[str, int]] = set()

    def refresh(self) -> None:
        from django_tenants.utils import schema_context

        from marketdata import selectors as md
        from marketdata.models import LiveReplay
        from tenants.models import Tenant

        wanted: dict[tuple[str, int], LiveReplay] = {}
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
        if self.tenant:
            tenants = tenants.filter(slug=self.tenant)
        for schema in tenants.values_list("schema_name", flat=True):
            with schema_context(schema):
                for row in LiveReplay.objects.filter(enabled=True).select_related("instrument"):
                    wanted[(schema, row.pk)] = row
        for key in set(self.sources) - set(wanted):
            src = self.sources.pop(key)
            self._log(f"stopped {src.schema} {src.symbol} {src.timeframe}")
        for key, row in wanted.items():
            src = self.sources.get(key)
            if src is not None:
                if src.speed != row.speed:  # a new pace from now on
                    src.speed, src.started, src.sent = row.speed, time.monotonic(), 0
                continue
            schema = key[0]
            try:
                with schema_context(schema):
                    bars = md.bars_frame(instrument=row.instrument, timeframe=row.timeframe, limit=5000)
                if len(bars) < 2:
                    raise ApplicationError("not_enough_data", "fewer than 2 stored bars")
            except ApplicationError as exc:
                if key not in self._failed:
                    self._log(f"cannot continue {schema} {row.instrument.symbol} {row.timeframe}: {exc.message}")
                    self._failed.add(key)
                continue
            self._failed.discard(key)
            events = live_events(
                bars,
                row.instrument.symbol,
                row.timeframe,
                after_ts=int(bars.index[-1].timestamp()),
                last_close=float(bars["close"].iloc[-1]),
            )
            self.sources[key] = _Source(schema, row.pk, row.instrument.symbol, row.timeframe, row.speed, events)
            self._log(f"started {schema} {row.instrument.symbol} {row.timeframe} at {row.speed:g} bars/s")

    def step(self, now: float | None = None) -> int:
        """Publish what is due now; returns how many bars."""
        now = time.monotonic() if now is None else now
        by_schema: dict[str, list[dict]] = {}
        for src in self.sources.values():
            n = min(src.due(now), self.max_batch)
            if n > 0:
                by_schema.setdefault(src.schema, []).extend(itertools.islice(src.events, n))
                src.sent += n
        count = 0
        for schema, chunk in by_schema.items():
            bus.publish_many("market.data.update", chunk, schema=schema)
            count += len(chunk)
        self.published += count
        return count

    def next_due(self, now: float) -> float:
        """Seconds until the next bar of any source (at most 1)."""
        waits = [(src.sent + 1) / src.speed - (now - src.started) for src in self.sources.values()]
        return max(0.0, min([1.0, *waits]))

    def run(self, *, stop: Callable[[], bool] = lambda: False, on_publish: Callable[[int], None] | None = None) -> int:
        next_refresh = 0.0
        while not stop():
            now = time.monotonic()
            if now >= next_refresh:
                try:
                    self.refresh()
                except Exception as exc:  # the database away: keep publishing what runs, retry later
                    self._log(f"could not read the replays ({type(exc).__name__}: {exc}); retrying")
                    from django.db import close_old_connections

                    close_old_connections()
                next_refresh = now + self.refresh_every
            if self.step(now) and on_publish:
                on_publish(self.published)
            time.sleep(min(self.next_due(time.monotonic()), max(0.0, next_refresh - time.monotonic())))
        return self.published
