"""The tenant's home: the first-run checklist (each step found done from what the tenant has, and
its one-click actions through the domain services), the status panel (today, production models,
jobs, alerts, quotas, the kill switch) re-rendered for htmx, and the live ticker's wiring."""

import re

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from tenants.models import Role

from .support import HX, dashboard_client

pytestmark = pytest.mark.django_db


def _main(r) -> str:
    html = r.content.decode()
    return html[html.index("<main") : html.index("</main>")]


def _steps(html: str) -> dict[str, bool]:
    return {k: v == "true" for k, v in re.findall(r'data-step="(\w+)" data-done="(true|false)"', html)}


def _bars(fx, symbol="OWN", timeframe="1d", n=60):
    from marketdata import services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table

    with schema_context(fx.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(n, timeframe=timeframe, seed=9)), "csv")
        services.bars_import(tenant=fx.tenant, symbol=symbol, timeframe=timeframe, raw=raw)


def test_a_new_tenant_sees_five_steps_and_the_first_action(alpha):
    html = _main(dashboard_client(alpha, Role.OWNER).get("/app/"))
    assert _steps(html) == {"data": False, "features": False, "train": False, "deploy": False, "live": False}
    assert 'data-step-action="sample"' in html and "Use the sample data" in html
    assert "0 of 5 done" in html
    # nothing else can be done yet: no train / deploy buttons
    assert 'data-step-action="train"' not in html and 'data-step-action="deploy"' not in html
    # empty states say what to do next
    assert 'data-empty="production"' in html and 'data-empty="jobs"' in html and 'data-empty="decisions"' in html


def test_a_viewer_sees_the_checklist_without_its_actions(alpha):
    html = _main(dashboard_client(alpha, Role.VIEWER).get("/app/"))
    assert 'data-step="data"' in html and "data-step-action" not in html
    assert "Needs the analyst role" in html


def test_the_sample_step_loads_data_and_turns_the_live_market_on(alpha):
    from marketdata.models import Bar, LiveReplay
    from marketdata.samples import SAMPLES

    c = dashboard_client(alpha, Role.ANALYST)
    r = c.post("/app/onboarding/sample/")
    assert r.status_code == 302 and r["Location"] == "/app/"
    with schema_context(alpha.tenant.schema_name):
        for symbol, _, timeframe, n, *_ in SAMPLES:
            assert Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe).count() == n
        replay = LiveReplay.objects.get()
        assert (replay.instrument.symbol, replay.timeframe, replay.enabled) == ("BTC-USD", "1d", True)
        assert AuditRecord.objects.filter(action="live_replay.started").exists()
    html = _main(c.get("/app/"))
    steps = _steps(html)
    assert steps["data"] and not steps["features"]
    assert "now continues live" in html  # the message
    # the next one-click steps: the starter feature set, and training (on the default set already)
    assert 'data-step-action="features"' in html and 'data-step-action="train"' in html
    assert "Train on BTC-USD 1d" in html


def test_starter_feature_set_then_training_starts_a_job_on_it(alpha):
    from features.models import FeatureSet
    from models_registry.models import TrainingJob

    _bars(alpha, n=80)
    c = dashboard_client(alpha, Role.ANALYST)
    assert c.post("/app/onboarding/features/").status_code == 302
    with schema_context(alpha.tenant.schema_name):
        fs = FeatureSet.objects.get(name="starter")
    assert _steps(_main(c.get("/app/")))["features"]
    r = c.post("/app/onboarding/train/")
    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/app/models/jobs/{job.pk}/"
    assert job.params["symbol"] == "OWN" and job.params["timeframe"] == "1d"
    assert job.params["feature_set"] == fs.ref and job.model_name == "my-first-model"
    # the running job shows on the checklist (with its progress) and in the jobs panel; no second train button
    html = _main(c.get("/app/"))
    assert f"/app/models/jobs/{job.pk}/" in html and 'data-step-action="train"' not in html
    assert "data-jobs" in html


def test_deploy_step_needs_a_version_with_an_edge_and_an_admin(alpha):
    from models_registry.models import ModelAlias
    from tests.models_registry.factories import stored_version

    with schema_context(alpha.tenant.schema_name):
        flat = stored_version("flat", no_edge=True)
    c = dashboard_client(alpha, Role.ADMIN)
    html = _main(c.get("/app/"))
    assert f"{flat.ref} shows no edge" in html and 'data-step-action="deploy"' not in html
    # posting anyway: a clear message, nothing deployed
    r = c.post("/app/onboarding/deploy/", follow=True)
    assert "No version beats its naive baselines" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert not ModelAlias.objects.exists()
        good = stored_version("good", seed=1)
    # an analyst may train but not deploy: no button, and a 403 when posted
    analyst = dashboard_client(alpha, Role.ANALYST)
    assert 'data-step-action="deploy"' not in _main(analyst.get("/app/"))
    assert analyst.post("/app/onboarding/deploy/").status_code == 403
    html = _main(c.get("/app/"))
    assert f"Deploy {good.ref}" in html
    assert c.post("/app/onboarding/deploy/").status_code == 302
    with schema_context(alpha.tenant.schema_name):
        alias = ModelAlias.objects.get(name="production")
        assert alias.version_id == good.pk
        assert AuditRecord.objects.filter(action__startswith="model.").exists()
    html = _main(c.get("/app/"))
    steps = _steps(html)
    assert steps["deploy"] and not steps["live"]
    # its series (TEST 1d) has no live market: the checklist offers to continue stored bars live
    assert 'data-step-action="live"' in html and "TEST 1d has no live market" in html
    assert "data-production" in html and good.ref in html


