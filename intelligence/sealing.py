"""Every decision in the tenant's hash chain (``compliance.chain``), sealed with the audit trail by
the same one-writer-per-tenant tick: what was decided and why — not the outcome, which is
learned later and is the one part of a decision that changes. ``verify_audit`` names the first
decision edited, deleted or slipped in after it was sealed."""

from __future__ import annotations

import orjson

from compliance.chain import Chain

from .models import Decision, DecisionSeal

DECIDED = (
    "id", "source", "symbol", "timeframe", "ts", "action", "confidence", "raw_score", "size", "votes", "weights",
    "explanation", "conservative", "vetoed_by", "flow", "model_version", "inputs_fingerprint", "inputs", "horizon",
    "created_at",
)  # fmt: skip


def canonical(d: Decision) -> bytes:
    values = [getattr(d, f) for f in DECIDED]
    return orjson.dumps(
        [v.isoformat() if hasattr(v, "isoformat") else v for v in values],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
    )


DECISIONS = Chain(
    "decisions",
    "decision",
    lambda: Decision.objects.only(*DECIDED),
    DecisionSeal,
    canonical,
    lambda d: f"{d.symbol} {d.action} at {d.ts:%Y-%m-%d %H:%M}",
)
