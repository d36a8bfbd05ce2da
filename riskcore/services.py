"""Writes: anomaly detection (stores and emits), posted fundamentals, batch jobs."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from api.errors import ApplicationError
from marketdata.selectors import bars_frame, instrument_get, only_timeframe

from . import detection
from .models import Anomaly, BatchJob, Fundamentals

ANOMALY_METHODS = ("robust_z", "isolation_forest")
MIN_ANOMALY_BARS = 30


def _ts(value) -> int:
    return int(pd.Timestamp(value).timestamp())


def _store(rows: list[Anomaly]) -> list[Anomaly]:
    """Insert the ones not stored yet; emit ``anomaly.detected`` for each new one after commit."""
    if not rows:
        return []
    stored = Anomaly.objects.filter(symbol__in={a.symbol for a in rows}, ts__in={a.ts for a in rows})
    keys = stored.values_list("pk", "kind", "symbol", "timeframe", "ts")
    existing = {(k, s, tf, ts): pk for pk, k, s, tf, ts in keys}
    fresh = []
    for a in rows:
        a.pk = existing.get((a.kind, a.symbol, a.timeframe, a.ts))  # found again: its stored id
        if a.pk is None:
            fresh.append(a)
    with transaction.atomic():
        created = Anomaly.objects.bulk_create(fresh, ignore_conflicts=False)
        _notify(created)
        schema = connection.schema_name  # the callback may run after the request reset it
        transaction.on_commit(lambda: _emit(created, schema))
    return created


def _notify(anomalies: list[Anomaly]) -> None:
    """One notification per symbol and detection run (subscribers choose the channel)."""
    from notifications.delivery import emit

    by_symbol: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_symbol.setdefault(a.symbol, []).append(a)
    for symbol, found in by_symbol.items():
        top = max(found, key=lambda a: abs(a.score))
        kinds = ", ".join(sorted({a.kind for a in found}))
        emit("anomaly.detected", {"symbol": symbol, "count": len(found), "kinds": kinds,
                                  "top_score": round(top.score, 2), "top_ts": top.ts.isoformat()})  # fmt: skip


def _emit(anomalies: list[Anomaly], schema: str) -> None:
    from eventbus import bus

    if not anomalies:
        return
    bus.publish_many(
        "anomaly.detected",
        [
            {
                "anomaly_id": a.pk,
                "kind": a.kind,
                "symbol": a.symbol,
                "timeframe": a.timeframe,
                "ts": _ts(a.ts),
                "value": float(a.value),
                "score": float(a.score),
                "method": a.method,
            }  # fmt: skip
            for a in anomalies
        ],
        schema=schema,
    )


def bar_anomalies_detect(
    *,
    symbol: str,
    timeframe: str | None = None,
    window: int = 500,
    threshold: float = 5.0,
    method: str = "robust_z",
    contamination: float = 0.01,
) -> dict:
    """Score the latest ``window`` bars; store (once) and emit every flagged one.

    robust_z: log returns and log volumes, flagged at ``|z| >= threshold``;
    isolation_forest: (log return, log volume change, high-low range / close) rows, the top
    ``contamination`` share by IsolationForest score flagged."""
    if method not in ANOMALY_METHODS:
        raise ApplicationError(
            "invalid_method", f"method must be one of {ANOMALY_METHODS}.", {"choices": list(ANOMALY_METHODS)}
        )
    instrument = instrument_get(symbol=symbol)
    tf = timeframe or only_timeframe(instrument=instrument, hint="pass timeframe")
    frame = bars_frame(instrument=instrument, timeframe=tf, limit=window)
    if len(frame) < MIN_ANOMALY_BARS:
        raise ApplicationError(
            "insufficient_bars",
            f"{instrument.symbol} has {len(frame)} bars in {tf}; detection needs at least {MIN_ANOMALY_BARS}.",
            {"bars": len(frame), "required": MIN_ANOMALY_BARS},
        )
    close = frame["close"].to_numpy()
    logret = np.diff(np.log(close))
    logvol = np.log1p(frame["volume"].to_numpy())[1:]
    ts = frame.index[1:]
    rows: list[Anomaly] = []
    if method == "robust_z":
        for kind, series in ((Anomaly.Kind.BAR_RETURN, logret), (Anomaly.Kind.BAR_VOLUME, logvol)):
            z = detection.robust_z(series)
            for i in detection.flagged(z, threshold):
                rows.append(Anomaly(kind=kind, symbol=instrument.symbol, timeframe=tf, ts=ts[i].to_pydatetime(),
                                    value=float(series[i]), score=float(z[i]), method=method,
                                    detail={"threshold": threshold}))  # fmt: skip
    else:
        rng = (frame["high"] - frame["low"]).to_numpy()[1:] / close[1:]
        feats = np.column_stack([logret, np.diff(np.log1p(frame["volume"].to_numpy())), rng])
        scores = detection.isolation_scores(feats)
        k = max(1, int(round(contamination * len(scores))))
        detail = {"contamination": contamination, "features": ["log_return", "log_volume_change", "range"]}
        for i in np.argsort(-scores)[:k]:
            rows.append(Anomaly(kind=Anomaly.Kind.BAR_ISOLATION, symbol=instrument.symbol, timeframe=tf,
                                ts=ts[i].to_pydatetime(), value=float(logret[i]), score=float(scores[i]),
                                method=method, detail=detail))  # fmt: skip
    created = _store(rows)
    return {
        "symbol": instrument.symbol,
        "timeframe": tf,
        "bars": len(frame),
        "method": method,
        "flagged": len(rows),
        "new": len(created),
        "anomalies": sorted(rows, key=lambda a: a.ts),
    }


def decision_anomalies_detect(
    *, symbol: str | None = None, bucket: str = "1h", window: int = 500, threshold: float = 5.0
) -> dict:
    """The decision stream per ``bucket`` (1h or 1d) over its latest ``window`` buckets: the count
    of decisions (empty buckets count as 0) and the mean confidence, flagged at ``|z| >= threshold``.
    ``symbol`` None reads every decision (stored under symbol ``*``)."""
    from intelligence.models import Decision

    if bucket not in ("1h", "1d"):
        raise ApplicationError("invalid_bucket", "bucket must be 1h or 1d.", {"choices": ["1h", "1d"]})
    qs = Decision.objects.all()
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    rows = list(qs.order_by("-created_at").values_list("created_at", "confidence")[: window * 200])
    label = symbol.upper() if symbol else "*"
    if not rows:
        return {"symbol": label, "bucket": bucket, "buckets": 0, "flagged": 0, "new": 0, "anomalies": []}
    frame = pd.DataFrame(rows, columns=["ts", "confidence"]).set_index("ts").sort_index()
    freq = "1h" if bucket == "1h" else "1D"
    grouped = frame["confidence"].resample(freq)
    counts = grouped.count().iloc[-window:]
    means = grouped.mean().reindex(counts.index)
    flagged: list[Anomaly] = []
    z = detection.robust_z(counts.to_numpy(dtype="float64"))
    for i in detection.flagged(z, threshold):
        flagged.append(Anomaly(kind=Anomaly.Kind.DECISION_RATE, symbol=label, timeframe=bucket,
                               ts=counts.index[i].to_pydatetime(), value=float(counts.iloc[i]), score=float(z[i]),
                               method="robust_z", detail={"threshold": threshold}))  # fmt: skip
    present = means.dropna()
    if len(present) >= 3:
        zc = detection.robust_z(present.to_numpy())
        for i in detection.flagged(zc, threshold):
            flagged.append(Anomaly(kind=Anomaly.Kind.CONFIDENCE_SHIFT, symbol=label, timeframe=bucket,
                                   ts=present.index[i].to_pydatetime(), value=float(present.iloc[i]),
                                   score=float(zc[i]), method="robust_z", detail={"threshold": threshold}))  # fmt: skip
    created = _store(flagged)
    return {"symbol": label, "bucket": bucket, "buckets": len(counts), "flagged": len(flagged), "new": len(created),
            "anomalies": sorted(flagged, key=lambda a: a.ts)}  # fmt: skip


def usage_anomalies_detect(*, bucket: str = "1h", window: int = 500, threshold: float = 5.0) -> dict:
    """The tenant's API usage per ``bucket`` (1h or 1d) over its latest ``window`` buckets, from the
    metered hourly usage: the request count (empty buckets count as 0) and the share of requests
    answered with an error (4xx, 429, 5xx), each flagged at ``|z| >= threshold`` (robust z). A burst
    of calls or of refusals (a leaked key, a broken client) shows here. Stored under symbol ``*``."""
    from django.db.models import Sum

    from analytics.models import Kind, UsageHourly

    if bucket not in ("1h", "1d"):
        raise ApplicationError("invalid_bucket", "bucket must be 1h or 1d.", {"choices": ["1h", "1d"]})
    hours = window * (24 if bucket == "1d" else 1)
    rows = list(
        UsageHourly.objects.filter(kind=Kind.REQUEST)
        .values("hour", "status")
        .annotate(n=Sum("count"))
        .order_by("-hour")[: hours * 8]
    )
    if not rows:
        return {"symbol": "*", "bucket": bucket, "buckets": 0, "flagged": 0, "new": 0, "anomalies": []}
    frame = pd.DataFrame(rows)
    frame["errors"] = np.where(frame["status"].isin(["4xx", "429", "5xx"]), frame["n"], 0)
    frame = frame.groupby("hour")[["n", "errors"]].sum().sort_index()
    freq = "1h" if bucket == "1h" else "1D"
    per = frame.resample(freq).sum().iloc[-window:]
    flagged: list[Anomaly] = []
    counts = per["n"].to_numpy(dtype="float64")
    zn = detection.robust_z(counts)
    for i in detection.flagged(zn, threshold):
        flagged.append(Anomaly(kind=Anomaly.Kind.USAGE_RATE, symbol="*", timeframe=bucket,
                               ts=per.index[i].to_pydatetime(), value=float(counts[i]),
                               score=float(zn[i]), method="robust_z",
                               detail={"threshold": threshold}))  # fmt: skip
    busy = per[per["n"] > 0]
    if len(busy) >= 3:
        share = (busy["errors"] / busy["n"]).to_numpy(dtype="float64")
        z = detection.robust_z(share)
        for i in detection.flagged(z, threshold):
            flagged.append(Anomaly(kind=Anomaly.Kind.USAGE_ERRORS, symbol="*", timeframe=bucket,
                                   ts=busy.index[i].to_pydatetime(), value=float(share[i]), score=float(z[i]),
                                   method="robust_z", detail={"threshold": threshold}))  # fmt: skip
    created = _store(flagged)
    return {"symbol": "*", "bucket": bucket, "buckets": len(per), "flagged": len(flagged), "new": len(created),
            "anomalies": sorted(flagged, key=lambda a: a.ts)}  # fmt: skip


def anomaly_sweep(*, window: int = 500, threshold: float = 5.0) -> dict:
    """Beat, hourly, in a tenant's schema: robust-z detection over the latest ``window`` bars of
    every stored instrument and timeframe (with enough bars), over the decision stream and over the
    API usage (1-hour buckets). Stores and emits only what was not found before, so a sweep repeats nothing."""
    from marketdata.models import Instrument
    from marketdata.selectors import coverage

    symbols = dict(Instrument.objects.values_list("pk", "symbol"))
    scanned = new = 0
    for pk, entries in coverage(instrument_ids=list(symbols)).items():
        for entry in entries:
            if entry["bars"] < MIN_ANOMALY_BARS:
                continue
            found = bar_anomalies_detect(symbol=symbols[pk], timeframe=entry["timeframe"], window=window,
                                         threshold=threshold)  # fmt: skip
            scanned += 1
            new += found["new"]
    decisions = decision_anomalies_detect(bucket="1h", window=window, threshold=threshold)
    usage = usage_anomalies_detect(bucket="1h", window=window, threshold=threshold)
    return {"series": scanned, "new_bar_anomalies": new, "new_decision_anomalies": decisions["new"],
            "new_usage_anomalies": usage["new"]}  # fmt: skip


def fundamentals_upsert(*, symbol: str, **fields) -> tuple[Fundamentals, bool]:
    """Store an instrument's fundamentals (the instrument must exist); a new post replaces the old."""
    instrument = instrument_get(symbol=symbol)
    if fields["shares_outstanding"] <= 0:
        raise ApplicationError("invalid_fundamentals", "shares_outstanding must be positive.",
                               {"shares_outstanding": fields["shares_outstanding"]})  # fmt: skip
    with transaction.atomic():
        return Fundamentals.objects.update_or_create(symbol=instrument.symbol, defaults=fields)


