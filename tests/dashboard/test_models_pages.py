"""The Models pages: train from a form (analysts), watch the job, read the honest report, and
deploy / roll back (admins); viewers see everything and change nothing."""

import pytest
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.models import ModelAlias, TrainingJob
from models_registry.services.training import training_job_run
from tests.dashboard.support import HX, dashboard_client

pytestmark = pytest.mark.django_db


def _bars(fx):
    with schema_context(fx.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(500, seed=41)), "csv")
        md_services.bars_import(tenant=fx.tenant, symbol="PAGE", timeframe="1d", raw=raw)


FORM = {
    "model": "page-model",
    "symbol": "PAGE",
    "timeframe": "1d",
    "feature_set": "default",
    "target": "direction",
    "horizon": "1",
    "dead_band": "0",
    "n_trials": "3",
}


def test_train_watch_report_and_deploy_from_the_pages(alpha):
    _bars(alpha)
    analyst = dashboard_client(alpha, "analyst")
    assert "No models yet" in analyst.get("/app/models/").content.decode()
    # a bad request shows what to fix and starts nothing
    r = analyst.post("/app/models/", {**FORM, "symbol": "NOPE"})
    assert r.status_code == 400 and "data-form-errors" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert not TrainingJob.objects.exists()
    r = analyst.post("/app/models/", FORM)
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.get()
    assert r["Location"] == f"/app/models/jobs/{job.pk}/"
    page = analyst.get(r["Location"]).content.decode()
    assert 'data-state="queued"' in page and 'hx-trigger="every 2s"' in page  # polls while it runs
    with schema_context(alpha.tenant.schema_name):
        training_job_run(job_id=job.pk)  # what the worker does
    panel = analyst.get(f"/app/models/jobs/{job.pk}/", **HX).content.decode()
    assert 'data-state="succeeded"' in panel and "every 2s" not in panel and "page-model@1" in panel
    assert "<circle" in panel  # the trials chart
    with schema_context(alpha.tenant.schema_name):
        from compliance.models import AuditRecord

        # the trail names the analyst by pseudonym, never by address
        created = AuditRecord.objects.get(action="model.version_created")
        assert created.actor == f"user:{alpha.users['analyst'].pk}"
        assert not AuditRecord.objects.filter(actor__contains="@").exists()
    # the report: metrics next to baselines, verdict, calibration
    report = analyst.get("/app/models/page-model/v/1/").content.decode()
    assert "data-metrics" in report and "majority" in report and "persistence" in report
    assert 'data-verdict="no_edge"' in report or 'data-verdict="edge"' in report
    # analysts can't move aliases; admins can (the gate may refuse a version without an edge)
    assert analyst.post("/app/models/page-model/", {"action": "deploy", "deploy-version": "1"}).status_code == 403
    admin = dashboard_client(alpha, "admin")
    r = admin.post(
        "/app/models/page-model/",
        {"action": "deploy", "deploy-version": "1", "deploy-alias": "challenger", "deploy-reason": "try it"},
    )
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        assert ModelAlias.objects.get(name="challenger").version.version == 1
    page = dashboard_client(alpha, "viewer").get("/app/models/page-model/").content.decode()
    assert 'data-alias="challenger"' in page and "try it" in page and 'data-form="deploy"' not in page


def test_viewers_cannot_start_training(alpha):
    _bars(alpha)
    viewer = dashboard_client(alpha, "viewer")
    assert 'data-form="train"' not in viewer.get("/app/models/").content.decode()
    assert viewer.post("/app/models/", FORM).status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert not TrainingJob.objects.exists()


def test_gate_refusal_is_shown_on_the_page(alpha):
    from tests.models_registry.factories import stored_version

    with schema_context(alpha.tenant.schema_name):
        stored_version("gate-page", no_edge=True)
    r = dashboard_client(alpha, "admin").post("/app/models/gate-page/", {"action": "deploy", "deploy-version": "1"})
    html = r.content.decode()
    assert r.status_code == 409 and "does not beat its naive baselines" in html


def test_other_tenants_models_are_not_found(alpha, beta):
    from tests.models_registry.factories import stored_version

    with schema_context(alpha.tenant.schema_name):
        stored_version("secret-model")
    c = dashboard_client(beta, "owner")
    assert c.get("/app/models/secret-model/").status_code == 404
    assert c.get("/app/models/secret-model/v/1/").status_code == 404
    assert "secret-model" not in c.get("/app/models/").content.decode()


def test_the_ab_panel_compares_the_arms_and_admins_end_the_test(alpha):
    from intelligence.models import Decision
    from models_registry.services import registry
    from tests.intelligence.test_learning import _decisions
    from tests.models_registry.factories import stored_version

    with schema_context(alpha.tenant.schema_name):
        v1, v2 = stored_version("ab-page", seed=1), stored_version("ab-page", seed=2)
        registry.model_deploy(model=v1.model, version=v1)
        registry.model_deploy(model=v1.model, version=v2, alias="challenger")
        registry.model_settings_update(model=v1.model, traffic={"challenger_percent": 20})
        _decisions(v1.ref, 100, 200)
        _decisions(v2.ref, 150, 200)
        assert Decision.objects.count() == 400
    html = dashboard_client(alpha, "viewer").get("/app/models/ab-page/").content.decode()
    assert 'data-arm="production"' in html and 'data-arm="challenger"' in html
    assert "challenger is better" in html and "0.750" in html and "0.500" in html
    assert 'data-form="ab-promote"' not in html  # viewers read, admins act
    assert dashboard_client(alpha, "viewer").post("/app/models/ab-page/", {"action": "ab_abort"}).status_code == 403
    admin = dashboard_client(alpha, "admin")
    assert 'data-form="ab-promote"' in admin.get("/app/models/ab-page/").content.decode()
    r = admin.post("/app/models/ab-page/", {"action": "ab_promote"}, follow=True)
    assert r.status_code == 200 and "production is now ab-page@2" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert {a.name: a.version.version for a in ModelAlias.objects.filter(model__name="ab-page")} == {
            "production": 2
        }
    # no test left: a second action says so instead of failing
    again = admin.post("/app/models/ab-page/", {"action": "ab_abort"}, follow=True).content.decode()
    assert "no challenger" in again and "No A/B test" in again
