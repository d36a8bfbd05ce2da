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