# --- batch jobs -------------------------------------------------------------------------------------

BATCH_MAX_SYMBOLS = 1000


def batch_create(*, analysis: str, symbols: list[str], params: dict, created_by: str) -> BatchJob:
    """Check every symbol exists (unknown ones: ``unknown_symbols``, nothing written), then queue."""
    from marketdata.models import Instrument

    from .tasks import batch_run_task

    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols))
    known = set(Instrument.objects.filter(symbol__in=wanted).values_list("symbol", flat=True))
    missing = [s for s in wanted if s not in known]
    if missing:
        raise ApplicationError("unknown_symbols", f"{len(missing)} symbols are not instruments of this tenant.",
                               {"symbols": missing[:50]})  # fmt: skip
    with transaction.atomic():
        job = BatchJob.objects.create(analysis=analysis, symbols=wanted, params=params, created_by=created_by)
        transaction.on_commit(lambda: batch_run_task.delay(job.pk))
    return job


def _one(analysis: str, symbol: str, params: dict) -> dict:
    from . import selectors

    if analysis == BatchJob.Analysis.RISK:
        return selectors.instrument_risk(symbol=symbol, **params)
    if analysis == BatchJob.Analysis.FORECAST:
        return selectors.instrument_forecast(symbol=symbol, **params)
    if analysis == BatchJob.Analysis.VALUATION:
        return selectors.instrument_valuation(symbol=symbol)
    out = bar_anomalies_detect(symbol=symbol, **params)
    out["anomalies"] = [selectors.anomaly_dict(a) for a in out["anomalies"]]
    return out


