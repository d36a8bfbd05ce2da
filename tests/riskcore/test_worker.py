"""A risk batch over 100 instruments end to end on a real Celery worker and broker, with committed
data (as in production): queued over the API, run by the worker in the tenant's schema, polled."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from tests.riskcore.helpers import import_bars

N = 100


@pytest.fixture(scope="module")
def committed(django_db_setup, django_db_blocker):
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure
    from tests.conftest import TenantFixture

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, key = tenant_provision(slug=f"rk{int(time.time())}", plan="pro")
        fx = TenantFixture(tenant=tenant, key=key)
        for i in range(N):
            import_bars(fx, f"W{i:03d}", 300, seed=i)
    yield tenant, key
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


@pytest.fixture(scope="module")
def run(committed, worker_thread, django_db_blocker):
    """What a client does, committed as in production (before any test transaction: the task is
    queued on commit): queue the batch, poll until it ends."""
    _, key = committed
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    symbols = [f"W{i:03d}" for i in range(N)]
    with django_db_blocker.unblock():
        t0 = time.monotonic()
        r = client.post("/api/v1/batch/", {"analysis": "risk", "symbols": symbols, "params": {"window": 250}},
                        format="json")  # fmt: skip
        assert r.status_code == 202, r.content
        url = f"/api/v1/batch/{r.json()['id']}/"
        deadline = time.monotonic() + 180
        while True:
            body = client.get(url + "?results=false").json()
            if body["status"] in ("done", "failed"):
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        waited = time.monotonic() - t0
        body = client.get(url).json()
    print(f"\nrisk batch of {N} instruments on the worker: {body['seconds']:.2f} s in the task, "
          f"{waited:.2f} s from POST to done (polled)")  # fmt: skip
    return symbols, body


@pytest.mark.django_db
def test_risk_batch_over_100_instruments_runs_on_the_worker(run):
    symbols, body = run
    assert body["status"] == "done" and body["percent"] == 100.0 and body["done"] == N and body["failed"] == 0
    assert set(body["results"]) == set(symbols) and body["results"]["W042"]["window"]["bars"] == 250
