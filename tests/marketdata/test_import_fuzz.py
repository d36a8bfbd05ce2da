"""Fuzzing the bar importers (hypothesis): whatever the file -- arbitrary bytes, malformed CSV,
random column sets, NaN / inf / negative / huge numbers, duplicate or out-of-range timestamps,
wrong types, random Parquet files -- reading and validating it either gives a clean frame or an
ApplicationError with a code, the import writes every row or none, and the REST endpoints answer
201/200 or a 4xx error envelope with a machine-readable code: never another exception, never a 5xx.

Example counts are bounded (the file runs in well under 30 s)."""

from __future__ import annotations

import io
import json
import math
import os
import string

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from api.errors import ApplicationError
from marketdata import services
from marketdata.models import Bar, Instrument
from marketdata.validation import COLUMNS, read_upload, validate

# Derandomized: the suite explores the same inputs every run (no flaky failures for others to chase);
# FUZZ_EXAMPLES=2000 explores more, with fresh randomness, when you work on the importer.
_MORE = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def _budget(n: int, *, db: bool = False) -> settings:
    checks = [HealthCheck.too_slow] + ([HealthCheck.function_scoped_fixture] if db else [])
    return settings(
        max_examples=_MORE or n,
        deadline=None,
        derandomize=not _MORE,
        database=None,
        suppress_health_check=checks,
    )


FAST = _budget(60)
WITH_DB = _budget(30, db=True)
OVER_HTTP = _budget(12, db=True)
DAY = 86_400
START = 1_704_067_200  # 2024-01-01 UTC

# --- strategies ------------------------------------------------------------------------------------

nasty_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e308, -1e308, 5e-324, 1e11, 1e12, 1e19, 1e20, 2.0**63, -(2.0**63)]),
)
nasty_ints = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, -1, 2**63 - 1, -(2**63)]))
iso_stamps = st.builds(
    lambda secs, zone, sep: pd.Timestamp(secs, unit="s").strftime(f"%Y-%m-%d{sep}%H:%M:%S") + zone,
    st.integers(min_value=-(2**33), max_value=2**33),
    st.sampled_from(["", "Z", "+00:00", "+05:30", "-0800", "+25:00", " UTC"]),
    st.sampled_from(["T", " "]),
)
text_cells = st.text(alphabet=string.printable + "éß€\u00a0\u200b", max_size=12)
cells = st.one_of(
    nasty_floats.map(repr),
    nasty_ints.map(str),
    iso_stamps,
    text_cells,
    st.sampled_from(["", "nan", "NaN", "inf", "-Infinity", "null", "None", "true", "1e400", "0x10", "1_000", '"', "'"]),
)
header_names = st.one_of(
    st.sampled_from(COLUMNS + ["time", "Date", " ts ", "VOL", "Open", "close", "timestamp", "extra", ""]),
    st.text(alphabet=string.ascii_letters + " _.,\"'", max_size=8),
)


@st.composite
def csv_texts(draw) -> str:
    """Malformed-to-plausible CSV: a random header (often the right columns, in any order, with
    aliases and extras) and ragged rows of nasty cells."""
    if draw(st.booleans()):
        header = draw(st.permutations(COLUMNS))
        header = header + draw(st.lists(header_names, max_size=2))
    else:
        header = draw(st.lists(header_names, min_size=0, max_size=8))
    n_rows = draw(st.integers(min_value=0, max_value=12))
    rows = []
    for _ in range(n_rows):
        width = len(header) if draw(st.integers(0, 9)) else draw(st.integers(0, len(header) + 2))
        rows.append(",".join(draw(st.lists(cells, min_size=width, max_size=width))))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join([",".join(header), *rows]) + draw(st.sampled_from(["", newline]))


