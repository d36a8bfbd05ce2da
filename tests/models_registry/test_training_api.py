"""Training jobs over REST: validated before anything is written, limited by plan, idempotent,
role-checked, tenant-isolated; cancel before a worker picks the job up."""

import pytest
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.models import JobState, TrainingJob
from tests.conftest import error_code

pytestmark = pytest.mark.django_db

URL = "/api/v1/training-jobs/"


@pytest.fixture
def bars(alpha):
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(
            tenant=alpha.tenant, symbol="TRN", timeframe="1d", raw=read_table(as_csv(generate_bars(400, seed=3)), "csv")
        )
    return "TRN"


def _jobs(fx) -> int:
    with schema_context(fx.tenant.schema_name):
        return TrainingJob.objects.count()


def test_create_then_read_a_job(alpha, bars, usage_redis):
    body = {"model": "trn-up", "symbol": "trn", "n_trials": 5, "target": {"kind": "direction", "horizon": 2}}
    r = alpha.client(role="analyst").post(URL, body, format="json")
    assert r.status_code == 201, r.content
    job = r.json()
    assert job["state"] == "queued" and job["n_trials"] == 5 and job["percent"] == 0
    assert job["params"]["timeframe"] == "1d"  # the symbol's only timeframe
    assert job["params"]["feature_set"] == "default@1" and job["params"]["target"]["horizon"] == 2
    got = alpha.client(role="viewer").get(f"{URL}{job['id']}/").json()
    assert got["id"] == job["id"] and got["trials"] == []
    listed = alpha.client(role="viewer").get(URL + "?model=trn-up").json()
    assert [j["id"] for j in listed["results"]] == [job["id"]]


def test_the_same_idempotency_key_returns_the_first_job(alpha, bars, usage_redis):
    c = alpha.client()
    body = {"model": "idem", "symbol": "TRN", "n_trials": 3}
    first = c.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = c.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and _jobs(alpha) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": "x", "symbol": "NOPE"}, "not_found"),
        ({"model": "x", "symbol": "TRN", "families": ["svm"]}, "invalid_input"),
        ({"model": "x", "symbol": "TRN", "target": {"kind": "ternary", "dead_band": 0}}, "invalid_target"),
        ({"model": "x", "symbol": "TRN", "target": {"horizon": 0}}, "invalid_input"),
        ({"model": "x", "symbol": "TRN", "timeframe": "1h"}, "no_bars"),
        ({"model": "x", "symbol": "TRN", "feature_set": "missing"}, "not_found"),
        ({"model": "not a slug!", "symbol": "TRN"}, "invalid_input"),
        ({"model": "x", "symbol": "TRN", "n_trials": 0}, "invalid_input"),
        (
            {"model": "x", "symbol": "TRN", "start": "2021-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"},
            "invalid_range",
        ),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(alpha, bars, usage_redis, body, code):
    r = alpha.client().post(URL, body, format="json")
    assert r.status_code in (400, 404) and error_code(r) == code, r.content
    assert _jobs(alpha) == 0


def test_trials_beyond_the_plan_are_refused(alpha, bars, usage_redis):
    r = alpha.client().post(URL, {"model": "big", "symbol": "TRN", "n_trials": 5000}, format="json")
    assert r.status_code == 429 and error_code(r) == "plan_limit_exceeded"
    assert r.json()["error"]["details"]["metric"] == "trials_per_job" and _jobs(alpha) == 0


def test_viewers_cannot_train_and_other_tenants_see_nothing(alpha, beta, bars, usage_redis):
    r = alpha.client(role="viewer").post(URL, {"model": "v", "symbol": "TRN"}, format="json")
    assert r.status_code == 403
    job = alpha.client().post(URL, {"model": "mine", "symbol": "TRN", "n_trials": 2}, format="json").json()
    assert beta.client().get(f"{URL}{job['id']}/").status_code == 404
    assert beta.client().post(f"{URL}{job['id']}/cancel/").status_code == 404
    assert beta.client().get(URL).json()["results"] == []
    assert alpha.client().get(f"{URL}not-a-uuid/").status_code == 404


def test_cancel_a_queued_job(alpha, bars, usage_redis):
    c = alpha.client(role="analyst")
    job = c.post(URL, {"model": "c", "symbol": "TRN", "n_trials": 2}, format="json").json()
    assert alpha.client(role="viewer").post(f"{URL}{job['id']}/cancel/").status_code == 403
    r = c.post(f"{URL}{job['id']}/cancel/")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    again = c.post(f"{URL}{job['id']}/cancel/")
    assert again.status_code == 409 and error_code(again) == "job_finished"
    with schema_context(alpha.tenant.schema_name):
        assert TrainingJob.objects.get(pk=job["id"]).state == JobState.CANCELLED
