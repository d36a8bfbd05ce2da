"""Reading and validating OHLCV files, all-or-nothing: every problem is reported with its row,
column and a stable code, and nothing is imported unless there is none.

Conventions: ``row`` is the 1-based data row (the header is not counted; in a CSV, line = row + 1).
Timestamps are bar open times; ISO 8601 with or without an offset (naive ones are UTC, but a file
may not mix the two or mix offsets), or epoch seconds / milliseconds. Gaps (a missing bar) are
reported, never filled.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from api.errors import ApplicationError

from .models import TIMEFRAME_SECONDS

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
ALIASES = {"time": "timestamp", "date": "timestamp", "datetime": "timestamp", "ts": "timestamp", "vol": "volume"}
PRICE_COLUMNS = ["open", "high", "low", "close"]
MAX_LISTED_ERRORS = 1000
MAX_LISTED_GAPS = 200


@dataclass
class Report:
    """What validation found. ``frame`` (UTC index, float columns) is set only when valid."""

    rows: int = 0
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    gaps: list[dict] = field(default_factory=list)
    gap_count: int = 0
    missing_bars: int = 0
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    frame: pd.DataFrame | None = None

    @property
    def valid(self) -> bool:
        return self.error_count == 0

    def add(self, code: str, message: str, rows=None, column: str | None = None) -> None:
        """Record one error per offending row (1-based), or one file-level error when rows is None."""
        if rows is None:
            self.error_count += 1
            if len(self.errors) < MAX_LISTED_ERRORS:
                self.errors.append({"row": None, "column": column, "code": code, "message": message})
            return
        rows = list(rows)
        self.error_count += len(rows)
        for r in rows[: max(0, MAX_LISTED_ERRORS - len(self.errors))]:
            self.errors.append({"row": int(r), "column": column, "code": code, "message": message})

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "rows": self.rows,
            "error_count": self.error_count,
            "errors": sorted(self.errors, key=lambda e: (e["row"] or 0, e["column"] or "")),
            "errors_truncated": self.error_count > len(self.errors),
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
            "gap_count": self.gap_count,
            "missing_bars": self.missing_bars,
            "gaps": self.gaps,
        }


def bar_problem(timeframe, ts: int, o: float, h: float, lo: float, c: float, v: float) -> str | None:
    """What breaks the rules in one streamed bar (finite numbers already), as a reason code, or
    None: the one rule set the feed adapter and the stream's insert both apply."""
    if timeframe not in TIMEFRAME_SECONDS:
        return "unknown_timeframe"
    if ts % TIMEFRAME_SECONDS[timeframe]:
        return "misaligned_timestamp"
    if min(o, h, lo, c) <= 0:
        return "non_positive_price"
    if h < max(o, c):
        return "high_below_open_close"
    if lo > min(o, c):
        return "low_above_open_close"
    if v < 0:
        return "negative_volume"
    return None


def read_table(data: bytes | str, fmt: str) -> pd.DataFrame:
    """Parse CSV or Parquet into strings/numbers as found (no coercion yet: validation reports it)."""
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(data if isinstance(data, bytes) else data.encode()))
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        # numbers parse natively (fast); a column with anything else stays text and is checked cell by cell
        return pd.read_csv(io.StringIO(text), keep_default_na=False, skipinitialspace=True)
    except ApplicationError:
        raise
    except Exception as exc:  # the file isn't CSV/Parquet at all
        raise ApplicationError(
            "unreadable_file",
            f"The file could not be read as {fmt.upper()}: {exc}. Send a CSV with a header row "
            f"({','.join(COLUMNS)}) or a Parquet file.",
            {"format": fmt},
        ) from exc


def read_upload(name: str, content: bytes) -> pd.DataFrame:
    """An uploaded file: Parquet by its extension or its magic bytes, else CSV."""
    fmt = "parquet" if name.lower().endswith(".parquet") or content[:4] == b"PAR1" else "csv"
    return read_table(content, fmt)


