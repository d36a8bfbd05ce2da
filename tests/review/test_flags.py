"""Flag rules: each one on decisions it must and must not flag; rules in force at indexing time;
staff edits validated; re-flag recomputes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from review.models import FlagRule, ReviewItem
from review.services import review_reflag
from tests.review.conftest import decide, index, risk_vote, trend_vote

pytestmark = pytest.mark.django_db


def _flags(tenant) -> dict[int, list[str]]:
    return dict(ReviewItem.objects.filter(tenant=tenant).values_list("decision_id", "flags"))


def test_the_starting_rules_are_seeded():
    rules = {r.code: r for r in FlagRule.objects.all()}
    assert set(rules) >= {"against_risk", "low_confidence", "unusual_size", "control_block"}
    assert rules["low_confidence"].min_confidence == 0.55
    assert rules["control_block"].veto_prefix == "control:"
    assert all(r.enabled for r in rules.values())


def test_against_risk_flags_trades_the_risk_agent_vetoed_or_opposed(a):
    (vetoed,) = decide(a, action="BUY", size=0.05, votes=[trend_vote(), risk_vote(veto=True)])
    (other_side,) = decide(a, action="BUY", size=0.05, votes=[trend_vote(), risk_vote(veto=True, sides=["SELL"])])
    (opposed,) = decide(a, action="SELL", size=0.05, votes=[trend_vote("SELL"), risk_vote(action="BUY")])
    (held,) = decide(a, action="HOLD", votes=[trend_vote(), risk_vote(veto=True)], vetoed_by="risk")
    (within,) = decide(a, action="BUY", size=0.05, votes=[trend_vote(), risk_vote()])
    (no_risk,) = decide(a, action="BUY", size=0.05, votes=[trend_vote()])
    index(a)
    flags = _flags(a)
    assert "against_risk" in flags[vetoed.pk] and "against_risk" in flags[opposed.pk]
    for d in (other_side, held, within, no_risk):
        assert "against_risk" not in flags[d.pk], d


def test_low_confidence_flags_trades_below_the_threshold(a):
    (low,) = decide(a, action="BUY", confidence=0.54, size=0.05)
    (ok,) = decide(a, action="SELL", confidence=0.55, size=0.05)
    (hold,) = decide(a, action="HOLD", confidence=0.3)
    index(a)
    flags = _flags(a)
    assert flags[low.pk] == ["low_confidence"] and flags[ok.pk] == [] and flags[hold.pk] == []


def test_unusual_size_flags_a_multiple_of_the_tenants_median_or_above_the_cap(a, b):
    decide(a, 10, action="BUY", size=0.04)
    (big,) = decide(a, action="BUY", size=0.13, offset=20)  # > 3 x 0.04
    (normal,) = decide(a, action="SELL", size=0.11, offset=21)
    (huge,) = decide(a, action="BUY", size=0.3, offset=22)  # above the 0.25 cap
    # beta's median is its own: 0.13 there is ordinary
    decide(b, 10, action="BUY", size=0.12)
    (b_same,) = decide(b, action="BUY", size=0.13, offset=20)
    index(a)
    index(b)
    flags = _flags(a)
    assert flags[big.pk] == ["unusual_size"] and flags[huge.pk] == ["unusual_size"] and flags[normal.pk] == []
    assert _flags(b)[b_same.pk] == []


def test_control_block_flags_decisions_vetoed_by_a_pre_trade_control(a):
    (blocked,) = decide(a, action="HOLD", vetoed_by="control:max_order_size")
    (risk,) = decide(a, action="HOLD", vetoed_by="risk")
    index(a)
    flags = _flags(a)
    assert flags[blocked.pk] == ["control_block"] and flags[risk.pk] == []


def test_a_rule_change_applies_to_decisions_indexed_after_it_and_reflag_recomputes(a):
    (before,) = decide(a, action="BUY", confidence=0.5, size=0.05)
    index(a)
    assert _flags(a)[before.pk] == ["low_confidence"]
    # when: staff lower the threshold, then a decision of the same confidence is indexed
    FlagRule.objects.filter(code="low_confidence").update(min_confidence=0.45)
    (after,) = decide(a, action="BUY", confidence=0.5, size=0.05, offset=1)
    index(a)
    # then: the new decision is judged by the new rule, the old keeps its flag
    assert _flags(a) == {before.pk: ["low_confidence"], after.pk: []}
    # when: the old one is re-flagged
    changed = review_reflag(item_ids=list(ReviewItem.objects.filter(tenant=a).values_list("pk", flat=True)))
    assert changed == 1 and _flags(a)[before.pk] == []


def test_a_disabled_rule_flags_nothing(a):
    FlagRule.objects.filter(code="control_block").update(enabled=False)
    (blocked,) = decide(a, action="HOLD", vetoed_by="control:kill_switch")
    index(a)
    assert _flags(a)[blocked.pk] == []


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"kind": "low_confidence"}, "min_confidence"),
        ({"kind": "low_confidence", "min_confidence": 1.5}, "min_confidence"),
        ({"kind": "unusual_size"}, "size_multiple"),
        ({"kind": "unusual_size", "size_multiple": 3}, "median_window"),
        ({"kind": "unusual_size", "size_cap": -1}, "size_cap"),
        ({"kind": "control_block"}, "veto_prefix"),
    ],
)
def test_a_rule_missing_its_setting_is_refused_with_a_message(fields, field):
    with pytest.raises(ValidationError) as e:
        FlagRule(code="x", **fields).full_clean()
    assert field in e.value.message_dict