@st.composite
def bar_frames(draw) -> pd.DataFrame:
    """Daily bars that are valid, then maybe broken in a few targeted ways (one or several)."""
    n = draw(st.integers(min_value=1, max_value=25))
    ts = START + DAY * np.arange(n, dtype=np.int64)
    close = np.array(draw(st.lists(st.floats(1, 1e6), min_size=n, max_size=n)))
    open_ = close * (1 + np.array(draw(st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n))))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    volume = np.array(draw(st.lists(st.floats(0, 1e12), min_size=n, max_size=n)))
    frame = pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})
    stamps = draw(st.sampled_from(["epoch_s", "epoch_ms", "iso", "iso_z", "date"]))
    if stamps == "epoch_ms":
        frame["timestamp"] = frame["timestamp"] * 1000
    elif stamps != "epoch_s":
        fmt = {"iso": "%Y-%m-%dT%H:%M:%S", "iso_z": "%Y-%m-%dT%H:%M:%SZ", "date": "%Y-%m-%d"}[stamps]
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s").dt.strftime(fmt)
    frame = frame.astype(object)
    for _ in range(draw(st.integers(0, 3))):
        if len(frame.columns) < len(COLUMNS):
            break  # a column was dropped: that's breakage enough
        row = draw(st.integers(0, n - 1))
        breakage = draw(
            st.sampled_from(["value", "duplicate_ts", "huge_ts", "negative", "text", "swap", "drop_col", "none"])
        )
        col = draw(st.sampled_from(COLUMNS))
        if breakage == "value":
            frame.at[row, col] = draw(nasty_floats)
        elif breakage == "duplicate_ts" and n > 1:
            frame.at[row, "timestamp"] = frame.at[(row + 1) % n, "timestamp"]
        elif breakage == "huge_ts":
            frame.at[row, "timestamp"] = draw(st.sampled_from([1e20, -1e20, 2**62, math.inf, 10**25, "99999-01-01"]))
        elif breakage == "negative":
            frame.at[row, col] = -draw(st.floats(0, 1e6))
        elif breakage == "text":
            frame.at[row, col] = draw(text_cells)
        elif breakage == "swap" and n > 1:
            frame.iloc[[row, (row + 1) % n]] = frame.iloc[[(row + 1) % n, row]].to_numpy()
        elif breakage == "drop_col" and col in frame:
            frame = frame.drop(columns=[col])
        elif breakage == "none":
            frame.at[row, col] = None
    return frame