def frame_from_records(records: list) -> pd.DataFrame:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ApplicationError("invalid_input", "`bars` must be a list of objects.", {"bars": "not a list of objects"})
    return pd.DataFrame.from_records(records)


def _mixed_timezones_check(text: pd.Series, rows: np.ndarray, report: Report) -> None:
    """Flag rows whose UTC offset (or lack of one) differs from the file's majority. The cheap
    checks settle the common files (all 'Z', or all naive); only files with offsets pay a regex."""
    if text.empty:
        return
    ends_z = (text.str[-1] == "Z").to_numpy()
    if ends_z.all():
        return
    tail = text.str[-6:]
    first = tail.iloc[0]
    if re.fullmatch(r"[+-]\d\d:\d\d", first) and (tail == first).all():
        return  # one explicit offset throughout (e.g. isoformat()'s +00:00)
    has_sign = text.str[10:].str.contains(r"[+-]", regex=True).to_numpy()
    if not ends_z.any() and not has_sign.any():
        return
    offset = text.str.extract(r"(Z|[+-]\d\d:?\d\d)$", expand=False).fillna("")
    offset = offset.str.replace(r"^([+-]\d\d)(\d\d)$", r"\1:\2", regex=True).replace({"Z": "+00:00"})
    kinds = offset.value_counts()
    if len(kinds) > 1:
        majority = kinds.index[0]
        odd = rows[(offset != majority).to_numpy()]
        report.add(
            "mixed_timezones",
            f"Time zone differs from the rest of the file ({majority or 'no offset'}); use one time zone.",
            odd,
            "timestamp",
        )


# what a bar's time may be: nanoseconds since the epoch in int64 (pandas' and the COPY payload's unit)
TS_MIN, TS_MAX = pd.Timestamp("1677-09-22", tz="UTC"), pd.Timestamp("2262-04-11", tz="UTC")


def _text(s: pd.Series) -> pd.Series:
    """Cells as text, whatever their type: binary cells (a Parquet ``binary`` column) decoded with
    undecodable bytes replaced; a cell that can't be printed at all becomes "" (then reported)."""
    try:
        return s.astype(str)
    except Exception:  # bytes that aren't UTF-8, dates outside Python's range, ...
        return pd.Series([_cell_text(v) for v in s.astype(object)], index=s.index, dtype=str)


def _cell_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:
        return ""


def _timestamps(raw: pd.Series, report: Report) -> pd.Series:
    """Parse to UTC (nanoseconds); report unparseable values, mixed time zones and times out of range."""
    numeric = pd.to_numeric(raw, errors="coerce") if raw.dtype == object else raw
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = pd.to_datetime(raw, utc=True)
        missing = np.flatnonzero(ts.isna().to_numpy()) + 1  # nulls of a Parquet timestamp column
        if len(missing):
            report.add("invalid_timestamp", "Missing timestamp.", missing, "timestamp")
        return _in_range(ts, report)
    if pd.api.types.is_numeric_dtype(numeric) and not pd.api.types.is_bool_dtype(numeric) and numeric.notna().all():
        # epoch seconds, or milliseconds when the magnitude says so (the typical magnitude: one
        # absurd cell must not turn the whole column into milliseconds)
        values = numeric.to_numpy(dtype="float64")
        finite = np.isfinite(values)
        unit = "ms" if finite.any() and np.median(np.abs(values[finite])) > 1e11 else "s"
        in_bounds = finite & (np.abs(values) < 9e18 / (1e6 if unit == "ms" else 1e9))
        ts = pd.to_datetime(numeric if in_bounds.all() else numeric.where(in_bounds), unit=unit, utc=True)
        return _in_range(ts, report, known_bad=~in_bounds)
    text = _text(raw).str.strip()
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    parsed = ts.notna().to_numpy()
    _mixed_timezones_check(text[parsed], np.flatnonzero(parsed) + 1, report)
    bad = np.flatnonzero(ts.isna().to_numpy()) + 1
    if len(bad):
        report.add("invalid_timestamp", "Not a timestamp: use ISO 8601 or epoch seconds.", bad, "timestamp")
    return _in_range(ts, report)


