"""``manage.py compute_features``: files in, the same rows plus feature columns out; clear errors
with exit code 2. No tenant and no database involved."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from features.engine import compute_batch
from features.management.commands.compute_features import Command
from features.spec import DEFAULT_SPEC, FeatureSpec
from tests.features.factories import random_walk_bars


def bars_table(n=300, seed=1, **kwargs) -> pd.DataFrame:
    bars = random_walk_bars(n, seed, **kwargs)
    table = bars.reset_index(names="timestamp")
    table["timestamp"] = bars.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    table["symbol"] = "BTCUSDT"  # an extra column, kept as is
    return table


def run(*args) -> str:
    out = io.StringIO()
    call_command("compute_features", *args, stdout=out)
    return out.getvalue()


def fails(*args) -> CommandError:
    with pytest.raises(CommandError) as exc:
        run(*args)
    assert exc.value.returncode == 2
    return exc.value


def test_csv_in_csv_out_keeps_rows_and_columns_and_leaves_warmup_cells_empty(tmp_path):
    table = bars_table()
    src, dst = tmp_path / "bars.csv", tmp_path / "features.csv"
    table.to_csv(src, index=False)
    message = run("--input", str(src), "--output", str(dst))
    assert "300 rows" in message and "9 feature columns" in message

    with dst.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*table.columns, *DEFAULT_SPEC.columns()]
    assert [r["timestamp"] for r in rows] == table["timestamp"].tolist()  # every row, in order, untouched
    assert rows[0]["symbol"] == "BTCUSDT"
    assert rows[32]["macd_12_26_9"] == "" and rows[33]["macd_12_26_9"] != ""
    assert rows[13]["rsi_14"] == "" and rows[14]["rsi_14"] != ""

    out = pd.read_csv(dst)
    expected = compute_batch(random_walk_bars(300, 1), DEFAULT_SPEC, "1h")
    for col in DEFAULT_SPEC.columns():
        np.testing.assert_allclose(out[col].to_numpy(), expected[col].to_numpy(), rtol=1e-15, equal_nan=True)


def test_epoch_seconds_custom_spec_and_parquet_output_with_nulls(tmp_path):
    bars = random_walk_bars(24 * 30, seed=2)
    table = bars.reset_index(names="timestamp")
    table["timestamp"] = bars.index.as_unit("s").asi8
    src, dst, spec_file = tmp_path / "bars.csv", tmp_path / "out.parquet", tmp_path / "spec.json"
    table.to_csv(src, index=False)
    spec_json = {"features": [{"indicator": "rsi", "lags": [1]}, {"indicator": "rsi", "timeframe": "1d"}]}
    spec_file.write_text(json.dumps(spec_json))

    run("--input", str(src), "--output", str(dst), "--feature-set", str(spec_file), "--timeframe", "1h")

    result = pq.read_table(dst)
    spec = FeatureSpec.from_json(spec_json)
    assert result.column_names == [*table.columns, *spec.columns()]
    assert result.column("timestamp").to_pylist() == table["timestamp"].tolist()
    assert result.column("rsi_14").null_count == 14
    assert result.column("rsi_14_lag1").null_count == 15
    assert result.column("rsi_14_1d").null_count == (14 + 1) * 24 - 1  # data starts at midnight
    expected = compute_batch(bars, spec, "1h")
    np.testing.assert_allclose(
        result.column("rsi_14_1d").to_numpy(zero_copy_only=False), expected["rsi_14_1d"], equal_nan=True
    )


def test_parquet_input_with_datetime_column_and_inferred_timeframe(tmp_path):
    bars = random_walk_bars(100, seed=3, freq="5min")
    src, dst = tmp_path / "bars.parquet", tmp_path / "out.csv"
    bars.reset_index(names="timestamp").to_parquet(src)
    message = run("--input", str(src), "--output", str(dst))
    assert "timeframe 5m" in message
    assert len(pd.read_csv(dst)) == 100


def test_missing_columns_name_what_is_missing(tmp_path):
    src = tmp_path / "bars.csv"
    bars_table().drop(columns=["volume", "high"]).to_csv(src, index=False)
    error = fails("--input", str(src), "--output", str(tmp_path / "out.csv"))
    assert "missing column(s) high, volume" in str(error)


def test_unparseable_timestamp_names_its_row(tmp_path):
    table = bars_table()
    table.loc[41, "timestamp"] = "yesterday at noon"
    src = tmp_path / "bars.csv"
    table.to_csv(src, index=False)
    error = fails("--input", str(src), "--output", str(tmp_path / "out.csv"))
    assert "row 42" in str(error) and "yesterday at noon" in str(error) and "ISO 8601" in str(error)


def test_millisecond_timestamps_are_refused_with_advice(tmp_path):
    table = bars_table()
    table["timestamp"] = random_walk_bars(300, 1).index.as_unit("ms").asi8
    src = tmp_path / "bars.csv"
    table.to_csv(src, index=False)
    assert "milliseconds" in str(fails("--input", str(src), "--output", str(tmp_path / "out.csv")))


def test_non_numeric_price_and_unsorted_rows_are_refused(tmp_path):
    table = bars_table()
    table["close"] = table["close"].astype(object)
    table.loc[7, "close"] = "n/a"
    src = tmp_path / "bars.csv"
    table.to_csv(src, index=False)
    assert "Column close, row 8" in str(fails("--input", str(src), "--output", str(tmp_path / "o.csv")))
    bars_table().iloc[::-1].to_csv(src, index=False)
    assert "strictly increasing" in str(fails("--input", str(src), "--output", str(tmp_path / "o.csv")))


def test_invalid_spec_file_lists_every_problem_with_its_path(tmp_path):
    src, spec_file = tmp_path / "bars.csv", tmp_path / "spec.json"
    bars_table().to_csv(src, index=False)
    spec_file.write_text(json.dumps({"features": [{"indicator": "rsi", "params": {"length": 0}}, {"indicator": "x"}]}))
    message = str(fails("--input", str(src), "--output", str(tmp_path / "o.csv"), "--feature-set", str(spec_file)))
    assert "features[0].params.length" in message and "features[1].indicator" in message
    spec_file.write_text("{not json")
    assert "not valid JSON" in str(
        fails("--input", str(src), "--output", str(tmp_path / "o.csv"), "--feature-set", str(spec_file))
    )


def test_missing_input_file(tmp_path):
    assert "does not exist" in str(fails("--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o.csv")))


def test_help_explains_the_file_formats():
    text = Command().create_parser("manage.py", "compute_features").format_help().lower()
    for fragment in (
        "timestamp, open, high, low, close",
        "open time",
        "epoch seconds",
        "parquet",
        "--feature-set",
        "warm-up",
    ):
        assert fragment in text
