"""Revenue analytics from subscription events, worked by hand: MRR, movements, churn, ARPU, LTV,
cohorts, plan mix; staff only (a tenant's key or member never sees it); CSV export."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from billing.models import SubscriptionEvent
from billing.revenue import revenue_report, sample_history_seed
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
P, E = Decimal("1490000"), Decimal("14900000")
URL = "/api/v1/platform/revenue/"


def _at(month: int, day: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_other_history():
    """Only this test's events: sessions whose browser tests ran first (a sign-up, the demo's
    sample history) left committed ones; removed inside the test's transaction, so rolled back."""
    SubscriptionEvent.objects.all().delete()


@pytest.fixture
def history():
    rows = [
        ("A", 1, "new", "", "pro", 0, P), ("C", 1, "new", "", "enterprise", 0, E), ("B", 2, "new", "", "pro", 0, P),
        ("A", 3, "upgrade", "pro", "enterprise", P, E), ("C", 4, "downgrade", "enterprise", "pro", E, P),
        ("A", 5, "churn", "enterprise", "free", E, 0), ("A", 6, "reactivation", "free", "pro", 0, P),
    ]  # fmt: skip
    SubscriptionEvent.objects.bulk_create(
        SubscriptionEvent(account=a, at=_at(m), kind=k, from_plan=f, to_plan=t, mrr_before=b, mrr_after=x)
        for a, m, k, f, t, b, x in rows
    )


def test_mrr_movements_churn_and_cohorts_are_those_worked_by_hand(history):
    report = revenue_report(end=dt.date(2026, 6, 30))
    months = {r["month"]: r for r in report["months"]}
    assert [r["month"] for r in report["months"]] == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
    assert months["2026-01"]["mrr"] == P + E and months["2026-01"]["new"] == P + E
    assert months["2026-02"]["mrr"] == 2 * P + E and months["2026-02"]["new"] == P
    assert months["2026-03"]["expansion"] == E - P and months["2026-03"]["mrr"] == P + 2 * E
    assert months["2026-04"]["contraction"] == E - P and months["2026-04"]["mrr"] == E + 2 * P
    may = months["2026-05"]
    assert may["churned"] == E and may["mrr"] == 2 * P and may["paying_accounts"] == 2
    assert may["logo_churn_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert may["revenue_churn_rate"] == pytest.approx(float(E / (E + 2 * P)), abs=1e-4)
    assert may["net_new_mrr"] == -E
    june = months["2026-06"]
    assert june["reactivation"] == P and june["mrr"] == 3 * P and june["arr"] == 36 * P and june["arpu"] == P
    assert report["plan_mix"] == {"pro": 3}
    jan = next(c for c in report["cohorts"] if c["cohort"] == "2026-01")
    assert jan["accounts"] == 2 and jan["retention"] == [1.0, 1.0, 1.0, 1.0, 0.5, 1.0]
    assert report["summary"]["ltv"] == (P / Decimal(str(report["summary"]["average_monthly_revenue_churn"]))).quantize(
        Decimal("1")
    )
    assert all(isinstance(r["mrr"], Decimal) for r in report["months"])  # money never float


def test_staff_only_with_filters_and_csv(alpha, history, client):
    staff = get_user_model().objects.create_user(email="staff@platform.test", password="x" * 12, is_staff=True)
    # a tenant's API key, and a member's token: never the platform's revenue
    assert alpha.client().get(URL).status_code == 403
    assert alpha.client(role="owner").get(URL).status_code == 403
    assert client.get(URL).status_code in (401, 403)
    client.force_login(staff)
    body = client.get(URL + "?start=2026-03&end=2026-04").json()
    assert [r["month"] for r in body["months"]] == ["2026-03", "2026-04"]
    assert Decimal(body["months"][0]["mrr"]) == P + 2 * E and isinstance(body["months"][0]["mrr"], str)
    csv = client.get(URL + "?end=2026-06&export=csv")
    assert csv["Content-Type"].startswith("text/csv")
    lines = csv.content.decode().strip().splitlines()
    assert lines[0].startswith("month,mrr,arr") and len(lines) == 7 and lines[-1].startswith("2026-06,")
    r = client.get(URL + "?start=2026-13")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    assert client.get(URL + "?start=2026-05&end=2026-01").status_code == 400


def test_sample_history_is_seeded_once_and_labelled():
    added = sample_history_seed(accounts=20, months=12, seed=3)
    assert added >= 20 and sample_history_seed() == 0
    report = revenue_report()
    assert report["samples_included"] and report["summary"]["mrr"] > 0
    assert revenue_report(include_samples=False)["months"] == []