def _column(draw, n: int):
    kinds = ["float", "int", "bool", "str", "ts_utc", "ts_naive", "ts_ms", "null", "date", "bytes"]
    kind = draw(st.sampled_from(kinds))
    if kind == "float":
        return pa.array(draw(st.lists(nasty_floats, min_size=n, max_size=n)), pa.float64())
    if kind == "int":
        return pa.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), pa.int64())
    if kind == "bool":
        return pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), pa.bool_())
    if kind == "str":
        return pa.array(draw(st.lists(st.one_of(cells, st.none()), min_size=n, max_size=n)), pa.string())
    if kind == "null":
        return pa.nulls(n)
    if kind == "bytes":
        return pa.array(draw(st.lists(st.binary(max_size=6), min_size=n, max_size=n)), pa.binary())
    secs = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n))
    if kind == "date":
        return pa.array([s // DAY for s in secs], pa.int32()).cast(pa.date32())
    unit, tz = {"ts_utc": ("s", "UTC"), "ts_naive": ("s", None), "ts_ms": ("ms", "America/New_York")}[kind]
    values = secs if unit == "s" else [s * 1000 for s in secs]
    return pa.array(values, pa.timestamp(unit, tz=tz))


@st.composite
def parquet_files(draw) -> bytes:
    """A Parquet file from a random table: usually the bar columns (each of a random type), maybe
    missing or extra ones, possibly empty."""
    n = draw(st.integers(min_value=0, max_value=10))
    names = list(COLUMNS) if draw(st.integers(0, 4)) else draw(st.lists(header_names, max_size=7, unique=True))
    names = [c for c in names if draw(st.integers(0, 12))]  # now and then a column goes missing
    names += draw(st.lists(st.sampled_from(["extra", "symbol", "0"]), max_size=2, unique=True))
    names = list(dict.fromkeys(names))
    table = pa.table({name: _column(draw, n) for name in names}) if names else pa.table({})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@st.composite
def valid_parquet_files(draw) -> bytes:
    """Parquet from a frame of valid-ish bars: timestamps as tz-aware/naive datetimes or epoch ints."""
    frame = draw(bar_frames())
    if "timestamp" in frame and draw(st.booleans()):
        try:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=draw(st.booleans()), format="mixed")
        except (ValueError, TypeError, OverflowError):
            pass
    frame = frame.infer_objects()
    for col in frame.columns:  # pyarrow wants one type per column: mixed ones become text
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    sink = io.BytesIO()
    frame.to_parquet(sink)
    return sink.getvalue()


# --- the contract ----------------------------------------------------------------------------------


def _app_error(exc: ApplicationError) -> None:
    assert isinstance(exc.code, str) and exc.code and exc.code == exc.code.lower(), exc.code
    assert 400 <= exc.status < 500
    json.dumps(exc.details, default=str)


def _read_and_validate(content: bytes, name: str, timeframe: str = "1d"):
    """Read + validate as the endpoints do. Returns the report, or None after an ApplicationError;
    any other exception fails the test."""
    try:
        raw = read_upload(name, content)
        report = validate(raw, timeframe=timeframe, max_rows=1000)
    except ApplicationError as exc:
        _app_error(exc)
        return None
    body = report.as_dict()
    json.dumps(body, default=str)  # what the API renders
    if report.valid:
        frame = report.frame
        assert frame is not None and len(frame) == report.rows > 0
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy()
        assert np.isfinite(values).all()
        assert (frame[["open", "high", "low", "close"]] > 0).all().all() and (frame["volume"] >= 0).all()
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
        assert frame.index.is_monotonic_increasing and frame.index.is_unique
        assert str(frame.index.tz) == "UTC"
        assert (frame.index.asi8 % (DAY * 10**9) == 0).all()
    else:
        assert report.frame is None and report.error_count > 0
        assert all(isinstance(e["code"], str) and e["code"] for e in body["errors"]) or body["errors"] == []
    return report


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@FAST
@given(st.binary(max_size=3000))
@example(b"")
@example(b"\xef\xbb\xbf")
@example(b"PAR1")
@example(b"PAR1\x00\x00\x00\x00PAR1")
@example(b"timestamp,open,high,low,close,volume\n\xff\xfe,1,2,0.5,1,1\n")
def test_arbitrary_bytes_never_escape_as_another_exception(content):
    _read_and_validate(content, "upload.csv")
    _read_and_validate(content, "upload.parquet")
    _read_and_validate(b"PAR1" + content, "upload.bin")


@FAST
@given(csv_texts())
@example("timestamp,open,high,low,close,volume\n1e20,1,2,0.5,1,1\n")
@example("timestamp,open,high,low,close,volume\ninf,1,2,0.5,1,1\n")
@example("timestamp,open,high,low,close,volume\n-1e20,1,2,0.5,1,1\n")
@example("timestamp,open,high,low,close,volume\n1704067200,1e308,1e308,1e308,1e308,1e308\n")
@example("timestamp,timestamp,open,high,low,close,volume\n1704067200,1704067200,1,2,0.5,1,1\n")
@example('timestamp,open,high,low,close,volume\n"2024-01-01,1,2,0.5,1,1\n')
def test_malformed_csv_is_read_or_refused_with_a_code(text):
    _read_and_validate(text.encode(), "bars.csv")


@FAST
@given(bar_frames())
def test_broken_bars_are_reported_row_by_row_and_clean_ones_pass(frame):
    report = _read_and_validate(_csv_bytes(frame), "bars.csv")
    if report is not None and not report.valid:
        rows = {e["row"] for e in report.errors if e["row"] is not None}
        assert rows <= set(range(1, report.rows + 1))  # (a bare "\r" in a text cell makes a row more)


@FAST
@given(parquet_files())
def test_random_parquet_files_are_read_or_refused_with_a_code(content):
    _read_and_validate(content, "bars.parquet")


@FAST
@given(valid_parquet_files())
def test_parquet_of_bar_frames(content):
    _read_and_validate(content, "bars.parquet")


# --- all or nothing in the database ----------------------------------------------------------------


class _Undo(Exception):
    """Rolls one example's writes back, so examples don't see each other's bars."""


def _stored(symbol: str) -> tuple[int, bool]:
    return Bar.objects.filter(instrument__symbol=symbol).count(), Instrument.objects.filter(symbol=symbol).exists()


@pytest.mark.django_db
@WITH_DB
@given(frame=bar_frames(), fmt=st.sampled_from(["csv", "parquet"]), on_conflict=st.sampled_from(["error", "replace"]))
def test_import_writes_every_row_or_none(alpha, frame, fmt, on_conflict):
    content = _csv_bytes(frame) if fmt == "csv" else _parquet_of(frame)
    with schema_context(alpha.tenant.schema_name):
        try:
            with transaction.atomic():
                # a stored bar inside the file's range now and then: the overlap path (temp table)
                if on_conflict == "replace":
                    services.bars_import(
                        tenant=alpha.tenant,
                        symbol="FUZZ",
                        timeframe="1d",
                        raw=pd.DataFrame([[START, 1.0, 1.0, 1.0, 1.0, 0.0]], columns=COLUMNS),
                    )
                before = _stored("FUZZ")
                try:
                    raw = read_upload(f"bars.{fmt}", content)
                    result = services.bars_import(
                        tenant=alpha.tenant, symbol="fuzz", timeframe="1d", raw=raw, on_conflict=on_conflict
                    )
                except ApplicationError as exc:
                    event(f"refused: {exc.code}")
                    _app_error(exc)
                    assert _stored("FUZZ") == before  # nothing of the refused file
                else:
                    event("imported")
                    count, exists = _stored("FUZZ")
                    assert exists and result.rows == len(raw)
                    assert count == before[0] + result.inserted
                    assert result.inserted + result.replaced == len(raw)
                raise _Undo
        except _Undo:
            pass


def _parquet_of(frame: pd.DataFrame) -> bytes:
    frame = frame.copy()
    for col in frame.columns:
        frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    sink = io.BytesIO()
    frame.to_parquet(sink)
    return sink.getvalue()


# --- over HTTP -------------------------------------------------------------------------------------


def _assert_answer(response, ok: int) -> None:
    assert response.status_code < 500, response.content[:500]
    if response.status_code == ok:
        return
    assert 400 <= response.status_code < 500 and response.status_code != 404, response.status_code
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)


