"""Feature computation: ``compute_batch`` for history (training, backfills, the CLI) and
``IncrementalEngine`` for live bars, built so that the two agree to <= 1e-9 relative after warm-up.

Time convention (see :mod:`features.timeframes`): the index / ``ts`` is each bar's OPEN time in UTC
and a bar's features are computed at its close, ``ts + base timeframe``. A higher-timeframe
feature (``"timeframe": "1d"`` on 1h bars) is computed on bars resampled into epoch-aligned
buckets and mapped back without lookahead: the base bar opened at ``t`` sees the value of the
last higher bar whose bucket ``[T, T + H)`` has ended by ``t + base``. On 1h bars, the 23:00 bar
is the first to see that day's daily RSI; every bar of the next day sees it until the next 23:00.
The first bucket is discarded when the data starts inside it (its open would be wrong); buckets
with missing base bars are built from the bars that exist and complete when their time is up.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from api.errors import ApplicationError
from features.indicators import BAR_COLUMNS, Bars
from features.spec import FeatureEntry, FeatureSpec
from features.timeframes import TIMEFRAMES

_INF = math.inf
_NAN = math.nan


# --- batch ---------------------------------------------------------------------------------------


def compute_batch(bars: pd.DataFrame, spec: FeatureSpec, base_timeframe: str, *, direct: bool = False) -> pd.DataFrame:
    """Features for every bar: same index as ``bars``, one column per ``spec.columns()``, NaN during
    each column's warm-up. ``bars`` has float columns open/high/low/close/volume and a strictly
    increasing DatetimeIndex of bar open times (naive timestamps are taken as UTC).

    ``direct=True`` makes the TA-Lib calls pandas-ta would make, on the arrays (bit-identical, see
    ``Indicator.direct``): for request-sized inputs, where pandas-ta's wrappers are most of the cost."""
    spec.validate(base_timeframe)
    base_s = TIMEFRAMES[base_timeframe]
    arrays = bars_arrays(bars)
    epoch = None
    if spec.has_higher_timeframes():
        epoch, fraction = _epoch_seconds(bars.index)
        misaligned = np.flatnonzero((epoch % base_s) | fraction)
        if misaligned.size:
            raise ApplicationError(
                "invalid_bars",
                f"Bar at {bars.index[misaligned[0]]} is not aligned to {base_timeframe} bar boundaries; "
                "higher-timeframe features need bars labelled by their open time on the base grid.",
            )
    data: dict[str, np.ndarray] = {}
    for entry in spec.features:
        values = _entry_values(entry, arrays, epoch, base_s, direct)
        for key in entry.outputs:
            col = entry.output_column(key)
            x = values[key]
            data[col] = x
            for k in entry.lags:
                data[f"{col}_lag{k}"] = _shift(x, k)
            if "diff" in entry.transforms:
                data[f"{col}_diff"] = x - _shift(x, 1)
    return pd.DataFrame(data, index=bars.index, columns=spec.columns())


def bars_arrays(bars: pd.DataFrame) -> Bars:
    """Validated OHLCV arrays; errors name the first offending bar."""
    if not isinstance(bars, pd.DataFrame):
        raise ApplicationError("invalid_bars", "Bars must be a pandas DataFrame.")
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ApplicationError(
            "invalid_bars",
            f"Bars are missing column(s) {', '.join(missing)}; need {', '.join(BAR_COLUMNS)}.",
            {"missing": missing},
        )
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ApplicationError("invalid_bars", "Bars must be indexed by a DatetimeIndex of bar open times (UTC).")
    if len(bars) > 1:
        steps = np.diff(bars.index.asi8)
        bad = np.flatnonzero(steps <= 0)
        if bad.size:
            i = bad[0] + 1
            raise ApplicationError(
                "invalid_bars",
                f"Bar timestamps must be strictly increasing; {bars.index[i]} follows {bars.index[i - 1]}.",
            )
    try:
        arrays = Bars.from_frame(bars)
    except (TypeError, ValueError) as exc:
        raise ApplicationError("invalid_bars", f"Bar columns must be numeric: {exc}") from exc
    for name in BAR_COLUMNS:
        x = getattr(arrays, name)
        ok = np.isfinite(x) & ((x >= 0.0) if name == "volume" else (x > 0.0))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            rule = "finite and >= 0" if name == "volume" else "finite and > 0"
            raise ApplicationError(
                "invalid_bars",
                f"Column {name} must be {rule}; bar {bars.index[i]} has {x[i]!r}.",
                {"column": name, "row": i},
            )
    return arrays


