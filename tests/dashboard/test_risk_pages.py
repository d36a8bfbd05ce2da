"""The Risk pages: the index lists instruments with their headline risk (paged and searchable),
an instrument's page shows its figures, drawdown chart, anomalies and forecast; nothing of another
tenant's."""

import pytest
from django_tenants.utils import schema_context

from riskcore import selectors
from tests.dashboard.support import dashboard_client
from tests.riskcore.helpers import import_bars

pytestmark = pytest.mark.django_db


def test_index_lists_headline_risk_and_links_each_instrument(alpha, beta):
    import_bars(alpha, "RKA", 300, seed=1)
    import_bars(alpha, "RKB", 10, seed=2)  # too few bars: its reason instead of figures
    html = dashboard_client(alpha, "viewer").get("/app/risk/").content.decode()
    with schema_context(alpha.tenant.schema_name):
        r = selectors.instrument_risk(symbol="RKA", window=250)
    assert 'data-risk-row="RKA"' in html and f"{r['var']['95']['historical_var'] * 100:.2f} %" in html
    assert 'href="/app/risk/RKA/"' in html and "insufficient_bars" in html
    only = dashboard_client(alpha, "viewer").get("/app/risk/?q=rkb").content.decode()
    assert 'data-risk-row="RKB"' in only and 'data-risk-row="RKA"' not in only
    nav = dashboard_client(alpha, "viewer").get("/app/").content.decode()
    assert 'href="/app/risk/"' in nav
    other = dashboard_client(beta, "owner").get("/app/risk/").content.decode()
    assert "RKA" not in other


def test_instrument_page_has_figures_chart_anomalies_and_forecast(alpha, beta):
    import_bars(alpha, "RKA", 300, seed=1)
    alpha.client().post("/api/v1/anomalies/detect/", {"symbol": "RKA", "threshold": 2.5}, format="json")
    c = dashboard_client(alpha, "viewer")
    html = c.get("/app/risk/RKA/").content.decode()
    assert "data-risk-figures" in html and 'data-var="95"' in html and 'data-var="99"' in html
    assert "<polyline" in html and "data-drawdown-chart" in html
    assert "data-forecast-interval" in html and "Naive" in html
    with schema_context(alpha.tenant.schema_name):
        found = selectors.anomaly_list(symbol="RKA").count()
    assert found > 0 and html.count("data-anomaly=") == min(found, 25)
    assert c.get("/app/risk/NOPE/").status_code == 404
    assert dashboard_client(beta, "owner").get("/app/risk/RKA/").status_code == 404


def test_instrument_with_few_bars_says_why(alpha):
    import_bars(alpha, "RKB", 10, seed=2)
    html = dashboard_client(alpha, "viewer").get("/app/risk/RKB/").content.decode()
    assert "data-risk-error" in html and "at least 30" in html and "data-forecast-error" in html