def _in_range(ts: pd.Series, report: Report, known_bad: np.ndarray | None = None) -> pd.Series:
    """``ts`` in nanoseconds: times outside 1677-09-22 … 2262-04-11 (and ``known_bad`` rows) are
    reported and become NaT -- converted as they are, they would wrap around silently."""
    unit = ts.dt.unit
    ticks = ts.array.asi8  # int64 in the series' own unit; NaT is int64's minimum
    lo, hi = (int(bound.as_unit(unit).asm8.astype(np.int64)) for bound in (TS_MIN, TS_MAX))  # in that unit
    out = (ticks != np.iinfo(np.int64).min) & ((ticks < lo) | (ticks > hi))
    if known_bad is not None:
        out = out | known_bad
    bad = np.flatnonzero(out) + 1
    if len(bad):
        report.add(
            "invalid_timestamp",
            f"Out of range: timestamps must fall between {TS_MIN:%Y-%m-%d} and {TS_MAX:%Y-%m-%d} (UTC).",
            bad,
            "timestamp",
        )
        ts = ts.where(~out)
    return ts if unit == "ns" else ts.dt.as_unit("ns")


_NONFINITE_TEXT = {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def _numbers(s: pd.Series, col: str, report: Report) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        report.add("invalid_number", f"'{col}' is not a number.", np.arange(1, len(s) + 1), col)
        return np.full(len(s), np.nan)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        arr = s.to_numpy(dtype="float64", na_value=np.nan)
        unparseable = np.zeros(len(arr), dtype=bool)
    else:
        text = _text(s).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        unparseable = (num.isna() & ~text.str.lower().isin(_NONFINITE_TEXT)).to_numpy()
        arr = num.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        arr[text.str.lower().isin(_NONFINITE_TEXT).to_numpy()] = np.nan
    bad = np.flatnonzero(unparseable) + 1
    if len(bad):
        report.add("invalid_number", f"'{col}' is not a number.", bad, col)
    nonfinite = np.flatnonzero(~unparseable & ~np.isfinite(arr)) + 1
    if len(nonfinite):
        report.add("not_finite", f"'{col}' is NaN or infinite.", nonfinite, col)
    return arr


def validate(raw: pd.DataFrame, *, timeframe: str, max_rows: int | None = None) -> Report:
    """Check every rule on every row; the report lists what's wrong, or carries the clean frame."""
    report = Report(rows=len(raw))
    if timeframe not in TIMEFRAME_SECONDS:
        raise ApplicationError(
            "invalid_timeframe", f"Unknown timeframe '{timeframe}'.", {"choices": list(TIMEFRAME_SECONDS)}
        )
    df = raw.rename(columns={c: ALIASES.get(str(c).strip().lower(), str(c).strip().lower()) for c in raw.columns})
    twice = sorted({c for c in df.columns[df.columns.duplicated()] if c in COLUMNS})
    if twice:  # e.g. "time" and "timestamp": which one is meant?
        for c in twice:
            report.add(
                "duplicate_column", f"Column '{c}' appears more than once (names or aliases); keep one.", None, c
            )
        return report
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        for c in missing:
            report.add(
                "missing_column", f"Column '{c}' is missing; the header must name {', '.join(COLUMNS)}.", None, c
            )
        return report
    if max_rows is not None and len(df) > max_rows:
        report.add(
            "too_many_rows",
            f"{len(df):,} rows exceed your plan's {max_rows:,} rows per import; split the file or upgrade.",
        )
        return report
    if len(df) == 0:
        report.add("empty_file", "The file has a header but no rows.")
        return report

    ts = _timestamps(df["timestamp"], report)
    values = {}
    for col in PRICE_COLUMNS + ["volume"]:
        values[col] = _numbers(df[col], col, report)

    o, h, lo, c, v = (values[k] for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        for col in PRICE_COLUMNS:
            bad = np.flatnonzero(values[col] <= 0) + 1
            if len(bad):
                report.add("non_positive_price", f"'{col}' must be greater than 0.", bad, col)
        bad = np.flatnonzero(h < np.maximum(o, c)) + 1
        if len(bad):
            report.add("high_below_open_close", "'high' is below open or close.", bad, "high")
        bad = np.flatnonzero(lo > np.minimum(o, c)) + 1
        if len(bad):
            report.add("low_above_open_close", "'low' is above open or close.", bad, "low")
        bad = np.flatnonzero(v < 0) + 1
        if len(bad):
            report.add("negative_volume", "'volume' must not be negative.", bad, "volume")

    step = TIMEFRAME_SECONDS[timeframe]
    ns = ts.to_numpy(dtype="datetime64[ns]").astype("int64")
    epoch = ns // 1_000_000_000
    known = ts.notna().to_numpy()
    misaligned = np.flatnonzero(known & (ns % (step * 1_000_000_000) != 0)) + 1  # fractions of a second too
    if len(misaligned):
        report.add(
            "misaligned_timestamp",
            f"Not the open time of a {timeframe} bar (must be a multiple of {step} s since the epoch, UTC).",
            misaligned,
            "timestamp",
        )
    if known.any():
        # order, spacing and gaps between consecutive parseable rows (unparseable ones are reported above)
        rows = np.flatnonzero(known) + 1
        kept = epoch[known]
        diffs = np.diff(kept)
        later = rows[1:]
        dup = later[diffs == 0]
        if len(dup):
            report.add("duplicate_timestamp", "Same timestamp as the previous row.", dup, "timestamp")
        back = later[diffs < 0]
        if len(back):
            report.add("non_increasing_timestamp", "Earlier than the previous row; sort by time.", back, "timestamp")
        short = later[(diffs > 0) & (diffs < step)]
        if len(short):
            report.add(
                "timeframe_mismatch",
                f"Closer to the previous row than one {timeframe} bar: the file's timeframe differs.",
                short,
                "timestamp",
            )
        stamps = ts[known]
        _gaps(report, diffs, step, stamps)
        report.start, report.end = stamps.min(), stamps.max()
    if report.valid:
        report.frame = pd.DataFrame(
            {"open": o, "high": h, "low": lo, "close": c, "volume": v},
            index=pd.DatetimeIndex(ts, name="ts").as_unit("ns"),  # one unit, however the stamps were written
        )
    return report


def _gaps(report: Report, diffs: np.ndarray, step: int, stamps: pd.Series | pd.DatetimeIndex) -> None:
    """Missing bars between consecutive rows (``diffs`` in seconds), reported, never filled."""
    gap_idx = np.flatnonzero(diffs > step)
    report.gap_count = len(gap_idx)
    report.missing_bars = int(((diffs[gap_idx] // step) - 1).sum()) if len(gap_idx) else 0
    at = stamps.iloc.__getitem__ if isinstance(stamps, pd.Series) else stamps.__getitem__
    for i in gap_idx[:MAX_LISTED_GAPS]:
        report.gaps.append(
            {"after": at(i).isoformat(), "before": at(i + 1).isoformat(), "missing_bars": int(diffs[i] // step - 1)}
        )


# --- posted bars: a fast path for the common, clean payload ----------------------------------------

_ZONE = re.compile(r"Z?|(?P<sign>[+-])(?P<hh>[01]\d):(?P<mm>[0-5]\d)")
_NUMBERS = {float, int}


def validate_records(records: list, *, timeframe: str, max_rows: int | None = None) -> Report:
    """``validate`` for a JSON list of bar objects. A clean payload (numbers as numbers, ISO 8601 or
    epoch timestamps in one zone, every rule met) is checked on plain arrays in ~1 ms for 500 bars
    instead of ~8 ms through pandas; anything else takes the full path, which lists every problem.
    Both paths give the same frame for the same input (tested)."""
    if timeframe in TIMEFRAME_SECONDS and isinstance(records, list) and 0 < len(records) <= (max_rows or len(records)):
        report = _records_fast(records, TIMEFRAME_SECONDS[timeframe])
        if report is not None:
            return report
    return validate(frame_from_records(records), timeframe=timeframe, max_rows=max_rows)


def _records_fast(records: list, step: int) -> Report | None:
    """The report of a clean payload, or None: "not sure, take the full path"."""
    first = records[0]
    if not isinstance(first, dict):
        return None
    keys = first.keys()
    names = {ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): k for k in keys}
    if len(names) != len(keys) or any(c not in names for c in COLUMNS):
        return None
    try:
        if not all(type(r) is dict and r.keys() == keys for r in records):
            return None
        cols = {c: [r[names[c]] for r in records] for c in COLUMNS}
    except (AttributeError, KeyError):
        return None
    for c in COLUMNS[1:]:
        if not set(map(type, cols[c])) <= _NUMBERS:  # bools, strings, None: full path
            return None
    epoch = _epoch_seconds(cols["timestamp"])
    if epoch is None:
        return None
    o, h, lo, c, v = (np.array(cols[k], dtype=np.float64) for k in COLUMNS[1:])
    with np.errstate(invalid="ignore"):
        clean = (
            np.isfinite(o).all()
            and np.isfinite(h).all()
            and np.isfinite(lo).all()
            and np.isfinite(c).all()
            and np.isfinite(v).all()
            and (o > 0).all()
            and (c > 0).all()
            and (lo > 0).all()
            and (h >= np.maximum(o, c)).all()
            and (lo <= np.minimum(o, c)).all()
            and (v >= 0).all()
        )
    diffs = np.diff(epoch)
    if not clean or (epoch % step).any() or (diffs < step).any():
        return None
    if epoch.min() < TS_MIN.timestamp() or epoch.max() > TS_MAX.timestamp():
        return None  # nanoseconds would wrap around: the full path reports the rows
    index = pd.DatetimeIndex((epoch * 1_000_000_000).view("M8[ns]"), name="ts").tz_localize("UTC")
    report = Report(rows=len(records))
    _gaps(report, diffs, step, index)
    report.start, report.end = index[0], index[-1]
    report.frame = pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": v}, index=index)
    return report


def _epoch_seconds(values: list) -> np.ndarray | None:
    """Whole epoch seconds of integer epoch seconds / milliseconds, or of ISO 8601 strings of one
    shape: all ``YYYY-MM-DD`` or all ``YYYY-MM-DD[T ]HH:MM:SS`` with one common zone suffix (none =
    UTC, ``Z``, ``+HH:MM``). None for anything else (mixed zones, fractions, other spellings)."""
    kinds = set(map(type, values))
    if kinds == {int}:
        try:
            secs = np.array(values, dtype=np.int64)
        except OverflowError:  # beyond int64: the full path reports it
            return None
        if np.abs(secs).max() > 1e11:  # milliseconds, as the full path reads them
            if (secs % 1000).any():
                return None
            secs //= 1000
        return secs
    if kinds != {str}:
        return None
    lengths = set(map(len, values))
    if len(lengths) != 1:
        return None
    length = lengths.pop()
    offset = 0
    if length == 10:
        body = values
    elif length >= 19:
        suffixes = {x[19:] for x in values}
        zone = _ZONE.fullmatch(suffixes.pop()) if len(suffixes) == 1 else None
        if zone is None:
            return None
        if zone["sign"]:
            offset = (int(zone["hh"]) * 3600 + int(zone["mm"]) * 60) * (1 if zone["sign"] == "+" else -1)
        body = [x[:19] for x in values]
    else:
        return None
    try:
        stamps = np.array(body, dtype="M8[s]")
    except ValueError:
        return None
    if np.isnat(stamps).any():
        return None
    return stamps.astype(np.int64) - offset
