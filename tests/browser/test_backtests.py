"""Backtest → result chart in a real browser: the form starts a run, its page shows it queued and
then, without a reload (the panel polls), the equity and drawdown chart, stats and trades."""

from __future__ import annotations

import re

from django_tenants.utils import schema_context

from tests.conftest import PASSWORD


def test_a_backtest_from_the_form_to_its_chart(dashboard, committed, unique):
    from backtesting.services import backtest_execute
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.services import tenant_provision

    with committed():
        tenant, _ = tenant_provision(slug=f"bt-{unique}", owner_email=f"bt-{unique}@firm.test", owner_password=PASSWORD)
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(400, seed=5)), "csv")
            md_services.bars_import(tenant=tenant, symbol="BRW", timeframe="1d", raw=raw)
    d = dashboard
    d.login(f"bt-{unique}@firm.test", PASSWORD)
    d.goto("/app/backtests/")
    d.submit("backtest", symbol="BRW", strategy="sma_cross", params="fast=5, slow=20", timeframe="1d")
    d.page.wait_for_url(re.compile(r"/app/backtests/[0-9a-f-]{36}/$"))
    panel = d.page.locator("[data-backtest-panel]")
    assert panel.get_attribute("data-state") in ("queued", "running")
    run_id = d.page.url.rstrip("/").rsplit("/", 1)[1]
    with committed(), schema_context(tenant.schema_name):
        assert backtest_execute(run_id=run_id) == "succeeded"
    d.page.locator('[data-backtest-panel][data-state="succeeded"]').wait_for()  # swapped in by the poll
    chart = d.page.locator("[data-equity-chart]")
    assert chart.is_visible()
    points = chart.locator("polyline").first.get_attribute("points").split()
    assert len(points) > 100  # one point per bar (up to the chart's cap), drawn
    assert d.page.locator("[data-trade]").count() > 0
    assert d.page.locator('[data-stat="sharpe"]').is_visible()