@pytest.mark.django_db
@OVER_HTTP
@given(
    content=st.one_of(
        st.binary(max_size=1500),
        csv_texts().map(str.encode),
        bar_frames().map(_csv_bytes),
        bar_frames().map(_csv_bytes),
        parquet_files(),
    ),
    name=st.sampled_from(["bars.csv", "bars.parquet", "bars.txt", "", "../../etc/passwd"]),
)
@example(content=b"timestamp,open,high,low,close,volume\n1e20,1,2,0.5,1,1\n", name="bars.csv")
def test_upload_endpoints_answer_with_a_code_never_a_5xx(alpha, usage_redis, content, name):
    client = alpha.client()
    with schema_context(alpha.tenant.schema_name):
        before = Bar.objects.count()
    upload = SimpleUploadedFile(name or "f", content)
    r = client.post("/api/v1/data/validate/", {"timeframe": "1d", "file": upload}, format="multipart")
    _assert_answer(r, 200)
    upload = SimpleUploadedFile(name or "f", content)
    r = client.post("/api/v1/data/import/", {"symbol": "FZ", "timeframe": "1d", "file": upload}, format="multipart")
    _assert_answer(r, 201)
    event(f"import answered {r.status_code}")
    with schema_context(alpha.tenant.schema_name):
        after = Bar.objects.count()
        if r.status_code == 201:
            assert after == before + r.json()["inserted"]
            Bar.objects.filter(instrument__symbol="FZ").delete()
            Instrument.objects.filter(symbol="FZ").delete()
        else:
            assert after == before and not Instrument.objects.filter(symbol="FZ").exists()


