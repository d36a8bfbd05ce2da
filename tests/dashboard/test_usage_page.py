"""The Usage page: quotas with forecasts, units over time, endpoints with latency and errors,
per API key; empty state says what to do; only the tenant's own usage."""

import pytest

from analytics.services import meter_flush
from tenants import limits, metering
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db


def test_the_usage_page_shows_quotas_units_and_endpoints(alpha, beta, usage_redis):
    for _ in range(3):
        assert alpha.client().get("/api/v1/tenant/").status_code == 200
    metering.units_add(alpha.tenant, "backtest_bar", 4000)
    limits.limit_check(alpha.tenant, "decisions_per_day", 12)
    meter_flush()
    viewer = dashboard_client(alpha, "viewer")
    page = viewer.get("/app/usage/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-quota="decisions_per_day"' in html and "at this pace" in html
    assert 'data-usage-chart="backtest_bar"' in html and "4000 in all" in html
    assert 'data-endpoint="' in html and "tenant-detail" in html
    assert "data-keys" in html
    # another tenant: nothing of alpha's, and an empty state that says what to do
    other = dashboard_client(beta, "viewer").get("/app/usage/").content.decode()
    assert "4000 in all" not in other and "tenant-detail" not in other
    assert 'data-empty="usage"' in other and "API keys page" in other
    assert dashboard_client(alpha, "viewer").get("/app/usage/?days=nope").status_code == 200  # a bad range: 30 days
