"""Writes for market data: instruments and bulk bar imports (validated, all-or-nothing, COPY)."""

from __future__ import annotations

import logging
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.db.models import F

from api.errors import ApplicationError
from compliance.services import audit_record
from tenants import limits

from .models import AssetClass, Bar, Instrument, LiveReplay
from .validation import Report, bar_problem, validate

SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,31}$")
ON_CONFLICT = ("error", "skip", "replace")
log = logging.getLogger(__name__)
_BAR_TABLE = Bar._meta.db_table
_COLUMNS = "ts, open, high, low, close, volume"


def symbol_clean(symbol: str) -> str:
    symbol = (symbol or "").strip().upper()
    if not SYMBOL_RE.match(symbol):
        raise ApplicationError(
            "invalid_symbol",
            "A symbol is 1-32 letters, digits or . _ : / - (e.g. BTC-USD, AAPL, EUR/USD).",
            {"symbol": symbol},
        )
    return symbol


def instrument_create(*, tenant, symbol: str, actor=None, **fields) -> Instrument:
    symbol = symbol_clean(symbol)
    if Instrument.objects.filter(symbol=symbol).exists():
        raise ApplicationError("instrument_exists", f"{symbol} already exists.", {"symbol": symbol}, status=409)
    limits.count_check(tenant, "instruments", Instrument.objects.count())
    with transaction.atomic():
        instrument = Instrument.objects.create(symbol=symbol, **fields)
        audit_record(actor, "instrument.created", instrument, {"symbol": symbol})
    return instrument


def instrument_update(*, instrument: Instrument, actor=None, **fields) -> Instrument:
    changed = {k: v for k, v in fields.items() if getattr(instrument, k) != v}
    if changed:
        with transaction.atomic():
            for k, v in changed.items():
                setattr(instrument, k, v)
            instrument.save(update_fields=list(changed))
            audit_record(actor, "instrument.updated", instrument, {k: str(v) for k, v in changed.items()})
    return instrument


def _instrument_for_import(tenant, symbol: str, asset_class: str | None) -> tuple[Instrument, bool]:
    instrument = Instrument.objects.select_for_update().filter(symbol=symbol).first()
    if instrument is not None:
        return instrument, False
    limits.count_check(tenant, "instruments", Instrument.objects.count())
    return Instrument.objects.create(symbol=symbol, asset_class=asset_class or AssetClass.OTHER), True


@dataclass
class ImportResult:
    symbol: str
    timeframe: str
    rows: int
    inserted: int
    skipped: int
    replaced: int
    instrument_created: bool
    report: Report

    def as_dict(self) -> dict:
        r = self.report.as_dict()
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "rows": self.rows,
            "inserted": self.inserted,
            "skipped": self.skipped,
            "replaced": self.replaced,
            "instrument_created": self.instrument_created,
            "start": r["start"],
            "end": r["end"],
            "gap_count": r["gap_count"],
            "missing_bars": r["missing_bars"],
            "gaps": r["gaps"],
        }


def validation_run(*, tenant, raw: pd.DataFrame, timeframe: str) -> Report:
    return validate(raw, timeframe=timeframe, max_rows=limits.plan_limit(tenant, "import_rows"))


def _invalid(report: Report) -> ApplicationError:
    return ApplicationError(
        "invalid_data",
        f"{report.error_count} problem(s) in {report.rows} row(s); nothing was imported. "
        "Fix the rows listed in details.errors and import again.",
        report.as_dict(),
        status=400,
    )


