"""An RL training job end to end on a real Celery worker and broker, with committed data (as in
production): started over the API, trained by the worker with progress, stored as a version."""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

URL = "/api/v1/training-jobs/"


@pytest.fixture(scope="module")
def committed(django_db_setup, django_db_blocker):
    """A tenant of this module's own with planted-signal daily bars, committed (the worker's threads
    must see its rows); dropped afterwards."""
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, key = tenant_provision(slug=f"rlw{int(time.time())}", plan="pro")
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(600, seed=2, planted_signal=0.15, planted_lag=1)), "csv")
            md_services.bars_import(tenant=tenant, symbol="RLW", timeframe="1d", raw=raw)
    yield tenant, key
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


@pytest.fixture(scope="module")
def run(committed, worker_thread, django_db_blocker):
    """What a client does, committed as in production (before any test transaction, so the job is
    handed to Celery on commit): start an RL job over the API and poll it to its end."""
    from models_registry.models import ModelVersion

    tenant, key = committed
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    with django_db_blocker.unblock():
        t0 = time.monotonic()
        body = {"model": "rl-worker", "symbol": "RLW", "n_trials": 6, "target": {"kind": "rl", "algo": "dqn"}}
        r = client.post(URL, body, format="json")
        assert r.status_code == 201, r.content
        url = f"{URL}{r.json()['id']}/"
        deadline = time.monotonic() + 180
        while True:
            job = client.get(url).json()
            if job["state"] == "succeeded":
                break
            assert job["state"] not in ("failed", "cancelled"), job
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        with schema_context(tenant.schema_name):
            version = ModelVersion.objects.get(model__name="rl-worker")
    report = version.report
    print(f"\nRL dqn job on the worker: {elapsed:.1f} s; OOS {report['oos']['total_return']:+.3f} "
          f"vs buy & hold {report['baselines']['buy_and_hold']['total_return']:+.3f}, "
          f"p = {report['significance']['p_value']:.3g}, no_edge={version.no_edge}")  # fmt: skip
    return {"job": job, "version": version}


@pytest.mark.django_db
def test_an_rl_job_runs_through_the_worker(run):
    job, version = run["job"], run["version"]
    assert job["percent"] == 100 and job["version"] == 1 and job["trials_done"] == 6
    assert version.task == "rl" and version.params["family"] == "rl:dqn"
    assert version.report["oos_bars"] > 250 and len(version.report["curves"]["episode_reward"]) == 6
    assert version.no_edge == version.report["no_edge"]