@pytest.mark.django_db
@OVER_HTTP
@given(
    bars=st.lists(
        st.dictionaries(
            st.sampled_from(COLUMNS + ["ts", "extra"]),
            st.one_of(cells, nasty_floats, nasty_ints, st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
            max_size=7,
        ),
        max_size=8,
    )
)
def test_posted_json_bars_answer_with_a_code_never_a_5xx(alpha, usage_redis, bars):
    body = json.dumps({"timeframe": "1d", "bars": bars})  # NaN / Infinity tokens and big ints as sent
    r = alpha.client().post("/api/v1/data/validate/", body, content_type="application/json")
    _assert_answer(r, 200)


# --- regressions the fuzzing found -----------------------------------------------------------------

HEADER = "timestamp,open,high,low,close,volume\n"


def _errors(report) -> set[tuple[int | None, str]]:
    return {(e["row"], e["code"]) for e in report.errors}


@pytest.mark.parametrize("stamp", ["1e20", "-1e20", "100000000000000000000", "inf", "-inf"])
def test_epoch_timestamps_out_of_range_are_reported_not_raised(stamp):
    # was: pandas' OutOfBoundsDatetime / "cannot convert float infinity" escaped (a 500 on upload)
    text = HEADER + f"1704067200,1,2,0.5,1,1\n{stamp},1,2,0.5,1,1\n1704240000,1,2,0.5,1,1\n"
    report = validate(read_upload("b.csv", text.encode()), timeframe="1d")
    assert not report.valid and (2, "invalid_timestamp") in _errors(report)
    # one bad cell doesn't turn the other rows' seconds into milliseconds (no misaligned rows)
    assert {code for _, code in _errors(report)} == {"invalid_timestamp"}


@pytest.mark.parametrize("stamp", ["0001-01-01", "9999-12-31T00:00:00Z", "1500-06-01", "2300-01-01"])
def test_iso_timestamps_beyond_nanoseconds_are_reported_not_wrapped(stamp):
    # was: parsed (microsecond unit), then cast to nanoseconds wrapping silently into another date
    text = HEADER + f"2024-01-01,1,2,0.5,1,1\n{stamp},1,2,0.5,1,1\n"
    report = validate(read_upload("b.csv", text.encode()), timeframe="1d")
    assert (2, "invalid_timestamp") in _errors(report) and report.frame is None


def test_parquet_timestamps_beyond_nanoseconds_are_reported():
    table = pa.table(
        {
            "timestamp": pa.array([START, 30_000 * 365 * DAY], pa.timestamp("s", tz="UTC")),
            **{c: pa.array([1.0, 1.0]) for c in COLUMNS[1:]},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    report = validate(read_upload("b.parquet", sink.getvalue()), timeframe="1d")
    assert _errors(report) == {(2, "invalid_timestamp")}


def test_parquet_binary_column_is_reported_not_a_unicode_error():
    # was: UnicodeDecodeError from astype(str) on bytes cells
    table = pa.table(
        {
            "timestamp": pa.array([START, START + DAY]),
            "open": pa.array([b"\x80\x81", b"1.5"], pa.binary()),
            **{c: pa.array([2.0, 2.0]) for c in ["high", "low", "close", "volume"]},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    report = validate(read_upload("b.parquet", sink.getvalue()), timeframe="1d")
    assert (1, "invalid_number") in _errors(report)
    assert (2, "invalid_number") not in _errors(report)  # b"1.5" reads as the number it spells


@pytest.mark.parametrize("stamp", ["2300-01-01T00:00:00Z", 2**70, 10**13 * 1000, "1600-01-01T00:00:00"])
def test_posted_bars_out_of_range_take_the_full_path_and_are_reported(stamp):
    # was: the fast path cast 2300-01-01 to nanoseconds, wrapping into 1715 (silently); 2**70 overflowed
    from marketdata.validation import validate_records

    bar = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0, "volume": 1.0}
    report = validate_records([{"timestamp": stamp, **bar}], timeframe="1d")
    assert not report.valid and (1, "invalid_timestamp") in _errors(report)


@pytest.mark.parametrize("header", ["timestamp,ts", "time,date", "open,Open"])
def test_a_column_named_twice_is_reported_not_raised(header):
    # was: AttributeError ('DataFrame' object has no attribute 'dtype') -- df["timestamp"] was a frame
    first, second = header.split(",")
    cols = [c for c in COLUMNS if c not in {first.lower(), second.lower()}]
    text = f"{first},{second},{','.join(cols)}\n" + ",".join(["1704067200"] * (len(cols) + 2)) + "\n"
    report = validate(read_upload("b.csv", text.encode()), timeframe="1d")
    assert [e["code"] for e in report.errors] == ["duplicate_column"] and not report.valid


def test_parquet_dates_in_price_columns_and_durations_as_times_are_reported():
    # was: NotImplementedError / "year 0 is out of range" from astype(str) on such cells
    table = pa.table(
        {
            "timestamp": pa.array([1, 2], pa.duration("s")),
            "open": pa.array([-(2**40), START], pa.timestamp("s")),
            **{c: pa.array([2.0, 2.0]) for c in ["high", "low", "close", "volume"]},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    report = validate(read_upload("b.parquet", sink.getvalue()), timeframe="1d")
    assert {(1, "invalid_number"), (2, "invalid_number"), (1, "invalid_timestamp")} <= _errors(report)


def test_a_null_in_a_parquet_timestamp_column_is_reported_not_imported_as_nat():
    # was: the row passed validation with a NaT time (and went on to the COPY)
    table = pa.table(
        {
            "timestamp": pa.array([START, None], pa.timestamp("s", tz="UTC")),
            **{c: pa.array([1.0, 1.0]) for c in COLUMNS[1:]},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    report = validate(read_upload("b.parquet", sink.getvalue()), timeframe="1d")
    assert _errors(report) == {(2, "invalid_timestamp")} and report.frame is None
