"""Reads for market data: instruments, their coverage, bar ranges as arrays, statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import Count, Max, Min, QuerySet

from api.errors import ApplicationError, NotFound

from .models import TIMEFRAME_SECONDS, Bar, Instrument
from .services import _PG_EPOCH_US, symbol_clean

_BAR_TABLE = Bar._meta.db_table


def instrument_list() -> QuerySet[Instrument]:
    return Instrument.objects.order_by("symbol")


def instrument_get(*, symbol: str | None = None, pk: int | None = None) -> Instrument:
    qs = Instrument.objects.all()
    instrument = qs.filter(pk=pk).first() if pk is not None else qs.filter(symbol=symbol_clean(symbol)).first()
    if instrument is None:
        raise NotFound("instrument", {"symbol": symbol} if symbol else {})
    return instrument


_timeframes: dict[tuple, list[str]] = {}  # (schema, instrument, bars_version) -> timeframes with bars


def only_timeframe(*, instrument: Instrument, hint: str = "say which timeframe") -> str:
    """The one timeframe ``instrument`` has bars in; ``timeframe_required`` (with ``hint`` on what
    to do) when it has none or several."""
    key = (connection.schema_name, instrument.pk, instrument.bars_version)
    stored = _timeframes.get(key)
    if stored is None:  # bars_version moves with every import and delete: an entry is never stale
        stored = [c["timeframe"] for c in coverage(instrument_ids=[instrument.pk]).get(instrument.pk, [])]
        if len(_timeframes) > 10_000:
            _timeframes.clear()
        _timeframes[key] = stored
    if len(stored) != 1:
        raise ApplicationError(
            "timeframe_required",
            f"{instrument.symbol} has bars in {', '.join(stored) or 'no timeframe'}; {hint}.",
            {"timeframes": stored},
        )
    return stored[0]


def coverage(*, instrument_ids: list[int] | None = None) -> dict[int, list[dict]]:
    """Per instrument: one entry per timeframe with bar count and first/last bar time."""
    qs = Bar.objects.all()
    if instrument_ids is not None:
        qs = qs.filter(instrument_id__in=instrument_ids)
    rows = qs.values("instrument_id", "timeframe").annotate(bars=Count("ts"), first=Min("ts"), last=Max("ts"))
    out: dict[int, list[dict]] = {}
    order = list(TIMEFRAME_SECONDS)
    for r in sorted(rows, key=lambda r: (r["instrument_id"], order.index(r["timeframe"]))):
        out.setdefault(r["instrument_id"], []).append(
            {"timeframe": r["timeframe"], "bars": r["bars"], "first": r["first"], "last": r["last"]}
        )
    return out


def _check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAME_SECONDS:
        raise ApplicationError(
            "invalid_timeframe", f"Unknown timeframe '{timeframe}'.", {"choices": list(TIMEFRAME_SECONDS)}
        )


def bars_frame(
    *, instrument: Instrument, timeframe: str, start=None, end=None, limit: int | None = None
) -> pd.DataFrame:
    """Bars in [start, end] (open times, UTC) as a float64 DataFrame indexed by time — read straight
    into arrays, no model instances (a million bars in well under a second)."""
    _check_timeframe(timeframe)
    sql = [f"SELECT ts, open, high, low, close, volume FROM {_BAR_TABLE} WHERE instrument_id = %s AND timeframe = %s"]
    params: list = [instrument.pk, timeframe]
    if start is not None:
        sql.append("AND ts >= %s")
        params.append(start)
    if end is not None:
        sql.append("AND ts <= %s")
        params.append(end)
    if limit:
        # the most recent ``limit`` bars, still returned oldest first
        sql = ["SELECT * FROM (", *sql, "ORDER BY ts DESC LIMIT %s) last ORDER BY ts"]
        params.append(limit)
    else:
        sql.append("ORDER BY ts")
    with connection.cursor() as cur:
        with cur.copy(f"COPY ({' '.join(sql)}) TO STDOUT WITH (FORMAT binary)", params) as copy:
            data = b"".join(bytes(block) for block in copy)
    return _frame_from_copy(data)


_COLUMNS = ("open", "high", "low", "close", "volume")
_ROW = np.dtype(
    [("n", ">i2"), ("l_ts", ">i4"), ("ts", ">i8")] + [f for c in _COLUMNS for f in ((f"l_{c}", ">i4"), (c, ">f8"))]
)
_HEADER_LEN = 19  # signature (11) + flags (4) + header extension length (4, zero)


def _frame_from_copy(data: bytes) -> pd.DataFrame:
    """Parse PostgreSQL's binary COPY output (fixed-width rows: no NULLs in bars) with numpy: a
    million bars in ~0.1 s where fetching row tuples took seconds."""
    body = data[_HEADER_LEN:-2] if data else b""
    rows = np.frombuffer(body, dtype=_ROW)
    ns = (rows["ts"].astype("int64") + _PG_EPOCH_US) * 1000
    index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name="ts")
    return pd.DataFrame({c: rows[c].astype("float64") for c in _COLUMNS}, index=index)


def bars_statistics(*, instrument: Instrument, timeframe: str) -> dict:
    """Rows, range, gaps and missing bars, and the distribution of log returns."""
    frame = bars_frame(instrument=instrument, timeframe=timeframe)
    step = TIMEFRAME_SECONDS[timeframe]
    out: dict = {"symbol": instrument.symbol, "timeframe": timeframe, "rows": len(frame)}
    if frame.empty:  # nothing stored yet: say so in numbers, not with a 404 (the instrument exists)
        return {
            **out,
            "start": None,
            "end": None,
            "expected_bars": 0,
            "missing_bars": 0,
            "gap_count": 0,
            "largest_gap_bars": 0,
        }
    epoch = frame.index.as_unit("ns").asi8 // 1_000_000_000
    diffs = np.diff(epoch)
    gaps = np.flatnonzero(diffs > step)
    expected = int((epoch[-1] - epoch[0]) // step + 1)
    out.update(
        start=frame.index[0].isoformat(),
        end=frame.index[-1].isoformat(),
        expected_bars=expected,
        missing_bars=expected - len(frame),
        gap_count=len(gaps),
        largest_gap_bars=int(diffs[gaps].max() // step - 1) if len(gaps) else 0,
    )
    r = np.diff(np.log(frame["close"].to_numpy()))
    if len(r) >= 2:
        s = pd.Series(r)
        q = np.percentile(r, [1, 5, 50, 95, 99])
        periods_per_year = 365 * 86400 / step
        out["returns"] = {
            "count": len(r),
            "mean": float(r.mean()),
            "std": float(r.std(ddof=1)),
            "annualised_volatility": float(r.std(ddof=1) * np.sqrt(periods_per_year)),
            "skew": float(s.skew()),
            "kurtosis": float(s.kurt()),
            "min": float(r.min()),
            "max": float(r.max()),
            "percentiles": {"p1": q[0], "p5": q[1], "p50": q[2], "p95": q[3], "p99": q[4]},
        }
    return out
