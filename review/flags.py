"""Which flag rules a decision raises. Pure functions over the few decision fields the rules read
(``action``, ``confidence``, ``size``, ``vetoed_by`` and the risk agent's vote), so the indexer
and the re-flag action compute flags the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .models import FlagRule

RISK_AGENT = "risk"
TRADES = ("BUY", "SELL")
OPPOSITE = {"BUY": "SELL", "SELL": "BUY"}


def against_risk(decision: Mapping[str, Any]) -> bool:
    """A BUY/SELL the risk agent vetoed (for that side; all sides when it names none) or voted against."""
    action, vote = decision["action"], decision.get("risk_vote")
    if action not in TRADES or not isinstance(vote, Mapping):
        return False
    if vote.get("veto") and action in ((vote.get("details") or {}).get("veto_sides") or TRADES):
        return True
    return vote.get("action") == OPPOSITE[action]


def rule_matches(rule: FlagRule, decision: Mapping[str, Any], median_size: float | None) -> bool:
    K = FlagRule.Kind
    action = decision["action"]
    if rule.kind == K.AGAINST_RISK:
        return against_risk(decision)
    if rule.kind == K.LOW_CONFIDENCE:
        return action in TRADES and rule.min_confidence is not None and decision["confidence"] < rule.min_confidence
    if rule.kind == K.UNUSUAL_SIZE:
        size = decision["size"] or 0.0
        if action not in TRADES or size <= 0:
            return False
        if rule.size_cap is not None and size > rule.size_cap:
            return True
        return bool(rule.size_multiple and median_size and size > rule.size_multiple * median_size)
    if rule.kind == K.CONTROL_BLOCK:
        return bool(rule.veto_prefix) and (decision.get("vetoed_by") or "").startswith(rule.veto_prefix)
    return False


def flags_for(decision: Mapping[str, Any], rules: Iterable[FlagRule], median_sizes: Mapping[int, float | None]) -> list:
    """The codes of the enabled ``rules`` the decision raises; ``median_sizes`` by rule id."""
    return [r.code for r in rules if r.enabled and rule_matches(r, decision, median_sizes.get(r.pk))]
