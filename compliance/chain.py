"""The audit trail's hash chain: tamper-evident without a serial bottleneck.

Records are inserted freely (append-only; a trigger refuses UPDATE and DELETE). One writer per
tenant — whoever holds the tenant's advisory lock — seals the records older than ``LAG_S`` into a
batch: their ids and 8-byte digests (sha256 of the canonical record) in id order, and
``hash = sha256(prev_hash + digests)`` chaining it to the batch before. The lag lets transactions
that took an id commit before their range is sealed.

:func:`audit_verify` recomputes every record's digest and every batch's hash and names the first
bad record: edited (its digest differs; records swapped or moved in time show as edits too),
deleted (a sealed id is gone) or inserted (an id appeared inside a sealed range). The head hash it
reports can be compared with a copy kept elsewhere (an attacker with the database's owner rights
could rewrite the whole chain; not one who only edits records)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import orjson
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import AuditBatch, AuditRecord

GENESIS = "0" * 64
LAG_S = 10
BATCH_MAX = 5_000
DIGEST = 8  # bytes kept per record (collision odds 2**-64 per record: enough to notice an edit)


def canonical(record: AuditRecord) -> bytes:
    return orjson.dumps(
        [record.id, record.created_at.isoformat(), record.actor, record.action, record.object_type,
         record.object_id, record.details],
        option=orjson.OPT_SORT_KEYS,
    )  # fmt: skip


def digest(record: AuditRecord) -> bytes:
    return hashlib.sha256(canonical(record)).digest()[:DIGEST]


def batch_hash(prev_hash: str, digests: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + digests).hexdigest()


@dataclass(frozen=True)
class Chain:
    """One hash-chained table of a tenant: its records (append-only, or append-only in the fields
    ``canonical`` covers) and its batches (a model with the fields of :class:`AuditBatch`)."""

    name: str
    noun: str  # "record", "decision"
    records: Callable[[], QuerySet]
    batch_model: type
    canonical: Callable[[object], bytes]
    label: Callable[[object], str]  # what a bad record is called in a report


def _chain_digest(chain: Chain, record) -> bytes:
    return hashlib.sha256(chain.canonical(record)).digest()[:DIGEST]


AUDIT = Chain("audit", "record", lambda: AuditRecord.objects.all(), AuditBatch, canonical, lambda r: r.action)
CHAINS: dict[str, Chain] = {"audit": AUDIT}


def register_chain(chain: Chain) -> None:
    """Another app's table sealed and verified with the audit trail (e.g. intelligence's decisions)."""
    CHAINS[chain.name] = chain


def chain_seal(chain: Chain, *, now=None) -> int:
    """Seal every record older than ``LAG_S`` into batches (current tenant schema); how many records."""
    now = now or timezone.now()
    sealed = 0
    Batch = chain.batch_model
    while True:
        with transaction.atomic():
            with connection.cursor() as cur:  # one writer per tenant and chain: the others skip
                cur.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || %s))", [f":{chain.name}-chain"]
                )
                if not cur.fetchone()[0]:
                    return sealed
            last = Batch.objects.order_by("-last_id").first()
            settled = now - timedelta(seconds=LAG_S)
            after = last.last_id if last else 0
            records = list(chain.records().filter(id__gt=after, created_at__lt=settled).order_by("id")[:BATCH_MAX])
            if not records:
                return sealed
            digests = b"".join(_chain_digest(chain, r) for r in records)
            prev = last.hash if last else GENESIS
            Batch.objects.create(
                first_id=records[0].id, last_id=records[-1].id, ids=[r.id for r in records], digests=digests,
                prev_hash=prev, hash=batch_hash(prev, digests),
            )  # fmt: skip
            sealed += len(records)
        if len(records) < BATCH_MAX:
            return sealed


def chain_verify(chain: Chain) -> dict:
    """Check one chain of the current tenant; the first problem names its record."""
    prev = GENESIS
    checked = batches = 0
    problem = None
    last_id = 0
    noun = chain.noun
    for batch in chain.batch_model.objects.order_by("last_id").iterator(chunk_size=100):
        batches += 1
        digests = bytes(batch.digests)
        if batch.prev_hash != prev or batch_hash(batch.prev_hash, digests) != batch.hash:
            problem = {"kind": "batch", "record_id": batch.first_id,
                       "message": f"the seal of {noun}s #{batch.first_id}-#{batch.last_id} was altered"}  # fmt: skip
            break
        sealed = dict(zip(batch.ids, (digests[i : i + DIGEST] for i in range(0, len(digests), DIGEST)), strict=True))
        present = list(chain.records().filter(id__gte=batch.first_id, id__lte=batch.last_id).order_by("id"))
        by_id = {r.id: r for r in present}
        for rid, want in sealed.items():
            record = by_id.get(rid)
            if record is None:
                problem = {"kind": "deleted", "record_id": rid, "message": f"{noun} #{rid} was deleted"}
                break
            if _chain_digest(chain, record) != want:
                what = f"{noun} #{rid} ({chain.label(record)})"
                problem = {"kind": "edited", "record_id": rid, "message": f"{what} was edited after it was sealed"}
                break
        if problem is None:
            extra = [r.id for r in present if r.id not in sealed]
            if extra:
                problem = {"kind": "inserted", "record_id": extra[0],
                           "message": f"{noun} #{extra[0]} appeared inside a sealed range"}  # fmt: skip
        if problem is not None:
            break
        checked += len(sealed)
        prev = batch.hash
        last_id = batch.last_id
    pending = chain.records().filter(id__gt=last_id).count() if problem is None else None
    return {
        "ok": problem is None,
        "records_verified": checked,
        "batches": batches,
        "head_hash": prev,
        "pending_unsealed": pending,
        "first_problem": problem,
    }


def audit_chain(*, now=None) -> int:
    """Seal the audit trail and every registered chain (decisions); how many records in all."""
    return sum(chain_seal(chain, now=now) for chain in CHAINS.values())


def audit_verify() -> dict:
    """The audit trail's report, with each other chain's under ``chains`` (``ok`` covers all)."""
    report = chain_verify(AUDIT)
    others = {name: chain_verify(chain) for name, chain in CHAINS.items() if name != "audit"}
    report["chains"] = others
    if report["ok"] and not all(r["ok"] for r in others.values()):
        report["ok"] = False
        name, bad = next((n, r) for n, r in others.items() if not r["ok"])
        report["first_problem"] = {**bad["first_problem"], "chain": name}
    return report
