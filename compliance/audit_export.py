"""A tenant's audit trail for a time range, with what an auditor needs to verify it offline.

Each record comes with the chain batch that sealed it (``batch_first_id``..``batch_last_id``,
``batch_prev_hash``, ``batch_hash``) and the 8-byte digest the batch holds for it
(``sealed_digest``). Offline: the digest is ``sha256(canonical)[:8]`` with ``canonical`` the JSON
array ``[id, created_at, actor, action, object_type, object_id, details]`` (keys sorted, no
spaces, ``compliance.chain.canonical``); a batch's hash is ``sha256(prev_hash + digests)`` over
its digests in id order (listed with the batch in JSON exports); each batch's ``prev_hash`` is
the hash of the batch before. Records newer than the last seal have no batch yet.

Ranges are bounded (:data:`MAX_RANGE_DAYS`) and read in id order in chunks, never whole."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator

import orjson
from django.utils import timezone

from api.errors import ApplicationError

from .chain import DIGEST
from .models import AuditBatch, AuditRecord
from .services import audit_record

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
FORMATS = ("json", "csv")
CSV_COLUMNS = (
    "id", "created_at", "actor", "action", "object_type", "object_id", "details",
    "batch_first_id", "batch_last_id", "batch_prev_hash", "batch_hash", "sealed_digest",
)  # fmt: skip


def _moment(text: str | None, name: str, *, end: bool) -> dt.datetime | None:
    """An ISO date (a whole day: ``end`` means the day after it) or date-time; naive is UTC."""
    if text in (None, ""):
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), tzinfo=dt.UTC)
        else:
            # a "+02:00" offset arrives as " 02:00" when the query string was not encoded
            if "T" in text:
                text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text)
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApplicationError(
            "invalid_date",
            f"'{name}' must be an ISO date (2025-01-31) or date-time (2025-01-31T12:00:00Z).",
            {name: text},
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def audit_range_parse(start: str | None, end: str | None, *, now=None) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)``; defaults: end now, start :data:`DEFAULT_RANGE_DAYS` before end. 400 on a bad
    or reversed range, or one over :data:`MAX_RANGE_DAYS`."""
    e = _moment(end, "end", end=True) or (now or timezone.now())
    s = _moment(start, "start", end=False) or e - dt.timedelta(days=DEFAULT_RANGE_DAYS)
    if s >= e:
        raise ApplicationError(
            "invalid_range", "'start' must be before 'end'.", {"start": s.isoformat(), "end": e.isoformat()}
        )
    if e - s > dt.timedelta(days=MAX_RANGE_DAYS):
        raise ApplicationError(
            "range_too_long",
            f"A range covers at most {MAX_RANGE_DAYS} days; export longer periods in several ranges.",
            {"start": s.isoformat(), "end": e.isoformat(), "max_days": MAX_RANGE_DAYS},
        )
    return s, e


def audit_export_record(*, actor, start: dt.datetime, end: dt.datetime, fmt: str, channel: str) -> AuditRecord:
    """The export is itself audited (current tenant schema)."""
    return audit_record(
        actor, "audit.exported", None, {"start": start.isoformat(), "end": end.isoformat(), "format": fmt,
                                        "via": channel},
    )  # fmt: skip


def audit_records_in(start: dt.datetime, end: dt.datetime):
    return AuditRecord.objects.filter(created_at__gte=start, created_at__lt=end).order_by("id")


class _Batches:
    """The batch sealing each record, for records visited in id order: one query per batch."""

    def __init__(self) -> None:
        self.batch: AuditBatch | None = None
        self.sealed: dict[int, bytes] = {}
        self.exhausted_after: int | None = None  # no batch seals ids above this

    def of(self, record_id: int) -> tuple[AuditBatch | None, bytes | None]:
        if self.batch is None or record_id > self.batch.last_id:
            if self.exhausted_after is not None and record_id > self.exhausted_after:
                return None, None
            self.batch = AuditBatch.objects.filter(last_id__gte=record_id).order_by("last_id").first()
            if self.batch is None:
                self.exhausted_after = record_id - 1
                return None, None
            digests = bytes(self.batch.digests)
            self.sealed = {rid: digests[i * DIGEST : (i + 1) * DIGEST] for i, rid in enumerate(self.batch.ids)}
        if record_id < self.batch.first_id or record_id not in self.sealed:
            return None, None  # not sealed (yet), or inserted inside a sealed range: verify_audit says
        return self.batch, self.sealed[record_id]


def batch_ref(batch: AuditBatch | None) -> dict | None:
    if batch is None:
        return None
    return {"first_id": batch.first_id, "last_id": batch.last_id, "prev_hash": batch.prev_hash, "hash": batch.hash}


def batch_json(batch: AuditBatch) -> dict:
    """A whole seal: enough to recompute its hash offline."""
    return {**batch_ref(batch), "ids": list(batch.ids), "digests": bytes(batch.digests).hex()}


def record_json(record: AuditRecord, batch: AuditBatch | None, sealed: bytes | None) -> dict:
    return {
        "id": record.id,
        "created_at": record.created_at.isoformat(),
        "actor": record.actor,
        "action": record.action,
        "object_type": record.object_type,
        "object_id": record.object_id,
        "details": record.details,
        "batch": batch_ref(batch),
        "sealed_digest": sealed.hex() if sealed is not None else None,
    }


def with_batches(records) -> Iterator[tuple[AuditRecord, AuditBatch | None, bytes | None]]:
    """Records (in id order) with the batch that sealed each and its sealed digest."""
    batches = _Batches()
    for record in records:
        yield (record, *batches.of(record.id))


def page_batches(records: list[AuditRecord]) -> list[dict]:
    """The whole seals covering a page of records (id order), for offline verification."""
    if not records:
        return []
    lo, hi = records[0].id, records[-1].id
    return [batch_json(b) for b in AuditBatch.objects.filter(last_id__gte=lo, first_id__lte=hi).order_by("last_id")]


def csv_lines(start: dt.datetime, end: dt.datetime) -> Iterator[str]:
    """The range as CSV, one line at a time (header first); details as sorted-key JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for record, batch, sealed in with_batches(audit_records_in(start, end).iterator(chunk_size=2000)):
        ref = batch_ref(batch) or {}
        yield line([
            record.id, record.created_at.isoformat(), record.actor, record.action, record.object_type,
            record.object_id, orjson.dumps(record.details, option=orjson.OPT_SORT_KEYS).decode(),
            ref.get("first_id", ""), ref.get("last_id", ""), ref.get("prev_hash", ""), ref.get("hash", ""),
            sealed.hex() if sealed is not None else "",
        ])  # fmt: skip


def json_chunks(tenant_slug: str, start: dt.datetime, end: dt.datetime) -> Iterator[bytes]:
    """The range as one JSON document, written piece by piece: records, then every batch they
    refer to in full."""
    head = {"tenant": tenant_slug, "start": start.isoformat(), "end": end.isoformat()}
    yield orjson.dumps(head)[:-1] + b',"records":['
    seen: list[int] = []
    first = True
    for record, batch, sealed in with_batches(audit_records_in(start, end).iterator(chunk_size=2000)):
        if batch is not None and (not seen or seen[-1] != batch.last_id):
            seen.append(batch.last_id)
        yield (b"" if first else b",") + orjson.dumps(record_json(record, batch, sealed))
        first = False
    yield b'],"batches":['
    sep = b""
    for i in range(0, len(seen), 200):
        for batch in AuditBatch.objects.filter(last_id__in=seen[i : i + 200]).order_by("last_id"):
            yield sep + orjson.dumps(batch_json(batch))
            sep = b","
    yield b"]}\n"
