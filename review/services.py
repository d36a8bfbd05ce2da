"""The review index: filled per tenant from its decisions (never on the decision path), flagged by
the rules in force, reviewed and exported by staff with every access audited in the tenant's trail.

Staff appear in tenant audit trails by their pseudonym ``user:<id>`` (no e-mail in the tenant's
data)."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import JSONField
from django.utils import timezone
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from compliance.services import audit_record

from .flags import RISK_AGENT, TRADES, flags_for
from .models import FlagRule, IndexState, ReviewItem

BATCH = 5_000
MAX_BATCHES_PER_TICK = 20  # a tick indexes up to 100k decisions; a backlog continues next minute
# Decisions younger than this are left for the next run: an id taken by a transaction still open
# would otherwise fall below the watermark once it commits (ids are taken before commit).
LAG = timedelta(seconds=30)
RETENTION = timedelta(days=5 * 365 + 2)  # five years, leap days included
EXPORT_MAX = 10_000

_DECISION_FIELDS = ("id", "ts", "created_at", "symbol", "timeframe", "action", "confidence", "size", "flow",
                    "model_version", "vetoed_by")  # fmt: skip


def staff_pseudonym(user) -> str:
    return f"user:{user.pk}"


def _decisions():
    """The current tenant's decisions with only what the index and the rules read (the risk
    agent's vote picked out in SQL, not the whole vote list)."""
    from intelligence.models import Decision

    risk_vote = RawSQL(
        "jsonb_path_query_first(votes, '$[*] ? (@.agent == $a)', jsonb_build_object('a', %s::text))",
        [RISK_AGENT],
        output_field=JSONField(),
    )
    return Decision.objects.annotate(risk_vote=risk_vote).values(*_DECISION_FIELDS, "risk_vote")


def _median_sizes(rules: list[FlagRule], upto_id: int) -> dict[int, float | None]:
    """Per unusual-size rule: the median size of the tenant's last ``median_window`` BUY/SELL
    decisions up to ``upto_id`` (current schema)."""
    out: dict[int, float | None] = {}
    for rule in rules:
        if rule.kind != FlagRule.Kind.UNUSUAL_SIZE or not rule.size_multiple or not rule.median_window:
            continue
        with connection.cursor() as cur:
            cur.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY size) FROM ("
                " SELECT size FROM intelligence_decision WHERE id <= %s AND size > 0 AND action = ANY(%s)"
                " ORDER BY id DESC LIMIT %s) recent",
                [upto_id, list(TRADES), rule.median_window],
            )
            out[rule.pk] = cur.fetchone()[0]
    return out


_INSERT = """
INSERT INTO review_reviewitem (tenant_id, decision_id, ts, decided_at, symbol, timeframe, action, confidence, size,
                               flow, model_version, vetoed_by, flags, indexed_at, review_comment)
SELECT %s, u.*, now(), '' FROM (
  SELECT d, ts, dat, sym, tf, act, conf, sz, fl, mv, vb, string_to_array(fg, ',')
  FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
              %s::float8[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[])
       AS t(d, ts, dat, sym, tf, act, conf, sz, fl, mv, vb, fg)
) u
ON CONFLICT (tenant_id, decision_id) DO NOTHING
"""


def _insert(tenant, rows: list[dict], flags: list[list[str]]) -> None:
    """One INSERT for a whole batch, an array per column: a multi-row VALUES of 5,000 rows
    (``bulk_create``) cost the client four times more to build than the whole batch costs now."""
    columns = ("id", "ts", "created_at", "symbol", "timeframe", "action", "confidence", "size", "flow",
               "model_version", "vetoed_by")  # fmt: skip
    params = [tenant.pk, *([d[c] for d in rows] for c in columns), [",".join(f) for f in flags]]
    with connection.cursor() as cur:
        cur.execute(_INSERT, params)


