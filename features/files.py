"""Features for a file of bars: CSV or Parquet in, the same table plus feature columns out.

Used by ``manage.py compute_features``; no tenant, no database. The output keeps every input row
in input order and every input column untouched (the timestamp column is written back as it was
read), so it can be joined or diffed against the input line by line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from api.errors import ApplicationError
from features.engine import bars_arrays, compute_batch
from features.indicators import BAR_COLUMNS
from features.spec import DEFAULT_SPEC, FeatureSpec
from features.timeframes import TIMEFRAMES

REQUIRED_COLUMNS = ("timestamp", *BAR_COLUMNS)
_EPOCH_SECONDS_MAX = 1e11  # year 5138: anything larger is milliseconds or nanoseconds


_ANY_TIMEFRAME = "1m"  # stands in when no feature has its own timeframe: then the base one changes nothing


@dataclass(frozen=True)
class FileResult:
    rows: int
    columns: list[str]
    timeframe: str | None  # None: irregular bars and no feature that needs it
    warmup: int


def feature_spec_load(source: str) -> FeatureSpec:
    """``default`` or the path of a JSON spec file."""
    if source == "default":
        return DEFAULT_SPEC
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ApplicationError("file_unreadable", f"Cannot read feature set {source}: {exc.strerror}.") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ApplicationError("invalid_spec", f"Feature set {source} is not valid JSON: {exc}.") from exc
    return FeatureSpec.from_json(data)


def features_file_compute(
    *, input_path: str, output_path: str, spec: FeatureSpec, timeframe: str | None = None
) -> FileResult:
    table = table_read(input_path)
    bars = bars_from_table(table)
    bars_arrays(bars)  # order and values first: a reversed file should not read as "unknown timeframe"
    base = timeframe or spec.timeframe or timeframe_infer(bars.index)
    if base is None:
        if spec.has_higher_timeframes():
            raise ApplicationError(
                "timeframe_required",
                "Cannot tell the bars' timeframe from their spacing, and higher-timeframe features need it; "
                f"pass --timeframe (one of {', '.join(TIMEFRAMES)}).",
            )
        base = None
    features = compute_batch(bars, spec, base or _ANY_TIMEFRAME)
    clashes = [c for c in features.columns if c in table.columns]
    if clashes:
        raise ApplicationError(
            "column_clash", f"Input already has column(s) {', '.join(clashes)}; rename them or drop them first."
        )
    out = table.copy()
    for col in features.columns:
        out[col] = features[col].to_numpy()
    table_write(out, output_path)
    return FileResult(
        rows=len(out), columns=list(features.columns), timeframe=base, warmup=spec.warmup(base or _ANY_TIMEFRAME)
    )


def _is_parquet(path: str) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def table_read(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ApplicationError("file_not_found", f"Input file {path} does not exist.")
    try:
        table = pd.read_parquet(path) if _is_parquet(path) else pd.read_csv(path)
    except Exception as exc:  # the readers raise many types; all mean "not a table we can read"
        kind = "Parquet" if _is_parquet(path) else "CSV"
        raise ApplicationError("file_unreadable", f"Cannot read {path} as {kind}: {exc}") from exc
    if "timestamp" not in table.columns and table.index.name == "timestamp":
        table = table.reset_index()  # a Parquet file written from a frame indexed by time
    return table


def table_write(frame: pd.DataFrame, path: str) -> None:
    """CSV: NaN as empty cells, floats at full precision. Parquet: NaN as null."""
    try:
        if _is_parquet(path):
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        else:
            frame.to_csv(path, index=False, na_rep="")
    except (OSError, ValueError, TypeError) as exc:  # pyarrow's conversion errors are ValueError/TypeError
        reason = getattr(exc, "strerror", None) or exc
        raise ApplicationError("file_unwritable", f"Cannot write {path}: {reason}.") from exc


def bars_from_table(table: pd.DataFrame) -> pd.DataFrame:
    """Bars indexed by UTC open time, float OHLCV; errors name the column and the data row (1-based)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ApplicationError(
            "invalid_bars",
            f"Input is missing column(s) {', '.join(missing)}; it needs {', '.join(REQUIRED_COLUMNS)} "
            f"(found: {', '.join(map(str, table.columns)) or 'none'}).",
            {"missing": missing},
        )
    index = timestamps_parse(table["timestamp"])
    data = {}
    for name in BAR_COLUMNS:
        raw = table[name]
        values = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise ApplicationError(
                "invalid_bars",
                f"Column {name}, row {i + 1}: {raw.iloc[i]!r} is not a number.",
                {"column": name, "row": i + 1},
            )
        data[name] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(data, index=index)


def timestamps_parse(column: pd.Series) -> pd.DatetimeIndex:
    """ISO 8601 strings (UTC unless they carry an offset), epoch seconds, or Parquet datetimes."""
    if pd.api.types.is_datetime64_any_dtype(column):
        index = pd.DatetimeIndex(column)
        return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if not pd.api.types.is_numeric_dtype(column):
        as_number = pd.to_numeric(column, errors="coerce")
        if as_number.notna().all() and len(column):
            column = as_number  # digits in a text column: epoch seconds
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        seconds = column.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(seconds))
        if bad.size:
            raise ApplicationError(
                "invalid_timestamps", f"Timestamp row {bad[0] + 1} is empty or not a number.", {"row": int(bad[0]) + 1}
            )
        if len(seconds) and np.abs(seconds).max() > _EPOCH_SECONDS_MAX:
            raise ApplicationError(
                "invalid_timestamps",
                "Numeric timestamps must be epoch SECONDS; these look like milliseconds or smaller units. "
                "Divide them by 1000 (or use ISO 8601 strings).",
            )
        if pd.api.types.is_integer_dtype(column):
            return pd.DatetimeIndex(pd.to_datetime(column.to_numpy(), unit="s", utc=True))
        return pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True))
    parsed = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise ApplicationError(
            "invalid_timestamps",
            f"Timestamp row {i + 1}: {column.iloc[i]!r} is neither ISO 8601 (e.g. 2024-01-02T09:30:00Z) "
            "nor epoch seconds.",
            {"row": i + 1},
        )
    return pd.DatetimeIndex(parsed)


def timeframe_infer(index: pd.DatetimeIndex) -> str | None:
    """The known timeframe equal to the most common spacing between bars, if there is one."""
    if len(index) < 2:
        return None
    steps = np.diff(index.as_unit("s").asi8)
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    return next((name for name, seconds in TIMEFRAMES.items() if seconds == step), None)
