"""Batch jobs: queued over many instruments, run (as the Celery task does), status and results."""

import time

import pytest
from django_tenants.utils import schema_context

from riskcore.models import BatchJob
from riskcore.services import batch_run
from tests.conftest import error_code
from tests.riskcore.helpers import import_bars

pytestmark = pytest.mark.django_db
URL = "/api/v1/batch/"


def test_risk_batch_runs_every_symbol_and_reports_per_symbol_errors(alpha):
    for i, s in enumerate(("BA", "BB", "BC")):
        import_bars(alpha, s, 200, seed=i)
    import_bars(alpha, "SHORT", 10)
    r = alpha.client(role="analyst").post(
        URL, {"analysis": "risk", "symbols": ["BA", "bb", "BC", "SHORT"], "params": {"window": 100}}, format="json"
    )
    assert r.status_code == 202, r.content
    job = r.json()
    assert job["status"] == "pending" and job["symbols"] == 4 and job["params"]["window"] == 100
    with schema_context(alpha.tenant.schema_name):
        assert batch_run(batch_id=job["id"]) == "done"
    got = alpha.client(role="viewer").get(f"{URL}{job['id']}/").json()
    assert got["status"] == "done" and got["percent"] == 100.0 and (got["done"], got["failed"]) == (3, 1)
    single = alpha.client().get("/api/v1/risk/BB/?window=100").json()
    assert got["results"]["BB"]["var"] == single["var"]
    assert got["results"]["SHORT"]["error"]["code"] == "insufficient_bars"
    assert "results" not in alpha.client().get(f"{URL}{job['id']}/?results=false").json()


def test_forecast_and_valuation_batches(alpha):
    import_bars(alpha, "BA", 200, seed=1)
    c = alpha.client()
    for analysis, check in (("forecast", lambda res: "evaluation" in res), ("valuation", lambda res: "error" in res)):
        job = c.post(URL, {"analysis": analysis, "symbols": ["BA"]}, format="json").json()
        with schema_context(alpha.tenant.schema_name):
            batch_run(batch_id=job["id"])
        assert check(c.get(f"{URL}{job['id']}/").json()["results"]["BA"]), analysis


def test_anomaly_batch_stores_what_it_finds(alpha):
    import_bars(alpha, "BA", 200, seed=1)
    c = alpha.client()
    job = c.post(URL, {"analysis": "anomaly", "symbols": ["BA"], "params": {"threshold": 2.5}}, format="json").json()
    assert job["params"]["method"] == "robust_z"  # the single endpoint's defaults, filled in
    with schema_context(alpha.tenant.schema_name):
        batch_run(batch_id=job["id"])
    res = c.get(f"{URL}{job['id']}/").json()["results"]["BA"]
    assert res["flagged"] == res["new"] > 0 and all(a["id"] for a in res["anomalies"])
    listed = c.get("/api/v1/anomalies/?symbol=BA").json()["anomalies"]
    assert sorted(a["id"] for a in listed) == sorted(a["id"] for a in res["anomalies"])
    bad = c.post(URL, {"analysis": "anomaly", "symbols": ["BA"], "params": {"method": "magic"}}, format="json")
    assert bad.status_code == 400 and error_code(bad) == "invalid_method"  # the single endpoint's own code


def test_risk_for_100_instruments(alpha, capsys):
    symbols = [f"H{i:03d}" for i in range(100)]
    for i, s in enumerate(symbols):
        import_bars(alpha, s, 300, seed=i)
    job = alpha.client().post(URL, {"analysis": "risk", "symbols": symbols}, format="json").json()
    started = time.perf_counter()
    with schema_context(alpha.tenant.schema_name):
        batch_run(batch_id=job["id"])
    took = time.perf_counter() - started
    got = alpha.client().get(f"{URL}{job['id']}/").json()
    assert got["done"] == 100 and got["failed"] == 0
    with capsys.disabled():
        print(f"\nrisk batch over 100 instruments x 300 bars: {took:.2f} s")


def test_batch_bad_input_writes_nothing(alpha, beta):
    import_bars(alpha, "BA", 40)
    c = alpha.client()
    for body, code in (
        ({"analysis": "astrology", "symbols": ["BA"]}, "invalid_analysis"),
        ({"analysis": "risk", "symbols": ["BA", "GHOST"]}, "unknown_symbols"),
        ({"analysis": "risk", "symbols": []}, "invalid_input"),
        ({"analysis": "risk", "symbols": ["BA"], "params": {"lookahead": 3}}, "unknown_param"),
        ({"analysis": "risk", "symbols": ["BA"], "params": {"window": 2}}, "invalid_params"),
    ):
        r = c.post(URL, body, format="json")
        assert r.status_code == 400 and error_code(r) == code, (body, r.content)
    with schema_context(alpha.tenant.schema_name):
        assert BatchJob.objects.count() == 0
    r = alpha.client(role="viewer").post(URL, {"analysis": "risk", "symbols": ["BA"]}, format="json")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    job = c.post(URL, {"analysis": "risk", "symbols": ["BA"]}, format="json").json()
    r = alpha.client(scope="trade").get(f"{URL}{job['id']}/")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert error_code(beta.client().get(f"{URL}{job['id']}/")) == "not_found"
    assert (
        error_code(beta.client().post(URL, {"analysis": "risk", "symbols": ["BA"]}, format="json")) == "unknown_symbols"
    )
