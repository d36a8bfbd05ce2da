"""Performance analytics from the live stream's resolved decisions: daily rollups of consensus,
model and agent accuracy (with verdicts against a coin and the seed targets), paper P&L equal to
the ledger's fills, Sharpe and drawdown; refreshed incrementally; per tenant."""

import pytest
from django.db.models import F, Sum
from django.utils import timezone
from django_tenants.utils import schema_context

from analytics import services
from analytics.alerts import alerts_evaluate
from analytics.models import PerformanceDaily
from intelligence.models import Decision, Fill
from ops.models import AvailabilityProbe
from tests.conftest import error_code
from tests.intelligence.test_rerun import recorded  # noqa: F401 - the fixture: a recorded live period

pytestmark = pytest.mark.django_db
URL = "/api/v1/analytics/performance/"


def test_performance_reports_what_the_stream_decided_and_earned(alpha, beta, recorded):  # noqa: F811
    schema, _ = recorded
    r = alpha.client(role="viewer").get(URL + "?days=400")
    assert r.status_code == 200, r.content
    body = r.json()
    with schema_context(schema):
        n_decisions = Decision.objects.count()
        scored = Decision.objects.exclude(correct=None)
        n_scored, n_right = scored.count(), scored.filter(correct=True).count()
        fills = Fill.objects.aggregate(net=Sum(F("realized_pnl") - F("fee")))["net"] or 0.0
        n_days = Decision.objects.dates("ts", "day").count()
    c = body["consensus"]
    assert c["decisions"] == n_decisions == 160 and len(c["series"]) == n_days
    assert c["accuracy"]["n"] == n_scored and c["accuracy"]["correct"] == n_right
    assert c["accuracy"]["target"] == 0.8 and "verdict" in c["accuracy"]
    assert c["pnl"] == pytest.approx(fills, abs=0.01)
    assert c["series"][-1]["equity"] == pytest.approx(c["equity_start"] + fills, abs=0.05)
    assert c["max_drawdown_pct"] <= 0 and c["latency_p99_ms"] >= c["latency_p50_ms"] > 0
    agents = {a["name"]: a for a in body["agents"]}
    assert "technical" in agents and agents["technical"]["n"] > 0 and agents["technical"]["target"] == 0.7
    models = {m["name"]: m for m in body["models"]}
    assert set(models) == {"rep@1"} and models["rep@1"]["n"] > 0
    assert body["stream"]["per_minute"] and body["stream"]["peak_per_second"] > 0
    # bad input; a key without read; another tenant sees only its own (nothing)
    assert error_code(alpha.client().get(URL + "?days=0")) == "invalid_input"
    assert alpha.client(scope="trade").get(URL).status_code == 403
    other = beta.client().get(URL).json()
    assert other["consensus"] is None and other["models"] == []


def test_the_rollup_recomputes_only_days_with_new_outcomes(alpha, recorded):  # noqa: F811
    schema, _ = recorded
    with schema_context(schema):
        assert services.performance_rollup(full=True) > 1
        before = {(r.day, r.kind, r.name): (r.resolved, r.hits) for r in PerformanceDaily.objects.all()}
        assert services.performance_rollup() == 1  # nothing resolved since: only the newest day again
        # an outcome resolved now, on an early day: that day is recomputed, the others kept
        wrong = Decision.objects.filter(correct=False).order_by("ts").first()
        Decision.objects.filter(pk=wrong.pk).update(correct=True, resolved_at=timezone.now())
        assert services.performance_rollup() == 2
        after = {(r.day, r.kind, r.name): (r.resolved, r.hits) for r in PerformanceDaily.objects.all()}
        key = (wrong.ts.date(), "consensus", "")
        assert after[key] == (before[key][0], before[key][1] + 1)
        assert {k: v for k, v in after.items() if k[0] != key[0]} == {k: v for k, v in before.items() if k[0] != key[0]}


def test_the_tenant_dashboard_says_what_is_running_and_whether_it_is_ok(alpha, beta, recorded, usage_redis):  # noqa: F811
    schema, _ = recorded
    with schema_context(schema):
        AvailabilityProbe.objects.bulk_create([AvailabilityProbe(ok=True, status_code=200) for _ in range(20)])
        alerts_evaluate(schema=schema)
    body = alpha.client(role="viewer").get("/api/v1/tenant-dashboard/").json()
    assert body["tenant"]["plan"] == "pro" and body["today"]["decisions"] == 160
    assert body["today"]["accuracy"]["n"] > 0 and "verdict" in body["today"]["accuracy"]
    (model,) = body["production_models"]
    assert model["version"] == "rep@1" and model["circuit"] == "closed" and model["live"]["n"] > 0
    assert body["stream"]["live"] is True and body["availability"]["ready_share_24h"] == 1.0
    assert {q["quota"] for q in body["quotas"]} >= {"decisions_per_day", "backtest_bars_per_month"}
    assert alpha.client(scope="trade").get("/api/v1/tenant-dashboard/").status_code == 403
    other = beta.client().get("/api/v1/tenant-dashboard/").json()
    assert other["tenant"]["slug"] == beta.slug and other["today"]["decisions"] == 0
    assert other["production_models"] == []


def test_the_performance_page_shows_the_streams_results(alpha, beta, recorded):  # noqa: F811
    from tests.dashboard.support import dashboard_client

    page = dashboard_client(alpha, "viewer").get("/app/performance/?days=400")
    assert page.status_code == 200
    html = page.content.decode()
    assert "data-performance-summary" in html and "data-equity-chart" in html and "data-accuracy-chart" in html
    assert 'data-model="rep@1"' in html and 'data-agent="technical"' in html
    other = dashboard_client(beta, "viewer").get("/app/performance/").content.decode()
    assert 'data-empty="performance"' in other and "rep@1" not in other