def _epoch_seconds(index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Whole epoch seconds (naive timestamps read as UTC) and the sub-second remainders."""
    ns = index.as_unit("ns").asi8
    return ns // 1_000_000_000, ns % 1_000_000_000


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.empty_like(x)
    out[:k] = np.nan
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _entry_values(entry: FeatureEntry, arrays: Bars, epoch: np.ndarray | None, base_s: int, direct: bool) -> dict:
    definition = entry.definition
    params = entry.param_dict
    if not entry.timeframe or TIMEFRAMES[entry.timeframe] == base_s:
        return definition.values(arrays, params, direct=direct)
    higher_s = TIMEFRAMES[entry.timeframe]
    n = len(epoch)
    if n == 0:
        return {key: np.empty(0) for key in definition.output_keys}
    bucket = epoch - epoch % higher_s
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    if epoch[0] != bucket[0]:
        starts = starts[1:]  # the data starts inside this bucket: its bar would be partial
    if starts.size == 0:
        return {key: np.full(n, np.nan) for key in definition.output_keys}
    ends = np.r_[starts[1:], n] - 1
    higher = Bars(
        arrays.open[starts],
        np.maximum.reduceat(arrays.high, starts),
        np.minimum.reduceat(arrays.low, starts),
        arrays.close[ends],
        np.add.reduceat(arrays.volume, starts),
    )
    values = definition.values(higher, params, direct=direct)
    complete_at = bucket[starts] + higher_s
    seen = np.searchsorted(complete_at, epoch + base_s, side="right") - 1  # last complete higher bar
    visible = seen >= 0
    take = np.where(visible, seen, 0)
    return {key: np.where(visible, v[take], np.nan) for key, v in values.items()}


# --- incremental ---------------------------------------------------------------------------------


class IncrementalEngine:
    """Feature vectors bar by bar, O(1) per bar, equal to ``compute_batch`` on the same history.

    ``update`` returns None for exactly the first ``warmup`` bars (a model never sees NaN), then a
    tuple ordered as ``columns`` (or a dict with ``as_dict=True``). A bar that is out of order or
    not finite/positive is rejected with ApplicationError before any state changes.
    """

    def __init__(self, spec: FeatureSpec, base_timeframe: str, *, as_dict: bool = False):
        spec.validate(base_timeframe)
        self.spec = spec
        self.base_timeframe = base_timeframe
        self.columns: tuple[str, ...] = tuple(spec.columns())
        self.warmup: int = spec.warmup(base_timeframe)
        self._base_s = TIMEFRAMES[base_timeframe]
        self._aligned = spec.has_higher_timeframes()
        self._clock = [0]  # the current bar's open time, read by higher-timeframe resamplers
        self._as_dict = as_dict
        self._buf = [_NAN] * len(self.columns)
        self._steps = []
        pos = 0
        for entry in spec.features:
            step, pos = _build_step(entry, pos, self._base_s, self._clock)
            self._steps.append(step)
        self._count = 0
        self._last_ts: int | float | None = None

    @property
    def bars_seen(self) -> int:
        return self._count

    @property
    def ready(self) -> bool:
        return self._count > self.warmup

    def update(self, ts: Any, open: float, high: float, low: float, close: float, volume: float):  # noqa: A002
        """Feed one CLOSED bar. ``ts`` is its open time: epoch seconds (an int is the fast path) or a
        datetime (naive means UTC)."""
        t = ts if type(ts) is int else _to_epoch(ts)
        last = self._last_ts
        if last is not None and t <= last:
            raise ApplicationError(
                "bar_out_of_order", f"Bar at {t} does not follow the previous bar at {last}; bars must arrive in order."
            )
        o = float(open)
        h = float(high)
        lo = float(low)
        c = float(close)
        v = float(volume)
        if not (0.0 < o < _INF and 0.0 < h < _INF and 0.0 < lo < _INF and 0.0 < c < _INF and 0.0 <= v < _INF):
            raise ApplicationError(
                "invalid_bar", f"Bar at {t} has a non-finite or non-positive value: {(o, h, lo, c, v)!r}."
            )
        if self._aligned:
            if t % self._base_s:
                raise ApplicationError(
                    "invalid_bar", f"Bar at {t} is not on the {self.base_timeframe} grid (open times, UTC)."
                )
            self._clock[0] = int(t)
        self._last_ts = t
        buf = self._buf
        for step in self._steps:
            step(o, h, lo, c, v, buf)
        self._count = n = self._count + 1
        if n <= self.warmup:
            return None
        if self._as_dict:
            return dict(zip(self.columns, buf, strict=True))
        return tuple(buf)


def _to_epoch(ts: Any) -> int | float:
    if isinstance(ts, datetime):  # includes pandas.Timestamp
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        t = ts.timestamp()
    elif isinstance(ts, np.datetime64):
        t = ts.astype("datetime64[ns]").astype(np.int64) / 1e9
    elif isinstance(ts, int | float | np.integer | np.floating) and not isinstance(ts, bool):
        t = float(ts)
    else:
        t = math.nan
    if not math.isfinite(t):
        raise ApplicationError("invalid_bar", f"Bar timestamp must be epoch seconds or a datetime, got {ts!r}.")
    return int(t) if t == int(t) else t


class _Resampled:
    """Builds the current higher-timeframe bar from base bars; the wrapped indicator steps only
    when a bucket completes, so a base bar never sees a higher bar that is still forming."""

    __slots__ = ("push_inner", "clock", "base", "higher", "bucket", "first", "skip", "o", "h", "l", "c", "v", "last")

    def __init__(self, stream: Any, n_outputs: int, base_s: int, higher_s: int, clock: list):
        self.push_inner = stream.push
        self.clock = clock
        self.base = base_s
        self.higher = higher_s
        self.bucket: int | None = None
        self.first = True
        self.skip = False
        self.o = self.h = self.l = self.c = self.v = 0.0
        self.last = (_NAN,) * n_outputs

    def push(self, o, h, l, c, v):  # noqa: E741
        t = self.clock[0]
        higher = self.higher
        b = t - t % higher
        if self.bucket is not None and b != self.bucket:
            self._complete()  # its last base bars never came (a gap): its time is up all the same
        if self.bucket is None:
            self.bucket = b
            self.o, self.h, self.l, self.c, self.v = o, h, l, c, v
            if self.first:
                self.first = False
                self.skip = t != b
        else:
            if h > self.h:
                self.h = h
            if l < self.l:
                self.l = l
            self.c = c
            self.v += v
        if t + self.base >= b + higher:
            self._complete()
        return self.last

    def _complete(self) -> None:
        if self.skip:
            self.skip = False
        else:
            self.last = self.push_inner(self.o, self.h, self.l, self.c, self.v)
        self.bucket = None


def _build_step(entry: FeatureEntry, start: int, base_s: int, clock: list):
    """A closure writing this feature's columns into the engine's output buffer for one bar."""
    definition = entry.definition
    stream = definition.stream(entry.param_dict)
    keys = definition.output_keys
    if entry.timeframe and TIMEFRAMES[entry.timeframe] > base_s:
        push = _Resampled(stream, len(keys), base_s, TIMEFRAMES[entry.timeframe], clock).push
    else:
        push = stream.push
    sel = [keys.index(k) for k in entry.outputs]
    width = len(entry.columns())
    stop = start + width

    if not entry.lags and not entry.transforms:
        first = sel[0]
        if sel == list(range(len(keys))):

            def step(o, h, l, c, v, buf):  # noqa: E741
                buf[start:stop] = push(o, h, l, c, v)

        elif len(sel) == 1:

            def step(o, h, l, c, v, buf):  # noqa: E741
                buf[start] = push(o, h, l, c, v)[first]

        elif sel == list(range(first, first + len(sel))):
            last = first + len(sel)

            def step(o, h, l, c, v, buf):  # noqa: E741
                buf[start:stop] = push(o, h, l, c, v)[first:last]

        else:
            picks = tuple((start + j, i) for j, i in enumerate(sel))

            def step(o, h, l, c, v, buf):  # noqa: E741
                r = push(o, h, l, c, v)
                for dst, src in picks:
                    buf[dst] = r[src]

        return step, stop

    lags = entry.lags
    diff = "diff" in entry.transforms
    per_output = 1 + len(lags) + diff
    history: deque[tuple] = deque(maxlen=max((*lags, 1)) + 1)
    layout = []
    for j, src in enumerate(sel):
        base = start + j * per_output
        lag_slots = tuple((base + 1 + m, k) for m, k in enumerate(lags))
        layout.append((j, src, base, lag_slots, base + 1 + len(lags) if diff else -1))

    def step(o, h, l, c, v, buf):  # noqa: E741
        r = push(o, h, l, c, v)
        history.append(r)
        depth = len(history)
        for _j, src, base, lag_slots, diff_slot in layout:
            x = r[src]
            buf[base] = x
            for slot, k in lag_slots:
                buf[slot] = history[-1 - k][src] if depth > k else _NAN
            if diff_slot >= 0:
                buf[diff_slot] = x - history[-2][src] if depth > 1 else _NAN

    return step, stop
