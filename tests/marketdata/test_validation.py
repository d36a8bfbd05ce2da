"""Validation reports every problem with row, column and code; a clean file yields a UTC frame."""

import numpy as np
import pandas as pd
import pytest

from api.errors import ApplicationError
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table, validate

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2024-01-01T00:00:00Z,10,11,9,10.5,100\n"


def _errors(csv: str, timeframe: str = "1m", **kw) -> set[tuple]:
    report = validate(read_table(HEADER + csv, "csv"), timeframe=timeframe, **kw)
    return {(e["row"], e["column"], e["code"]) for e in report.errors}


def test_clean_synthetic_file_validates_and_round_trips():
    bars = generate_bars(300, timeframe="1h", seed=3)
    report = validate(read_table(as_csv(bars), "csv"), timeframe="1h")
    assert report.valid and report.rows == 300 and report.gap_count == 0
    np.testing.assert_allclose(report.frame["close"].to_numpy(), bars["close"].to_numpy(), rtol=1e-9)
    assert (report.frame.index == bars.index).all() and str(report.frame.index.tz) == "UTC"


@pytest.mark.parametrize(
    "row2, expected",
    [
        ("2024-01-01T00:01:00Z,abc,11,9,10.5,100", (2, "open", "invalid_number")),
        ("2024-01-01T00:01:00Z,10,11,9,nan,100", (2, "close", "not_finite")),
        ("2024-01-01T00:01:00Z,10,inf,9,10.5,100", (2, "high", "not_finite")),
        ("2024-01-01T00:01:00Z,0,11,9,10.5,100", (2, "open", "non_positive_price")),
        ("2024-01-01T00:01:00Z,10,10.4,9,10.5,100", (2, "high", "high_below_open_close")),
        ("2024-01-01T00:01:00Z,10,11,10.2,10.5,100", (2, "low", "low_above_open_close")),
        ("2024-01-01T00:01:00Z,10,11,9,10.5,-1", (2, "volume", "negative_volume")),
        ("2024-01-01T00:00:00Z,10,11,9,10.5,100", (2, "timestamp", "duplicate_timestamp")),
        ("2023-12-31T23:59:00Z,10,11,9,10.5,100", (2, "timestamp", "non_increasing_timestamp")),
        ("2024-01-01T00:01:30Z,10,11,9,10.5,100", (2, "timestamp", "misaligned_timestamp")),
        ("not a date,10,11,9,10.5,100", (2, "timestamp", "invalid_timestamp")),
        ("2024-01-01T01:01:00+01:00,10,11,9,10.5,100", (2, "timestamp", "mixed_timezones")),
        ("2024-01-01T00:01:00Z,,11,9,10.5,100", (2, "open", "invalid_number")),
    ],
)
def test_each_rule_names_row_column_and_code(row2, expected):
    assert expected in _errors(GOOD + row2 + "\n")


def test_every_error_is_reported_not_just_the_first():
    csv = (
        GOOD + "2024-01-01T00:01:00Z,-1,11,9,10.5,-5\n" + "x,10,11,9,10.5,1\n" + "2024-01-01T00:03:00Z,10,11,9,10.5,1\n"
    )
    errors = _errors(csv)
    assert {
        (2, "open", "non_positive_price"),
        (2, "volume", "negative_volume"),
        (3, "timestamp", "invalid_timestamp"),
    } <= errors


def test_timeframe_mismatch_and_gaps():
    # hourly bars declared as 4h: spaced closer than the timeframe
    hourly = "2024-01-01T00:00:00Z,10,11,9,10.5,100\n2024-01-01T01:00:00Z,10,11,9,10.5,100\n"
    assert (2, "timestamp", "timeframe_mismatch") in _errors(hourly, timeframe="4h")
    report = validate(read_table(HEADER + GOOD + "2024-01-01T00:05:00Z,10,11,9,10.5,100\n", "csv"), timeframe="1m")
    assert report.valid and report.gap_count == 1 and report.missing_bars == 4  # reported, not filled
    assert report.gaps[0]["missing_bars"] == 4


def test_missing_columns_aliases_and_epoch_timestamps():
    report = validate(read_table("time,open,high,low,close\n1,2,3,1,2\n", "csv"), timeframe="1m")
    assert [(e["column"], e["code"]) for e in report.errors] == [("volume", "missing_column")]
    epoch = "date,open,high,low,close,volume\n1704067200,10,11,9,10.5,1\n1704067260,10,11,9,10.5,1\n"
    report = validate(read_table(epoch, "csv"), timeframe="1m")
    assert report.valid and report.start == pd.Timestamp("2024-01-01", tz="UTC")


def test_plan_row_cap_and_empty_file():
    assert (None, None, "too_many_rows") in _errors(GOOD * 3, max_rows=2)
    assert (None, None, "empty_file") in _errors("")


def test_unreadable_file_and_unknown_timeframe():
    with pytest.raises(ApplicationError) as exc:
        read_table(b"\x00\x01garbage", "parquet")
    assert exc.value.code == "unreadable_file"
    with pytest.raises(ApplicationError) as exc:
        validate(read_table(HEADER + GOOD, "csv"), timeframe="7m")
    assert exc.value.code == "invalid_timeframe"


def test_parquet_reads_like_csv(tmp_path):
    bars = generate_bars(50, seed=9)
    path = tmp_path / "b.parquet"
    bars.reset_index().rename(columns={"ts": "timestamp"}).to_parquet(path)
    report = validate(read_table(path.read_bytes(), "parquet"), timeframe="1d")
    assert report.valid and len(report.frame) == 50
