"""The Workflows pages (Models area): the list with its filters, pagination and empty state, the
start form (analysts and up), the detail page with a row per step (state badge, progress bar) that
polls while it runs, and Approve / Reject / Cancel / Retry shown only to the roles allowed — and
refused to the others by the server too."""

import pytest
from django_tenants.utils import schema_context

from orchestration.models import Workflow, WorkflowState
from tests.dashboard.support import HX, dashboard_client
from tests.orchestration.support import drive, market, workflow_row

pytestmark = pytest.mark.django_db

LIST = "/app/workflows/"
FORM = {"model": "page-flow", "symbol": "FLOW", "timeframe": "1d", "feature_set": "lagged", "n_trials": "2",
        "auto_promote": "on"}  # fmt: skip


def _buttons(page: str) -> set[str]:
    return {a for a in ("approve", "reject", "cancel", "retry") if f'data-action="{a}"' in page}


def test_the_empty_list_says_how_to_start_and_the_menu_links_it(alpha):
    market(alpha.tenant)
    page = dashboard_client(alpha, "analyst").get(LIST).content.decode()
    assert "No workflows yet" in page and "Start one with the form" in page and 'data-form="workflow"' in page
    assert 'data-page="dashboard:workflows"' in page  # under Models in the menu
    viewer = dashboard_client(alpha, "viewer").get(LIST).content.decode()
    assert 'data-form="workflow"' not in viewer and "Analysts, admins and owners start workflows" in viewer


def test_start_watch_approve_and_finish_from_the_pages(alpha):
    market(alpha.tenant)
    analyst, admin = dashboard_client(alpha, "analyst"), dashboard_client(alpha, "admin")
    # a bad request shows what to fix and writes nothing
    r = analyst.post(LIST, {**FORM, "symbol": "NOPE"})
    assert r.status_code == 400 and "data-form-errors" in r.content.decode()
    r = analyst.post(LIST, {**FORM, "canary_percent": "5"})  # traffic is an admin's move
    assert r.status_code == 403 and "Only admins route live traffic" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert not Workflow.objects.exists()
    r = analyst.post(LIST, FORM)
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        wf = Workflow.objects.get()
    assert r["Location"] == f"/app/workflows/{wf.pk}/"
    page = analyst.get(r["Location"]).content.decode()
    assert 'data-state="queued"' in page and 'hx-trigger="every 2s"' in page  # polls while it runs
    assert page.count("data-step=") == 7 and page.count("<progress") == 8  # a bar per step and the total
    assert _buttons(page) == {"cancel"}
    # the worker's part: an analyst's workflow stops for an admin's approval
    with schema_context(alpha.tenant.schema_name):
        drive(wf.pk)
    panel = analyst.get(f"/app/workflows/{wf.pk}/", **HX).content.decode()
    assert 'data-state="awaiting_approval"' in panel and "every 2s" not in panel
    assert 'data-step="approval" data-step-state="awaiting_approval"' in panel
    assert _buttons(panel) == {"cancel"}  # approving is an admin's
    assert _buttons(admin.get(f"/app/workflows/{wf.pk}/").content.decode()) == {"approve", "reject", "cancel"}
    # the server refuses what the page hides
    r = analyst.post(f"/app/workflows/{wf.pk}/approve/", {"comment": "me"})
    assert r.status_code == 403
    r = admin.post(f"/app/workflows/{wf.pk}/approve/", {"comment": "ok"}, follow=True)
    assert r.status_code == 200 and "Approved" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        wf = drive(wf.pk)
        assert wf.state == WorkflowState.SUCCEEDED, wf.error
    page = admin.get(f"/app/workflows/{wf.pk}/").content.decode()
    assert 'data-state="succeeded"' in page and "every 2s" not in page and _buttons(page) == set()
    assert f"page-flow@{wf.version}" in page and "training job" in page and "backtest" in page
    # the list shows it with its state; filters narrow it
    listed = analyst.get(LIST).content.decode()
    assert f'data-workflow="{wf.pk}" data-state="succeeded"' in listed
    assert f'data-workflow="{wf.pk}"' not in analyst.get(LIST + "?state=failed").content.decode()
    assert f'data-workflow="{wf.pk}"' in analyst.get(LIST + "?model=page-flow&state=succeeded").content.decode()


def test_cancel_and_retry_buttons_follow_the_state_and_the_role(alpha):
    with schema_context(alpha.tenant.schema_name):
        failed = workflow_row("broken", state=WorkflowState.FAILED)
        running = workflow_row("busy", state=WorkflowState.RUNNING)
    viewer, analyst = dashboard_client(alpha, "viewer"), dashboard_client(alpha, "analyst")
    page = viewer.get(f"/app/workflows/{failed.pk}/").content.decode()
    assert _buttons(page) == set() and "backtest: it broke" in page
    assert viewer.post(f"/app/workflows/{failed.pk}/retry/").status_code == 403
    assert viewer.post(f"/app/workflows/{running.pk}/cancel/").status_code == 403
    assert _buttons(analyst.get(f"/app/workflows/{failed.pk}/").content.decode()) == {"retry"}
    assert _buttons(analyst.get(f"/app/workflows/{running.pk}/").content.decode()) == {"cancel"}
    r = analyst.post(f"/app/workflows/{failed.pk}/retry/", follow=True)
    assert "Retrying from the failed step" in r.content.decode()
    r = analyst.post(f"/app/workflows/{running.pk}/cancel/", follow=True)
    assert "Workflow cancelled" in r.content.decode()
    # an action that no longer applies says why instead of failing
    r = analyst.post(f"/app/workflows/{running.pk}/cancel/", follow=True)
    assert "nothing to cancel" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        failed.refresh_from_db()
        running.refresh_from_db()
        assert (failed.state, running.state) == (WorkflowState.QUEUED, WorkflowState.CANCELLED)
    assert analyst.post(f"/app/workflows/{running.pk}/explode/").status_code == 404


def test_filters_and_pagination(alpha):
    with schema_context(alpha.tenant.schema_name):
        for i in range(21):
            workflow_row(f"many-{i}", state=WorkflowState.SUCCEEDED)
        workflow_row("the-failed-one", state=WorkflowState.FAILED)
    c = dashboard_client(alpha, "viewer")
    first = c.get(LIST).content.decode()
    assert first.count("data-workflow=") == 20 and "page 1 of 2" in first
    assert c.get(LIST + "?page=2").content.decode().count("data-workflow=") == 2
    failed = c.get(LIST + "?state=failed").content.decode()
    assert failed.count("data-workflow=") == 1 and "the-failed-one" in failed
    none = c.get(LIST + "?model=nothing-like-it").content.decode()
    assert "No workflow matches" in none
    r = c.get(LIST + "?state=exploded")
    assert r.status_code == 400 and "State is one of" in r.content.decode()


def test_another_tenants_workflow_is_not_found(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        wf = workflow_row()
    c = dashboard_client(beta, "owner")
    assert c.get(f"/app/workflows/{wf.pk}/").status_code == 404
    assert c.post(f"/app/workflows/{wf.pk}/approve/").status_code == 404
    with schema_context(alpha.tenant.schema_name):
        wf.refresh_from_db()
        assert wf.state == WorkflowState.AWAITING_APPROVAL