_PG_EPOCH_US = 946_684_800 * 1_000_000  # PostgreSQL timestamps count microseconds from 2000-01-01 UTC
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def _copy_payload(frame: pd.DataFrame, instrument_id: int | None = None, timeframe: str | None = None) -> bytes:
    """The bars in PostgreSQL's binary COPY format, built with one numpy record array (no per-row
    Python: 1 M bars in ~0.1 s, where CSV text formatting took ~18 s)."""
    fields: list[tuple[str, str]] = [("ncols", ">i2")]
    values: dict[str, object] = {}
    if instrument_id is not None:
        tf = timeframe.encode()
        fields += [("l_id", ">i4"), ("id", ">i8"), ("l_tf", ">i4"), ("tf", f"S{len(tf)}")]
        values.update(l_id=8, id=instrument_id, l_tf=len(tf), tf=tf)
    fields += [("l_ts", ">i4"), ("ts", ">i8")]
    values.update(l_ts=8, ts=frame.index.as_unit("ns").asi8 // 1000 - _PG_EPOCH_US)
    for col in ("open", "high", "low", "close", "volume"):
        fields += [(f"l_{col}", ">i4"), (col, ">f8")]
        values.update({f"l_{col}": 8, col: frame[col].to_numpy()})
    rows = np.empty(len(frame), dtype=np.dtype(fields))
    rows["ncols"] = (len(fields) - 1) // 2
    for name, value in values.items():
        rows[name] = value
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def bars_import(
    *,
    tenant,
    symbol: str,
    timeframe: str,
    raw: pd.DataFrame,
    on_conflict: str = "error",
    asset_class: str | None = None,
    actor=None,
    progress=None,
) -> ImportResult:
    """Validate every row, then write all of them or none.

    Overlap with stored bars is never silent: ``error`` (default) refuses, ``skip`` keeps the stored
    bars, ``replace`` overwrites them. A fresh range goes straight in with COPY; an overlapping one
    through a temporary table and one INSERT … ON CONFLICT. ``progress(percent, message)`` is called
    between the steps (import_bars prints it as a bar).
    """
    symbol = symbol_clean(symbol)
    if on_conflict not in ON_CONFLICT:
        raise ApplicationError("invalid_on_conflict", f"on_conflict must be one of {ON_CONFLICT}.")
    if asset_class is not None and asset_class not in AssetClass.values:
        raise ApplicationError("invalid_asset_class", f"asset_class must be one of {AssetClass.values}.")
    progress = progress or (lambda pct, msg: None)
    progress(5, "validating")
    report = validation_run(tenant=tenant, raw=raw, timeframe=timeframe)
    if not report.valid:
        raise _invalid(report)
    frame = report.frame
    progress(35, "writing")
    with transaction.atomic():
        instrument, created = _instrument_for_import(tenant, symbol, asset_class)
        in_range = Bar.objects.filter(
            instrument=instrument, timeframe=timeframe, ts__gte=report.start, ts__lte=report.end
        ).exists()
        skipped = replaced = 0
        with connection.cursor() as cur:
            if not in_range:
                sql = f"COPY {_BAR_TABLE} (instrument_id, timeframe, {_COLUMNS}) FROM STDIN WITH (FORMAT binary)"
                with cur.copy(sql) as copy:
                    copy.write(_copy_payload(frame, instrument.pk, timeframe))
                inserted = len(frame)
            else:
                cur.execute("DROP TABLE IF EXISTS pg_temp._bars_in")  # an enclosing transaction may hold one
                cur.execute(
                    "CREATE TEMP TABLE _bars_in (ts timestamptz, open float8, high float8, low float8, "
                    "close float8, volume float8) ON COMMIT DROP"
                )
                with cur.copy(f"COPY _bars_in ({_COLUMNS}) FROM STDIN WITH (FORMAT binary)") as copy:
                    copy.write(_copy_payload(frame))
                cur.execute(
                    f"SELECT count(*), min(i.ts), max(i.ts) FROM _bars_in i JOIN {_BAR_TABLE} b "
                    "ON b.instrument_id = %s AND b.timeframe = %s AND b.ts = i.ts",
                    [instrument.pk, timeframe],
                )
                overlap, first, last = cur.fetchone()
                if overlap and on_conflict == "error":
                    raise ApplicationError(
                        "overlapping_bars",
                        f"{overlap} bar(s) of {symbol} {timeframe} from {first:%Y-%m-%d %H:%M} to "
                        f"{last:%Y-%m-%d %H:%M} are already stored. Import again with on_conflict=skip "
                        "(keep them) or on_conflict=replace (overwrite them).",
                        {"overlap": overlap, "first": first.isoformat(), "last": last.isoformat()},
                        status=409,
                    )
                action = (
                    "DO NOTHING"
                    if on_conflict == "skip"
                    else "DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, "
                    "close = EXCLUDED.close, volume = EXCLUDED.volume"
                )
                cur.execute(
                    f"INSERT INTO {_BAR_TABLE} (instrument_id, timeframe, {_COLUMNS}) "
                    f"SELECT %s, %s, {_COLUMNS} FROM _bars_in ON CONFLICT (instrument_id, timeframe, ts) {action}",
                    [instrument.pk, timeframe],
                )
                if on_conflict == "skip":
                    skipped, inserted = overlap, len(frame) - overlap
                else:
                    replaced, inserted = overlap, len(frame) - overlap
        progress(90, "recording")
        _bars_changed(instrument)
        audit_record(
            actor,
            "bars.imported",
            instrument,
            {
                "timeframe": timeframe,
                "rows": len(frame),
                "inserted": inserted,
                "skipped": skipped,
                "replaced": replaced,
                "start": report.start.isoformat(),
                "end": report.end.isoformat(),
                "on_conflict": on_conflict,
            },
        )
    progress(100, "done")
    return ImportResult(symbol, timeframe, len(frame), inserted, skipped, replaced, created, report)


def bars_append(*, tenant, bars: list[dict]) -> int:
    """Streamed bars (``market.data.update`` events: symbol, timeframe, ts in epoch seconds, OHLCV)
    of any instruments, in ONE statement inside the caller's transaction; bars already stored are
    kept (a replayed bar never rewrites history). Instruments are created as needed (plan cap
    checked). Producers validate what they publish (the feed adapter, the replay); a bar breaking
    the OHLC rules is skipped here all the same, logged, never stored. Not audited bar by bar: the
    stream's status counts them. Returns the number of new bars."""
    if not bars:
        return 0
    good = [b for b in bars if _bar_sane(b)]
    if len(good) < len(bars):
        log.warning("stream: %d bar(s) breaking the OHLC rules skipped", len(bars) - len(good))
    symbols = {symbol_clean(b["symbol"]) for b in good}
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols)}
    for symbol in sorted(symbols - instruments.keys()):
        instruments[symbol], _ = _instrument_for_import(tenant, symbol, None)
    if not good:
        return 0
    keys = ("ts", "open", "high", "low", "close", "volume")
    rows = [(instruments[symbol_clean(b["symbol"])].pk, b["timeframe"], *(b[k] for k in keys)) for b in good]
    cols = list(zip(*rows, strict=True))
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {_BAR_TABLE} (instrument_id, timeframe, {_COLUMNS}) "
            "SELECT i, tf, to_timestamp(t), o, h, l, c, v FROM unnest("
            "%s::int[], %s::text[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], "
            "%s::float8[]) AS u(i, tf, t, o, h, l, c, v) ON CONFLICT (instrument_id, timeframe, ts) DO NOTHING",
            [list(c) for c in cols],
        )
        inserted = cur.rowcount
    touched = {instruments[symbol_clean(b["symbol"])].pk for b in good}
    Instrument.objects.filter(pk__in=touched).update(bars_version=F("bars_version") + 1)
    return inserted


