"""Posted bars (a JSON list of objects) take a fast path when clean; whatever path a payload takes,
the answer is the one the full validation gives."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from marketdata import validation
from marketdata.synthetic import generate_bars
from marketdata.validation import frame_from_records, validate, validate_records


def _records(n=300, timeframe="1h", seed=5, stamp=lambda ts: ts.isoformat()):
    bars = generate_bars(n, timeframe=timeframe, seed=seed)
    return [{"timestamp": stamp(ts), **row} for ts, row in bars.to_dict("index").items()]


def _full(records, timeframe="1h"):
    return validate(frame_from_records(copy.deepcopy(records)), timeframe=timeframe)


def _assert_same_answer(records, timeframe="1h"):
    got, want = validate_records(records, timeframe=timeframe), _full(records, timeframe)
    assert got.as_dict() == want.as_dict()
    if want.frame is None:
        assert got.frame is None
    else:
        pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True)
    return got


CLEAN = {
    "isoformat +00:00": lambda: _records(),
    "Z suffix": lambda: _records(stamp=lambda ts: ts.strftime("%Y-%m-%dT%H:%M:%SZ")),
    "naive": lambda: _records(stamp=lambda ts: ts.strftime("%Y-%m-%d %H:%M:%S")),
    "offset +02:00": lambda: _records(stamp=lambda ts: ts.tz_convert("Etc/GMT-2").isoformat()),
    "epoch seconds": lambda: _records(stamp=lambda ts: int(ts.timestamp())),
    "epoch milliseconds": lambda: _records(stamp=lambda ts: int(ts.timestamp()) * 1000),
    "daily dates": lambda: _records(timeframe="1d", stamp=lambda ts: ts.date().isoformat()),
    "aliases and extra keys": lambda: [
        {
            "time": r["timestamp"],
            "open": r["open"],
            "high": r["high"],
            "low": r["low"],
            "close": r["close"],
            "vol": r["volume"],
            "note": "x",
        }
        for r in _records()
    ],
}


@pytest.mark.parametrize("case", sorted(CLEAN))
def test_clean_payloads_take_the_fast_path_with_the_full_paths_answer(case, monkeypatch):
    records = CLEAN[case]()
    timeframe = "1d" if case == "daily dates" else "1h"
    assert validation._records_fast(records, validation.TIMEFRAME_SECONDS[timeframe]) is not None
    report = _assert_same_answer(records, timeframe)
    assert report.valid and len(report.frame) == len(records)


def test_gaps_are_reported_the_same_on_the_fast_path():
    records = _records()
    del records[10:13], records[100]
    report = _assert_same_answer(records)
    assert (report.gap_count, report.missing_bars) == (2, 4)
    assert validation._records_fast(records, 3600) is not None


def _mangled(index, key, value):
    records = _records()
    records[index][key] = value
    return records


BROKEN = {
    "price as a string": _mangled(5, "close", "101.5"),
    "price null": _mangled(5, "close", None),
    "price bool": _mangled(5, "open", True),
    "negative price": _mangled(5, "low", -1.0),
    "high below close": _mangled(5, "high", 1.0),
    "negative volume": _mangled(7, "volume", -3),
    "bad timestamp": _mangled(3, "timestamp", "yesterday"),
    "week date": _mangled(3, "timestamp", "2024-W01-1"),
    "mixed zones": _mangled(3, "timestamp", "2024-01-01T03:00:00"),
    "misaligned": _mangled(3, "timestamp", _records()[3]["timestamp"].replace(":00:00", ":30:00")),
    "duplicate": _mangled(4, "timestamp", _records()[3]["timestamp"]),
    "missing key": [{k: v for k, v in r.items() if k != "volume"} for r in _records()],
    "one row without volume": [
        r if i != 9 else {k: v for k, v in r.items() if k != "volume"} for i, r in enumerate(_records())
    ],
    "fractional seconds": _mangled(3, "timestamp", _records()[3]["timestamp"].replace(":00+", ":00.5+")),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_anything_else_gets_the_full_paths_answer(case):
    report = _assert_same_answer(BROKEN[case])
    if case != "price as a string":  # numbers sent as text are accepted by both paths
        assert not report.valid


def test_the_plan_row_cap_applies_to_posted_bars():
    report = validate_records(_records(50), timeframe="1h", max_rows=10)
    assert [e["code"] for e in report.errors] == ["too_many_rows"]
