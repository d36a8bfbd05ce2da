"""Every decision in the tenant's hash chain: sealed with the audit trail by the tenant tick;
recording its outcome later keeps the chain valid, while editing what was decided, deleting a
decision or slipping one into a sealed range is named by verify_audit (exit 1)."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from compliance.chain import audit_chain, audit_verify
from intelligence.models import Decision, DecisionSeal

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)


def _decisions(n: int) -> list[Decision]:
    return [
        Decision.objects.create(
            source="api",
            symbol="SEAL",
            timeframe="1d",
            ts=T0 + dt.timedelta(days=i),
            action="BUY" if i % 2 else "HOLD",
            confidence=0.6 + i / 1000,
            size=0.25 if i % 2 else 0.0,
            votes=[{"agent": "trend", "vote": 1}],
            weights={"trend": 1.0},
            explanation=f"decision {i}",
            inputs={"config": "prod@1"},
        )  # fmt: skip
        for i in range(n)
    ]


def _tamper(sql: str, params) -> None:
    """As the application's own database role may (it records outcomes, so it can UPDATE decisions):
    the chain, not a privilege, is what catches an edit of what was decided."""
    with connection.cursor() as cur:
        cur.execute(sql, params)


def test_decisions_are_sealed_and_their_outcome_may_follow(alpha):
    with schema_context(alpha.tenant.schema_name):
        rows = _decisions(12)
        audit_chain(now=later())
        report = audit_verify()
        decisions = report["chains"]["decisions"]
        assert report["ok"] and decisions["records_verified"] == 12 and decisions["pending_unsealed"] == 0
        assert DecisionSeal.objects.count() == 1
        # the outcome is recorded later, as the stream does: still valid
        Decision.objects.filter(pk=rows[3].pk).update(realized=1, correct=True, resolved_at=dt.datetime.now(dt.UTC))
        assert audit_verify()["ok"]
        with pytest.raises(Exception):  # the seals are append-only
            DecisionSeal.objects.update(hash="0" * 64)


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        ("UPDATE intelligence_decision SET action = 'SELL' WHERE id = %s", "edited"),
        ("UPDATE intelligence_decision SET votes = '[]'::jsonb WHERE id = %s", "edited"),
        ("DELETE FROM intelligence_decision WHERE id = %s", "deleted"),
    ],
)
def test_an_edited_or_deleted_decision_is_named(alpha, tamper, kind):
    with schema_context(alpha.tenant.schema_name):
        rows = _decisions(10)
        audit_chain(now=later())
        victim = rows[4]
        _tamper(tamper, [victim.pk])
        report = audit_verify()
        assert not report["ok"]
        problem = report["first_problem"]
        assert problem == {**report["chains"]["decisions"]["first_problem"], "chain": "decisions"}
        assert problem["kind"] == kind and problem["record_id"] == victim.pk
    out = io.StringIO()
    with pytest.raises(SystemExit) as done:
        call_command("verify_audit", "--tenant", alpha.tenant.slug, stdout=out)
    assert done.value.code == 1
    assert f"decisions chain of {alpha.tenant.slug} is BROKEN" in out.getvalue()
    assert f"decision #{victim.pk}" in out.getvalue() and "audit chain of" in out.getvalue()


def test_a_decision_slipped_into_a_sealed_range_is_named(alpha):
    with schema_context(alpha.tenant.schema_name):
        rows = _decisions(6)
        gap = rows[2].pk
        Decision.objects.filter(pk=gap).delete()  # before sealing: a hole in the ids
        audit_chain(now=later())
        assert audit_verify()["ok"]
        with connection.cursor() as cur:  # afterwards, a decision made up with that id
            cur.execute(
                "INSERT INTO intelligence_decision (id, source, symbol, timeframe, ts, action, confidence, raw_score, "
                "size, votes, weights, explanation, conservative, vetoed_by, flow, model_version, features, inputs, "
                "inputs_fingerprint, latency_ms, created_at, horizon) SELECT %s, source, symbol, timeframe, ts, "
                "'SELL', confidence, raw_score, size, votes, weights, explanation, conservative, vetoed_by, flow, "
                "model_version, features, inputs, inputs_fingerprint, latency_ms, created_at, horizon "
                "FROM intelligence_decision WHERE id = %s",
                [gap, rows[3].pk],
            )
        problem = audit_verify()["first_problem"]
        assert problem["kind"] == "inserted" and problem["record_id"] == gap and problem["chain"] == "decisions"