def _bar_sane(b: dict) -> bool:
    try:
        o, h, lo, c, v = (float(b[k]) for k in ("open", "high", "low", "close", "volume"))
        ts = int(b["ts"])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        all(math.isfinite(x) for x in (o, h, lo, c, v)) and bar_problem(b.get("timeframe"), ts, o, h, lo, c, v) is None
    )


def _bars_changed(instrument: Instrument) -> None:
    Instrument.objects.filter(pk=instrument.pk).update(bars_version=F("bars_version") + 1)
    instrument.refresh_from_db(fields=["bars_version"])


def bars_delete(*, instrument: Instrument, timeframe: str | None = None, actor=None) -> int:
    qs = Bar.objects.filter(instrument=instrument)
    if timeframe:
        qs = qs.filter(timeframe=timeframe)
    with transaction.atomic():
        deleted, _ = qs.delete()
        _bars_changed(instrument)
        audit_record(actor, "bars.deleted", instrument, {"timeframe": timeframe or "all", "rows": deleted})
    return deleted


def bars_retention_apply(*, tenant, now=None) -> int:
    """Delete the bars older than the plan's ``market_data_retention_days`` (None: kept). Decisions
    and audit records are not market data: they are kept five years whatever the plan."""
    import datetime as dt

    from django.utils import timezone

    from tenants import limits

    days = limits.plan_limit(tenant, "market_data_retention_days")
    if days is None:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    total = 0
    for instrument in Instrument.objects.filter(bars__ts__lt=cutoff).distinct():
        with transaction.atomic():
            deleted, _ = Bar.objects.filter(instrument=instrument, ts__lt=cutoff).delete()
            if deleted:
                _bars_changed(instrument)
                audit_record("system:retention", "bars.expired", instrument,
                             {"before": cutoff.isoformat(), "rows": deleted, "retention_days": days})  # fmt: skip
        total += deleted
    return total


# --- live replay (a stored series continued as a live market) -----------------------------------

REPLAY_SPEED_MAX = 50.0


def live_replay_set(
    *, symbol: str, timeframe: str, enabled: bool = True, speed: float | None = None, actor=None
) -> LiveReplay:
    """Turn the live replay of an instrument's series on or off (the ``replay_market --all``
    process picks the change up within seconds). It needs at least two stored bars to continue."""
    from django.conf import settings

    from .models import Timeframe

    if timeframe not in Timeframe.values:
        raise ApplicationError(
            "invalid_timeframe", f"timeframe is one of {', '.join(Timeframe.values)}.", {"timeframe": timeframe}
        )
    speed = settings.LIVE_REPLAY_SPEED if speed is None else float(speed)
    if not (0 < speed <= REPLAY_SPEED_MAX):
        raise ApplicationError(
            "invalid_speed", f"speed is bars per second, above 0 and at most {REPLAY_SPEED_MAX:g}.", {"speed": speed}
        )
    instrument = Instrument.objects.filter(symbol=symbol_clean(symbol)).first()
    if instrument is None:
        raise ApplicationError("instrument_not_found", f"{symbol} has no bars here; import some first.", status=404)
    if enabled and Bar.objects.filter(instrument=instrument, timeframe=timeframe).count() < 2:
        raise ApplicationError(
            "not_enough_data",
            f"{instrument.symbol} {timeframe} needs at least 2 stored bars to continue live; import more bars.",
        )
    with transaction.atomic():
        replay, created = LiveReplay.objects.select_for_update().get_or_create(
            instrument=instrument, timeframe=timeframe, defaults={"speed": speed, "enabled": enabled}
        )
        if not created and (replay.enabled, replay.speed) == (enabled, speed):
            return replay
        replay.enabled, replay.speed = enabled, speed
        replay.save(update_fields=["enabled", "speed", "updated_at"])
        audit_record(
            actor,
            "live_replay.started" if enabled else "live_replay.stopped",
            instrument,
            {"timeframe": timeframe, "speed": speed},
        )
    return replay
