"""The workflows REST API (seed ``orchestrate-ai-workflow``): start one, list and filter, read its
steps, approve / reject (admins), cancel / retry (analysts); bad input writes nothing, roles are
enforced, and another tenant's workflows are not found."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from models_registry.models import TrainingJob
from orchestration.models import Workflow, WorkflowState
from tests.conftest import error_code
from tests.orchestration.support import market, workflow_row

pytestmark = pytest.mark.django_db

URL = "/api/v1/workflows/"
BODY = {"model": "api-flow", "symbol": "FLOW", "feature_set": "lagged", "families": ["logistic"], "n_trials": 2}


def test_start_a_workflow_then_read_it_and_list_it(alpha):
    market(alpha.tenant)
    with mock.patch("orchestration.services.enqueue") as enqueue:
        r = alpha.client(role="analyst").post(URL, BODY, format="json")
    assert r.status_code == 201, r.content
    wf = r.json()
    assert wf["state"] == "queued" and wf["model_name"] == "api-flow" and wf["percent"] == 0
    assert [(s["name"], s["state"]) for s in wf["steps"]] == [
        ("train", "pending"), ("validate", "pending"), ("backtest", "pending"), ("compare", "pending"),
        ("deploy", "pending"), ("approval", "pending"), ("promote", "pending"),
    ]  # fmt: skip
    # an analyst's workflow routes no traffic (0 %) and will wait for an admin before promotion
    assert wf["params"]["canary_percent"] == 0 and wf["params"]["starter_can_manage"] is False
    assert wf["params"]["training"]["families"] == ["logistic"] and "actor" in wf["params"]
    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.get(pk=wf["steps"][0]["result"]["job_id"])
        assert job.state == "queued" and job.model_name == "api-flow"
        assert AuditRecord.objects.filter(action="workflow.created", object_id=wf["id"]).count() == 1
    assert enqueue.call_count == 0  # the first step is queued when the request's transaction commits
    viewer = alpha.client(role="viewer")
    detail = viewer.get(f"{URL}{wf['id']}/")
    assert detail.status_code == 200 and detail.json()["steps"][0]["name"] == "train"
    listed = viewer.get(URL + "?state=queued").json()
    assert [w["id"] for w in listed["results"]] == [wf["id"]] and "steps" not in listed["results"][0]
    assert viewer.get(URL + "?state=succeeded").json()["results"] == []
    assert viewer.get(URL + "?model=other").json()["results"] == []
    r = viewer.get(URL + "?state=done")
    assert r.status_code == 400 and error_code(r) == "invalid_state"
    # an admin-scoped API key manages: an admin's default canary share
    r = alpha.client().post(URL, {**BODY, "model": "api-flow-2", "idempotency_key": "once"}, format="json")
    assert r.status_code == 201 and r.json()["params"]["canary_percent"] == 10
    again = alpha.client().post(URL, {**BODY, "model": "api-flow-2", "idempotency_key": "once"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]


def test_the_list_is_paginated_newest_first(alpha):
    with schema_context(alpha.tenant.schema_name):
        ids = [str(workflow_row(f"page-{i}", state=WorkflowState.SUCCEEDED).pk) for i in range(3)]
    c = alpha.client(role="viewer")
    first = c.get(URL + "?page_size=2").json()
    assert [w["id"] for w in first["results"]] == ids[::-1][:2] and first["next"]
    second = c.get(first["next"]).json()
    assert [w["id"] for w in second["results"]] == ids[:1]


@pytest.mark.parametrize(
    "body, code",
    [
        ({**BODY, "families": ["nope"]}, "invalid_input"),
        ({**BODY, "n_trials": 0}, "invalid_input"),
        ({**BODY, "compare_metric": "luck"}, "invalid_input"),
        ({**BODY, "canary_percent": 150}, "invalid_input"),
        ({**BODY, "model": "not a slug!"}, "invalid_input"),
        ({**BODY, "start": "2021-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"}, "invalid_range"),
        ({**BODY, "target": {"kind": "ternary", "horizon": 1, "dead_band": 0}}, "invalid_target"),
    ],
)
def test_bad_requests_are_refused_with_a_code_and_write_nothing(alpha, body, code):
    market(alpha.tenant)
    r = alpha.client(role="admin").post(URL, body, format="json")
    assert r.status_code == 400 and error_code(r) == code, r.content
    with schema_context(alpha.tenant.schema_name):
        assert not Workflow.objects.exists() and not TrainingJob.objects.exists()


def test_unknown_data_is_not_found_and_writes_nothing(alpha):
    market(alpha.tenant)
    for body in ({**BODY, "symbol": "NOPE"}, {**BODY, "feature_set": "nope"}):
        r = alpha.client(role="admin").post(URL, body, format="json")
        assert r.status_code == 404 and error_code(r) == "not_found"
    with schema_context(alpha.tenant.schema_name):
        assert not Workflow.objects.exists() and not TrainingJob.objects.exists()


def test_roles_are_enforced(alpha):
    market(alpha.tenant)
    r = alpha.client(role="viewer").post(URL, BODY, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    # routing live traffic to a canary is an admin's move
    r = alpha.client(role="analyst").post(URL, {**BODY, "canary_percent": 5}, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    r = alpha.client(scope="read").post(URL, BODY, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    with schema_context(alpha.tenant.schema_name):
        assert not Workflow.objects.exists()
        wf = workflow_row()
    for action in ("approve", "reject"):
        r = alpha.client(role="analyst").post(f"{URL}{wf.pk}/{action}/", {}, format="json")
        assert r.status_code == 403 and error_code(r) == "insufficient_role"
    for action in ("cancel", "retry"):
        r = alpha.client(role="viewer").post(f"{URL}{wf.pk}/{action}/")
        assert r.status_code == 403 and error_code(r) == "insufficient_role"
    with schema_context(alpha.tenant.schema_name):
        wf.refresh_from_db()
        assert wf.state == WorkflowState.AWAITING_APPROVAL


def test_another_tenants_workflow_is_not_found(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        wf = workflow_row()
    c = beta.client()
    assert c.get(f"{URL}{wf.pk}/").status_code == 404
    for action in ("approve", "reject", "cancel", "retry"):
        r = c.post(f"{URL}{wf.pk}/{action}/", {}, format="json")
        assert r.status_code == 404 and error_code(r) == "not_found"
    assert c.get(URL).json()["results"] == []
    assert alpha.client().get(f"{URL}{uuid.uuid4()}/").status_code == 404
    with schema_context(alpha.tenant.schema_name):
        wf.refresh_from_db()
        assert wf.state == WorkflowState.AWAITING_APPROVAL


def test_approve_and_reject_by_an_admin(alpha):
    with schema_context(alpha.tenant.schema_name):
        a, b = workflow_row("approve-me"), workflow_row("reject-me")
    admin = alpha.client(role="admin")
    r = admin.post(f"{URL}{a.pk}/approve/", {"comment": "x" * 501}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    r = admin.post(f"{URL}{a.pk}/approve/", {"comment": "ship it"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    steps = {s["name"]: s for s in body["steps"]}
    assert body["state"] == "running" and body["current_step"] == "promote"
    assert steps["approval"]["state"] == "succeeded" and steps["approval"]["actor"] == alpha.users["admin"].email
    assert steps["approval"]["result"] == {"decision": "approved", "comment": "ship it"}
    r = admin.post(f"{URL}{a.pk}/approve/", {}, format="json")
    assert r.status_code == 409 and error_code(r) == "not_awaiting_approval"
    r = admin.post(f"{URL}{b.pk}/reject/", {"comment": "too risky"}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "failed"
    assert "rejected by an admin: too risky" in r.json()["error"]
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="workflow.approved", object_id=str(a.pk)).count() == 1
        assert AuditRecord.objects.filter(action="workflow.rejected", object_id=str(b.pk)).count() == 1


def test_cancel_and_retry_by_an_analyst(alpha):
    with schema_context(alpha.tenant.schema_name):
        running = workflow_row("run", state=WorkflowState.RUNNING)
        failed = workflow_row("fail", state=WorkflowState.FAILED)
    analyst = alpha.client(role="analyst")
    r = analyst.post(f"{URL}{running.pk}/retry/")
    assert r.status_code == 409 and error_code(r) == "not_failed"
    r = analyst.post(f"{URL}{running.pk}/cancel/")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert {s["state"] for s in r.json()["steps"][1:]} == {"cancelled"}
    r = analyst.post(f"{URL}{running.pk}/cancel/")
    assert r.status_code == 409 and error_code(r) == "workflow_finished"
    r = analyst.post(f"{URL}{failed.pk}/retry/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["state"] == "queued" and body["error"] == "" and body["current_step"] == "backtest"
    assert {s["name"]: s["state"] for s in body["steps"]}["backtest"] == "pending"
    with schema_context(alpha.tenant.schema_name):
        actions = set(AuditRecord.objects.filter(object_type="Workflow").values_list("action", flat=True))
        assert {"workflow.cancelled", "workflow.retried"} <= actions