def review_index(*, tenant, batch_size: int = BATCH, max_batches: int | None = None, now=None) -> int:
    """Index the current tenant's decisions above its watermark, oldest first, in batches (one
    transaction each); how many. Run in ``tenant``'s schema. Idempotent and safe when two run at
    once: one holds the tenant's advisory lock, the other returns 0; rows already there are skipped
    (ON CONFLICT DO NOTHING)."""
    if connection.schema_name != tenant.schema_name:
        raise RuntimeError(f"review_index({tenant.slug}) must run in schema {tenant.schema_name}")
    rules = list(FlagRule.objects.filter(enabled=True))
    settled = (now or timezone.now()) - LAG
    indexed = batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            with connection.cursor() as cur:  # one indexer per tenant; the other one skips
                cur.execute("SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || ':review-index'))")
                if not cur.fetchone()[0]:
                    return indexed
            state, _ = IndexState.objects.get_or_create(tenant=tenant)
            rows = list(_decisions().filter(id__gt=state.last_decision_id).order_by("id")[:batch_size])
            full = len(rows) == batch_size
            for i, d in enumerate(rows):
                if d["created_at"] >= settled:  # stop at the first decision too young to be final
                    rows, full = rows[:i], False
                    break
            if not rows:
                return indexed
            medians = _median_sizes(rules, rows[-1]["id"])
            _insert(tenant, rows, [flags_for(d, rules, medians) for d in rows])
            IndexState.objects.filter(pk=state.pk).update(last_decision_id=rows[-1]["id"], indexed_at=timezone.now())
            indexed += len(rows)
            batches += 1
        if not full:
            break
    return indexed


def review_retention_apply(*, tenant, now=None) -> int:
    """Delete the tenant's review items older than ``RETENTION`` (five years); how many."""
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _ = ReviewItem.objects.filter(tenant=tenant, ts__lt=cutoff).delete()
    return deleted


def review_tick() -> dict:
    """From ``analytics.tenant_tick`` (the tenant's schema, every minute): index new decisions."""
    from tenants.models import Tenant

    tenant = Tenant.objects.get(schema_name=connection.schema_name)
    indexed = review_index(tenant=tenant, max_batches=MAX_BATCHES_PER_TICK)
    return {"indexed": indexed, "expired": review_retention_apply(tenant=tenant)}


# --- staff actions -----------------------------------------------------------------------------


def decision_detail(*, decision_id: int) -> dict | None:
    """The decision as stored in the current tenant's schema, or None."""
    from intelligence.models import Decision

    d = Decision.objects.filter(pk=decision_id).first()
    if d is None:
        return None
    votes = [v for v in d.votes if isinstance(v, dict)]
    weights = d.weights if isinstance(d.weights, dict) else {}
    return {
        "id": d.pk, "ts": d.ts, "created_at": d.created_at, "symbol": d.symbol, "timeframe": d.timeframe,
        "action": d.action, "confidence": d.confidence, "size": d.size, "vetoed_by": d.vetoed_by,
        "explanation": d.explanation, "flow": d.flow, "model_version": d.model_version, "source": d.source,
        "conservative": d.conservative,
        "votes": [{**v, "weight": weights.get(v.get("agent"))} for v in votes],
        "weights": weights,
    }  # fmt: skip


def review_item_open(*, item: ReviewItem, actor) -> dict | None:
    """The item's decision read live from its tenant's schema; the opening is recorded in that
    tenant's audit trail (``staff.decision_viewed``)."""
    from intelligence.models import Decision

    with schema_context(item.tenant.schema_name), transaction.atomic():
        decision = decision_detail(decision_id=item.decision_id)
        audit_record(staff_pseudonym(actor), "staff.decision_viewed", Decision(pk=item.decision_id),
                     {"found": decision is not None})  # fmt: skip
    return decision


def _by_tenant(items) -> dict:
    groups = defaultdict(list)
    for item in items:
        groups[item.tenant].append(item)
    return groups


