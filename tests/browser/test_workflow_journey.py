"""Train → validate → backtest → deploy → approve → promote, from the Workflows page in a real
browser: the form starts a workflow that a real Celery worker process runs step by step
(``celery_worker``: the broker the server sends to), the page's step rows fill without a reload, the tenant's
configuration stops it for approval, the owner approves, and the version ends up in production."""

from __future__ import annotations

import re

from django_tenants.utils import schema_context

from tests.conftest import PASSWORD


def test_start_a_workflow_watch_its_steps_approve_and_reach_production(dashboard, committed, unique, celery_worker):
    from configuration.services import config_set
    from tenants.services import tenant_provision
    from tests.orchestration.support import market

    email = f"wf-{unique}@firm.test"
    with committed():
        tenant, _ = tenant_provision(slug=f"wf-{unique}", plan="pro", owner_email=email, owner_password=PASSWORD)
        market(tenant, symbol="WFLO")
        with schema_context(tenant.schema_name):
            config_set(tenant=tenant, environment="prod", values={"workflows": {"require_approval": True}},
                       partial=True, actor="test")  # fmt: skip
    d = dashboard
    d.login(email, PASSWORD)
    d.nav("Workflows")
    assert d.page.locator('[data-empty="workflows"]').is_visible()
    model = f"wf-{unique}"
    d.submit("workflow", model=model, symbol="WFLO", timeframe="1d", feature_set="lagged", n_trials="2")
    d.page.wait_for_url(re.compile(r"/app/workflows/[0-9a-f-]{36}/$"))
    assert d.page.locator("[data-step]").count() == 7
    # the panel polls: the worker runs the steps and the page follows, without a reload
    d.page.locator('[data-workflow-panel][data-state="awaiting_approval"]').wait_for(timeout=120_000)
    rows = d.page.locator("[data-step]")
    states = [rows.nth(i).get_attribute("data-step-state") for i in range(rows.count())]
    assert states == ["succeeded", "succeeded", "succeeded", "skipped", "succeeded", "awaiting_approval", "pending"]
    assert "requires approval" in d.page.locator('[data-step="approval"]').inner_text()
    assert d.page.locator('[data-action="approve"]').is_visible()
    d.submit("approve", comment="checked the backtest")
    assert "Approved" in d.messages()
    d.page.locator('[data-workflow-panel][data-state="succeeded"]').wait_for(timeout=60_000)
    assert d.page.locator("[data-workflow-progress]").get_attribute("value") == "100"
    assert d.page.locator("[data-actions]").count() == 0  # nothing left to do
    d.page.locator("[data-workflow-version]").click()  # the version's report
    d.page.wait_for_load_state("networkidle")
    d.nav("Models")
    d.page.get_by_role("link", name=model).first.click()
    d.page.wait_for_load_state("networkidle")
    assert d.page.locator('[data-alias="production"]').inner_text() == "production → v1"
