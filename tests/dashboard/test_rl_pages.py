"""RL on the Models pages: an RL policy is trained from the same form (target "RL trading policy"),
and the job panel and the version page draw its training curve and out-of-sample equity against
buy & hold as server-rendered SVG."""

import pytest
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.models import TrainingJob
from models_registry.services.training import training_job_run
from tests.dashboard.support import HX, dashboard_client

pytestmark = pytest.mark.django_db

FORM = {
    "model": "rl-page",
    "symbol": "RLPG",
    "timeframe": "1d",
    "feature_set": "default",
    "target": "rl",
    "rl_algo": "actor_critic",
    "horizon": "1",
    "dead_band": "0",
    "n_trials": "4",
}


def test_train_an_rl_policy_from_the_form_and_see_its_curves(alpha):
    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(400, seed=5, planted_signal=0.15, planted_lag=1)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="RLPG", timeframe="1d", raw=raw)
    analyst = dashboard_client(alpha, "analyst")
    r = analyst.post("/app/models/", {**FORM, "n_trials": "900"})  # more episodes than an RL job takes
    assert r.status_code == 400 and "data-form-errors" in r.content.decode()
    assert dashboard_client(alpha, "viewer").post("/app/models/", FORM).status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert not TrainingJob.objects.exists()
    r = analyst.post("/app/models/", FORM)
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.get()
        assert job.params["target"] == {"kind": "rl", "algo": "actor_critic", "positions": "long_short", "n_lags": 2}
        training_job_run(job_id=job.pk)
    panel = analyst.get(f"/app/models/jobs/{job.pk}/", **HX).content.decode()
    assert 'data-state="succeeded"' in panel and "rl-page@1" in panel
    assert "data-rl-episodes" in panel and "data-rl-equity" in panel and panel.count("<polyline") >= 3
    report = analyst.get("/app/models/rl-page/v/1/").content.decode()
    assert "data-rl-curves" in report and "buy_and_hold" in report and "total_return" in report
    assert "one-sided t test" in report
    assert 'data-verdict="no_edge"' in report or 'data-verdict="edge"' in report


def test_other_tenants_rl_versions_are_not_found(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(300, seed=6)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="RLPG", timeframe="1d", raw=raw)
    analyst = dashboard_client(alpha, "analyst")
    assert analyst.post("/app/models/", {**FORM, "n_trials": "2"}).status_code == 302
    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.get()
        training_job_run(job_id=job.pk)
    assert analyst.get("/app/models/rl-page/v/1/").status_code == 200
    other = dashboard_client(beta, "admin")
    assert other.get("/app/models/rl-page/v/1/").status_code == 404
    assert other.get(f"/app/models/jobs/{job.pk}/").status_code == 404