def review_mark(*, item_ids: list[int], actor, comment: str) -> tuple[int, int]:
    """Mark the items reviewed with ``comment``; each review is recorded in its tenant's trail
    (``decision.reviewed``). Items already reviewed keep their review. (marked, already reviewed)."""
    from intelligence.models import Decision

    comment = (comment or "").strip()
    if not comment:
        raise ApplicationError("comment_required", "Write a comment saying what you checked before marking reviewed.")
    with transaction.atomic():
        items = list(ReviewItem.objects.select_for_update().filter(pk__in=item_ids).select_related("tenant"))
        todo = [i for i in items if i.reviewed_at is None]
        now = timezone.now()
        ReviewItem.objects.filter(pk__in=[i.pk for i in todo]).update(
            reviewed_at=now, reviewed_by=actor, review_comment=comment
        )
        for tenant, group in _by_tenant(todo).items():
            with schema_context(tenant.schema_name):
                for item in group:
                    audit_record(staff_pseudonym(actor), "decision.reviewed", Decision(pk=item.decision_id),
                                 {"comment": comment, "flags": item.flags})  # fmt: skip
    return len(todo), len(items) - len(todo)


EXPORT_COLUMNS = ("tenant", "decision_id", "ts", "decided_at", "symbol", "timeframe", "action", "confidence",
                  "size", "flow", "model_version", "vetoed_by", "flags", "reviewed_at", "reviewed_by",
                  "review_comment")  # fmt: skip


def _export_row(item: ReviewItem) -> dict[str, Any]:
    return {
        "tenant": item.tenant.slug, "decision_id": item.decision_id, "ts": item.ts.isoformat(),
        "decided_at": item.decided_at.isoformat(), "symbol": item.symbol, "timeframe": item.timeframe,
        "action": item.action, "confidence": item.confidence, "size": item.size, "flow": item.flow,
        "model_version": item.model_version, "vetoed_by": item.vetoed_by, "flags": list(item.flags),
        "reviewed_at": item.reviewed_at.isoformat() if item.reviewed_at else None,
        "reviewed_by": f"user:{item.reviewed_by_id}" if item.reviewed_by_id else None,
        "review_comment": item.review_comment,
    }  # fmt: skip


def review_export(*, item_ids: list[int], actor, fmt: str) -> tuple[bytes, str]:
    """The items as CSV or JSON (bytes, content type); each tenant's trail records which of its
    decisions were exported (``review.exported``)."""
    from tenants.models import Tenant

    if fmt not in ("csv", "json"):
        raise ApplicationError("invalid_format", "Export as csv or json.", {"format": fmt})
    if len(item_ids) > EXPORT_MAX:
        raise ApplicationError(
            "export_too_large",
            f"Export at most {EXPORT_MAX:,} decisions at a time; narrow the filters and export in parts.",
            {"selected": len(item_ids), "max": EXPORT_MAX},
        )
    items = list(
        ReviewItem.objects.filter(pk__in=item_ids).select_related("tenant").order_by("tenant_id", "ts", "decision_id")
    )
    rows = [_export_row(i) for i in items]
    if fmt == "json":
        body, ctype = json.dumps(rows, indent=1).encode(), "application/json"
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows({**r, "flags": " ".join(r["flags"])} for r in rows)
        body, ctype = out.getvalue().encode(), "text/csv; charset=utf-8"
    with transaction.atomic():
        for tenant, group in _by_tenant(items).items():
            with schema_context(tenant.schema_name):
                audit_record(staff_pseudonym(actor), "review.exported", Tenant(pk=tenant.pk),
                             {"format": fmt, "count": len(group),
                              "decision_ids": sorted(i.decision_id for i in group)})  # fmt: skip
    return body, ctype


def review_reflag(*, item_ids: list[int]) -> int:
    """Recompute the items' flags from their stored decisions and the rules now in force (the
    unusual-size median as of each tenant's latest decision among them); how many changed."""
    rules = list(FlagRule.objects.filter(enabled=True))
    changed = []
    items = ReviewItem.objects.filter(pk__in=item_ids).select_related("tenant")
    for tenant, group in _by_tenant(items).items():
        with schema_context(tenant.schema_name):
            decisions = {d["id"]: d for d in _decisions().filter(id__in=[i.decision_id for i in group])}
            medians = _median_sizes(rules, max(decisions, default=0))
        for item in group:
            d = decisions.get(item.decision_id)
            flags = flags_for(d, rules, medians) if d else item.flags
            if flags != item.flags:
                item.flags = flags
                changed.append(item)
    ReviewItem.objects.bulk_update(changed, ["flags"], batch_size=1000)
    return len(changed)