def test_live_step_is_done_by_a_stream_decision_of_the_production_version(alpha):
    from intelligence.models import Decision
    from models_registry.services import model_deploy
    from tests.models_registry.factories import stored_version

    _bars(alpha, symbol="TEST")
    c = dashboard_client(alpha, Role.OWNER)
    with schema_context(alpha.tenant.schema_name):
        v = stored_version("good")
        model_deploy(model=v.model, version=v, actor="test")
    assert c.post("/app/onboarding/live/").status_code == 302
    html = _main(c.get("/app/"))
    assert "The live market of TEST 1d is running" in html and not _steps(html)["live"]
    with schema_context(alpha.tenant.schema_name):
        d = Decision.objects.create(
            source="stream", symbol="TEST", timeframe="1d", ts="2026-11-02T00:00Z", action="BUY",
            confidence=0.61, model_version=v.ref,
        )  # fmt: skip
    html = _main(c.get("/app/"))
    # every step done: the checklist makes way for the status; the decision is in the ticker
    assert "data-checklist" not in html
    assert f'data-decision="{d.pk}"' in html and f'href="/app/decisions/{d.pk}/"' in html


def test_bad_steps_and_roles(alpha):
    from marketdata.models import Bar

    viewer = dashboard_client(alpha, Role.VIEWER)
    assert viewer.post("/app/onboarding/sample/").status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert not Bar.objects.exists()  # nothing written
    owner = dashboard_client(alpha, Role.OWNER)
    assert owner.post("/app/onboarding/nope/").status_code == 404
    assert owner.get("/app/onboarding/sample/").status_code == 405
    # training before any data: a message saying what to do first, no job
    r = owner.post("/app/onboarding/train/", follow=True)
    assert "Load market data and create a feature set first" in r.content.decode()
    r = owner.post("/app/onboarding/live/", follow=True)
    assert "Deploy a model version to production first" in r.content.decode()


def test_the_status_panel_renders_alone_for_htmx_and_shows_the_kill_switch(
    alpha, beta, staff_user, django_capture_on_commit_callbacks
):
    from compliance import controls

    c = dashboard_client(alpha, Role.ADMIN)
    r = c.get("/app/", **HX)
    html = r.content.decode()
    assert html.startswith('<div id="overview-panel"') and "<main" not in html
    # the live ticker is kept as it is in the page (hx-preserve): the partial holds only its place
    assert 'id="overview-ticker" hx-preserve="true"' in html and "data-feed" not in html
    assert 'data-stat="trading"' in html and "Live" in html
    with django_capture_on_commit_callbacks(execute=True):
        controls.kill_engage(tenant=alpha.tenant, reason="drill", actor=alpha.users[Role.ADMIN])
    try:
        controls.reset_local()
        html = c.get("/app/", **HX).content.decode()
        assert "Halted" in html and "drill" in html
        # another tenant's switch is its own
        assert "Halted" not in dashboard_client(beta, Role.ADMIN).get("/app/", **HX).content.decode()
    finally:
        with django_capture_on_commit_callbacks(execute=True):
            controls.kill_lift(tenant=alpha.tenant, actor=staff_user)
        controls.reset_local()


def test_firing_alerts_and_quota_bars_show(alpha):
    from analytics.models import Alert

    with schema_context(alpha.tenant.schema_name):
        Alert.objects.create(
            rule="error_rate",
            message="5xx share 7 % over 5 min",
            value=0.07,
            threshold=0.05,
            last_seen_at=timezone.now(),
        )
    html = _main(dashboard_client(alpha, Role.VIEWER).get("/app/"))
    assert "data-alerts" in html and "error_rate" in html and "5xx share 7 %" in html
    from analytics.selectors import QUOTAS
    from tenants import limits

    limited = [q for q in QUOTAS if limits.usage_get(alpha.tenant, q).limit is not None]
    assert limited  # the pro plan has limits
    for quota in QUOTAS:
        # a quota with a limit has its bar; an unlimited one has none
        assert (f'aria-label="{quota} used"' in html) == (quota in limited)
    assert "Decisions per day" in html


def test_running_jobs_link_to_their_pages(alpha):
    from backtesting.models import BacktestRun
    from models_registry.models import TrainingJob
    from orchestration.models import Workflow

    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.create(model_name="m", params={}, state="running", percent=40)
        run = BacktestRun.objects.create(strategy="sma_cross", symbol="X", timeframe="1d", params={}, state="queued")
        wf = Workflow.objects.create(model_name="wf-model", params={}, state="running")
    html = _main(dashboard_client(alpha, Role.VIEWER).get("/app/"))
    for url in (f"/app/models/jobs/{job.pk}/", f"/app/backtests/{run.pk}/", f"/app/workflows/{wf.pk}/"):
        assert f'href="{url}"' in html
    assert 'aria-label="training m progress"' in html and "40 %" in html
