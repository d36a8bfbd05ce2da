"""A workflow end to end on a real Celery worker and broker, with committed data (as in production):
started over the API, each step a task that queues the next one on commit, stopped at the approval
the tenant's configuration requires, approved over the API, and promoted by the worker."""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from tests.orchestration.support import TINY, market

URL = "/api/v1/workflows/"


@pytest.fixture(scope="module")
def committed(django_db_setup, django_db_blocker):
    """A tenant of this module's own, committed (the worker's threads must see its rows), its bars
    and feature set, and its configuration requiring approval; dropped afterwards."""
    from configuration.services import config_set
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, key = tenant_provision(slug=f"wf{int(time.time())}", plan="pro")
        market(tenant)
        with schema_context(tenant.schema_name):
            config_set(tenant=tenant, environment="prod", values={"workflows": {"require_approval": True}},
                       partial=True, actor="test")  # fmt: skip
    yield tenant, key
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def _wait_for(client: APIClient, url: str, states: set[str], seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        body = client.get(url).json()
        if body["state"] in states:
            return body
        assert body["state"] not in ("failed", "cancelled"), body
        assert time.monotonic() < deadline, f"still {body['state']} at {body['current_step']}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def run(committed, worker_thread, django_db_blocker):
    """What a client does, committed as in production (before any test transaction): start a
    workflow with an admin-scoped key, wait for the approval, approve, wait for the end."""
    tenant, key = committed
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    with django_db_blocker.unblock():
        t0 = time.monotonic()
        r = client.post(URL, {"model": "e2e", "symbol": "FLOW", "feature_set": "lagged", **TINY}, format="json")
        assert r.status_code == 201, r.content
        url = f"{URL}{r.json()['id']}/"
        waiting = _wait_for(client, url, {"awaiting_approval"})
        t1 = time.monotonic()
        approved = client.post(f"{url}approve/", {"comment": "e2e"}, format="json")
        done = _wait_for(client, url, {"succeeded"})
        t2 = time.monotonic()
        model = client.get("/api/v1/models/e2e/").json()
    print(f"\ntiny workflow on the worker: {t1 - t0:.1f} s to the approval (train, validate, backtest, deploy), "
          f"{t2 - t1:.1f} s from approval to production")  # fmt: skip
    return {"waiting": waiting, "approved": approved, "done": done, "model": model}


@pytest.mark.django_db
def test_a_tiny_workflow_runs_through_the_worker_to_production(committed, run):
    from compliance.models import AuditRecord

    tenant, _ = committed
    # the chain stopped where the tenant's configuration asks for a person
    waiting = run["waiting"]
    assert [s["state"] for s in waiting["steps"]] == [
        "succeeded", "succeeded", "succeeded", "skipped", "succeeded", "awaiting_approval", "pending"]  # fmt: skip
    steps = {s["name"]: s for s in waiting["steps"]}
    assert steps["approval"]["result"]["why"].startswith("the tenant's configuration (prod@1)")
    assert all(s["attempts"] == 1 and s["percent"] == 100 for s in waiting["steps"][:3])
    assert steps["deploy"]["result"]["traffic_percent"] == 10  # an admin-scoped key: the admins' canary
    # approved over the API, the worker promoted it
    assert run["approved"].status_code == 200 and run["approved"].json()["current_step"] == "promote"
    done = run["done"]
    assert done["percent"] == 100 and done["version"] == 1
    assert [s["state"] for s in done["steps"]][-2:] == ["succeeded", "succeeded"]
    assert run["model"]["aliases"] == {"production": 1}
    with schema_context(tenant.schema_name):
        actions = set(AuditRecord.objects.filter(object_id=done["id"]).values_list("action", flat=True))
    assert actions == {"workflow.created", "workflow.approved", "workflow.succeeded"}
