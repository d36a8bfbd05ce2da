"""The Backtests pages: run one from a form (analysts), watch it, read stats next to buy & hold,
the equity chart and the trades; viewers read and run nothing; another tenant's run is a 404."""

import pytest
from django_tenants.utils import schema_context

from backtesting.models import BacktestRun
from backtesting.services import backtest_execute
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tests.dashboard.support import HX, dashboard_client

pytestmark = pytest.mark.django_db

FORM = {"strategy": "sma_cross", "symbol": "BTP", "timeframe": "1d", "params": "fast=5, slow=20", "cash": "10000",
        "commission": "0.1", "fill": "next_open", "stop_loss": ""}  # fmt: skip


@pytest.fixture
def bars(alpha):
    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(300, seed=12)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="BTP", timeframe="1d", raw=raw)


def _runs(fx):
    with schema_context(fx.tenant.schema_name):
        return list(BacktestRun.objects.all())


def test_run_watch_and_read_a_backtest_from_the_pages(alpha, beta, bars, usage_redis):
    analyst = dashboard_client(alpha, "analyst")
    assert "No backtests yet" in analyst.get("/app/backtests/").content.decode()
    r = analyst.post("/app/backtests/", {**FORM, "params": "fast=50, slow=20"})
    assert r.status_code == 400 and "must be shorter than slow" in r.content.decode() and not _runs(alpha)
    r = analyst.post("/app/backtests/", {**FORM, "params": "fast"})
    assert r.status_code == 400 and "is not name=value" in r.content.decode() and not _runs(alpha)
    r = analyst.post("/app/backtests/", FORM)
    assert r.status_code == 302
    (run,) = _runs(alpha)
    queued = analyst.get(r["Location"]).content.decode()
    assert "data-backtest-progress" in queued and 'hx-trigger="every 1s"' in queued
    with schema_context(alpha.tenant.schema_name):
        backtest_execute(run_id=run.pk)
        run.refresh_from_db()
    viewer = dashboard_client(alpha, "viewer")
    page = viewer.get(f"/app/backtests/{run.pk}/").content.decode()
    assert "data-equity-chart" in page and 'data-stat="buy_and_hold_return_pct"' in page
    assert ("more than buy &amp; hold" in page) == (run.stats["return_pct"] > run.stats["buy_and_hold_return_pct"])
    assert page.count("data-trade=") == min(50, run.stats["trades"]) and "0.1 % per side" in page
    panel = viewer.get(f"/app/backtests/{run.pk}/", **HX).content.decode()
    assert panel.lstrip().startswith('<section class="card" id="backtest-panel"') and "hx-trigger" not in panel
    listed = viewer.get("/app/backtests/").content.decode()
    assert f'data-backtest="{run.pk}"' in listed and "Want to run a backtest?" in listed
    r = viewer.post("/app/backtests/", FORM)
    assert r.status_code == 403 and len(_runs(alpha)) == 1
    assert dashboard_client(beta, "owner").get(f"/app/backtests/{run.pk}/").status_code == 404


def test_a_sweep_from_the_form_shows_its_warning_heatmap_and_ranking(alpha, bars, usage_redis):
    analyst = dashboard_client(alpha, "analyst")
    r = analyst.post("/app/backtests/", {**FORM, "params": "", "grid": "fast=5,10; slow=x"})
    assert r.status_code == 400 and "values are numbers" in r.content.decode() and not _runs(alpha)
    r = analyst.post("/app/backtests/", {**FORM, "params": "", "grid": "fast=5,10; slow=20,40", "metric": "sharpe"})
    assert r.status_code == 302, r.content.decode()[:2000]
    (run,) = _runs(alpha)
    assert run.grid == {"fast": [5, 10], "slow": [20, 40]}
    with schema_context(alpha.tenant.schema_name):
        backtest_execute(run_id=run.pk)
    page = analyst.get(f"/app/backtests/{run.pk}/").content.decode()
    assert "data-sweep-warning" in page and "inflated by that selection" in page
    assert "data-heatmap" in page and page.count("data-rank=") == 4
    r = analyst.post("/app/backtests/", {**FORM, "strategy": "model", "model": ""})
    assert r.status_code == 400 and "Say which model" in r.content.decode()


def test_the_consensus_from_the_form_shows_what_it_decided(alpha, bars, usage_redis):
    analyst = dashboard_client(alpha, "analyst")
    r = analyst.post("/app/backtests/", {**FORM, "strategy": "consensus", "params": ""})
    assert r.status_code == 302, r.content.decode()[:2000]
    (run,) = _runs(alpha)
    assert run.strategy == "consensus" and run.params == {"use_model": True, "environment": "prod"}
    with schema_context(alpha.tenant.schema_name):
        backtest_execute(run_id=run.pk)
    page = analyst.get(f"/app/backtests/{run.pk}/").content.decode()
    assert "data-consensus" in page and "default@0" in page and "data-equity-chart" in page


def test_finished_runs_compare_side_by_side_from_the_list(alpha, beta, bars, usage_redis):
    analyst = dashboard_client(alpha, "analyst")
    for params in ("fast=5, slow=20", "fast=10, slow=40"):
        assert analyst.post("/app/backtests/", {**FORM, "params": params}).status_code == 302
    runs = _runs(alpha)
    with schema_context(alpha.tenant.schema_name):
        for run in runs:
            backtest_execute(run_id=run.pk)
        runs = list(BacktestRun.objects.order_by("created_at"))
    listing = analyst.get("/app/backtests/").content.decode()
    assert listing.count('name="ids"') == 2 and 'data-form="compare"' in listing
    query = "&".join(f"ids={r.pk}" for r in runs)
    page = analyst.get(f"/app/backtests/compare/?{query}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "data-compare-chart" in html and html.count("<polyline") == 2
    assert all(f'data-run="{r.pk}"' in html for r in runs)
    best = max(runs, key=lambda r: r.stats["return_pct"])
    row = html.split('data-figure="return_pct"')[1].split("</tr>")[0]
    assert row.count("data-best") == 1 and f"{best.stats['return_pct']:.2f} %" in row.split("data-best")[1]
    # one run, a queued one, a malformed id: a 400 that says what to do; another tenant's run: 404
    assert analyst.get(f"/app/backtests/compare/?ids={runs[0].pk}").status_code == 400
    assert "Tick 2 to 10" in analyst.get("/app/backtests/compare/?ids=nope&ids=x").content.decode()
    with schema_context(alpha.tenant.schema_name):
        BacktestRun.objects.filter(pk=runs[1].pk).update(state="queued")
    r = analyst.get(f"/app/backtests/compare/?{query}")
    assert r.status_code == 400 and "Only finished single backtests compare" in r.content.decode()
    outsider = dashboard_client(beta, "analyst")
    assert outsider.get(f"/app/backtests/compare/?{query}").status_code == 404