def batch_run(*, batch_id: int) -> str:
    """Run a queued job symbol by symbol; progress saved every few symbols. Idempotent: a finished
    job is left as it is; a re-delivered running one starts over."""
    job = BatchJob.objects.filter(pk=batch_id).first()
    if job is None or job.status in (BatchJob.Status.DONE, BatchJob.Status.FAILED):
        return job.status if job else "missing"
    started = time.perf_counter()
    job.status, job.started_at, job.results, job.done, job.failed, job.percent = (
        BatchJob.Status.RUNNING, timezone.now(), {}, 0, 0, 0.0,
    )  # fmt: skip
    job.save()
    total = len(job.symbols)
    step = max(1, total // 20)
    try:
        for i, symbol in enumerate(job.symbols, 1):
            try:
                job.results[symbol] = _one(job.analysis, symbol, job.params)
                job.done += 1
            except ApplicationError as exc:
                job.results[symbol] = {"error": {"code": exc.code, "message": exc.message}}
                job.failed += 1
            if i % step == 0 or i == total:
                job.percent = round(100.0 * i / total, 1)
                job.save(update_fields=["results", "done", "failed", "percent"])
    except Exception as exc:  # an unexpected error fails the job, with what it had
        job.status, job.error = BatchJob.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    else:
        job.status = BatchJob.Status.DONE
    job.finished_at = timezone.now()
    job.seconds = time.perf_counter() - started
    job.save()
    return job.status
