"""Train → deploy → roll back, using only the Models pages in a real browser: the training form
queues a job that a real Celery worker process runs (``celery_worker``, on the server's broker),
its page's progress bar fills without a reload, the new version's report deploys it, a second
version replaces it, and a rollback puts the first back — with every move in the model's history."""

from __future__ import annotations

import re

from django_tenants.utils import schema_context

from tests.conftest import PASSWORD

# the planted edge: a bar's direction follows the one two bars back with probability 0.75, which
# the feature set's lagged returns expose and the naive baselines miss (marketdata.synthetic)
BARS = {"n": 900, "seed": 17, "planted_signal": 0.25, "planted_lag": 2}
SPEC = {"features": [{"indicator": "returns", "params": {"kind": "log", "length": 1}, "lags": [1, 2]}]}


def _train(d, model: str) -> str:
    """Start a job from the Models page, watch it to the end; the new version's reference."""
    d.nav("Models")
    d.submit("train", model=model, symbol="JRNY", timeframe="1d", feature_set="lagged", target="direction",
             horizon="1", n_trials="2")  # fmt: skip
    d.page.wait_for_url(re.compile(r"/app/models/jobs/[0-9a-f-]{36}/$"))
    assert d.page.locator("[data-job-panel]").get_attribute("data-state") in ("queued", "running", "succeeded")
    # the panel polls: a worker picks the job up and the bar fills, without a reload
    d.page.locator('[data-job-panel][data-state="succeeded"]').wait_for(timeout=90_000)
    assert d.page.locator("[data-job-progress]").get_attribute("value") == "100"
    assert "2/2 trials" in d.page.locator("[data-job-panel]").inner_text()
    return d.page.locator("[data-job-version]").inner_text().strip()


def _deploy_from_report(d, ref: str, reason: str) -> None:
    d.page.locator("[data-job-version]").click()  # the job page links the version's report
    d.page.wait_for_load_state("networkidle")
    assert d.page.locator("h1").inner_text() == ref
    assert d.page.locator("[data-verdict]").get_attribute("data-verdict") == "edge"
    d.submit("deploy-version", **{"deploy-alias": "production", "deploy-reason": reason})
    assert f"production now points at {ref}" in d.messages()


def test_train_deploy_a_second_version_and_roll_back_from_the_pages(dashboard, committed, unique, celery_worker):
    from features.services import feature_set_create
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from models_registry.models import TrainingJob
    from tenants.services import tenant_provision

    email = f"ml-{unique}@firm.test"
    with committed():
        tenant, _ = tenant_provision(slug=f"ml-{unique}", plan="pro", owner_email=email, owner_password=PASSWORD)
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(BARS.pop("n"), **BARS)), "csv")
            md_services.bars_import(tenant=tenant, symbol="JRNY", timeframe="1d", raw=raw)
            feature_set_create(name="lagged", spec=SPEC, actor="test")
    d = dashboard
    d.login(email, PASSWORD)
    model = f"jrny-{unique}"

    # first version: trained, opened, deployed to production from its report
    assert _train(d, model) == f"{model}@1"
    _deploy_from_report(d, f"{model}@1", "first honest model")
    assert d.path == f"/app/models/{model}/"
    assert d.page.locator('[data-alias="production"]').inner_text() == "production → v1"

    # a second version replaces it
    assert _train(d, model) == f"{model}@2"
    _deploy_from_report(d, f"{model}@2", "retrained")
    assert d.page.locator('[data-alias="production"]').inner_text() == "production → v2"

    # roll back (no version named: the one before the last move)
    d.submit("rollback", **{"rollback-reason": "v2 misbehaves live"})
    assert f"production rolled back to {model}@1" in d.messages()
    assert d.page.locator('[data-alias="production"]').inner_text() == "production → v1"
    history = [t.split(" by ")[0] for t in d.page.locator("[data-history] li").all_inner_texts()]
    assert history == ["production rollback: v2 → v1", "production deploy: v1 → v2", "production deploy: — → v1"]
    assert "v2 misbehaves live" in d.page.locator("[data-history]").inner_text()
    d.nav("Models")  # the registry lists the model with its production alias
    assert "production → v1" in d.page.locator(f'[data-model="{model}"]').inner_text()

    with committed(), schema_context(tenant.schema_name):  # the worker ran each job once
        jobs = TrainingJob.objects.filter(model_name=model)
        assert sorted((j.state, j.attempts) for j in jobs) == [("succeeded", 1), ("succeeded", 1)]
