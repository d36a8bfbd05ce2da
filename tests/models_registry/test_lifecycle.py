"""A model's life after training: drift checks with alerts, retraining into challenger, the sweep
that re-queues orphaned jobs and starts scheduled retrains, AutoML recommendations, progress on the
WebSocket, and the Celery hand-off."""

import asyncio
import datetime as dt
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.drift import psi, shares
from models_registry.models import JobState, ModelAlert, RegisteredModel, TrainingJob
from models_registry.services.maintenance import registry_sweep_run
from models_registry.services.training import training_job_create, training_job_run
from tests.conftest import error_code

pytestmark = pytest.mark.django_db


def _import(fx, frame, symbol="LIFE"):
    with schema_context(fx.tenant.schema_name):
        md_services.bars_import(tenant=fx.tenant, symbol=symbol, timeframe="1d", raw=read_table(as_csv(frame), "csv"))


@pytest.fixture
def trained(alpha):
    """A version of 'life' trained (quickly) on 600 stored daily bars."""
    _import(alpha, generate_bars(600, seed=31))
    with schema_context(alpha.tenant.schema_name):
        job, _ = training_job_create(
            tenant=alpha.tenant,
            actor="test",
            model_name="life",
            symbol="LIFE",
            families=["logistic"],
            n_trials=3,
            enqueue=False,
        )
        assert training_job_run(job_id=job.pk) == JobState.SUCCEEDED
        job.refresh_from_db()
        return job.model_version


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    edges = np.quantile(x, np.linspace(0, 1, 11)[1:-1]).tolist()
    base = shares(x, edges)
    assert psi(base, shares(rng.standard_normal(5000), edges)) < 0.02
    assert psi(base, shares(rng.standard_normal(5000) + 1.5, edges)) > 0.25


def test_drift_is_checked_on_bars_after_training_and_alerts_once_drifted(alpha, trained):
    c = alpha.client(role="analyst")
    url = f"/api/v1/models/life/versions/{trained.version}/drift/"
    r = c.post(url)  # nothing after the training period yet
    assert r.status_code == 409 and error_code(r) == "not_enough_data"
    # later bars from a different market: 5x the volatility
    start = generate_bars(600, seed=31).index[-1] + pd.Timedelta("1D")  # after the last stored bar
    _import(alpha, generate_bars(120, seed=32, start=start, start_price=100.0, annual_vol=2.5))
    r = c.post(url)
    assert r.status_code == 200, r.content
    result = r.json()
    # the window: the new bars plus the last stored one, whose label (the next day) was unknown at training
    assert result["drifted"] and result["max_psi"] > 0.25 and result["window"] == 121
    assert result["prediction"] is not None and len(result["prediction"]["recent"]) == 2
    alerts = alpha.client(role="viewer").get("/api/v1/model-alerts/?open=true").json()
    assert [(a["model"], a["kind"], a["version"]) for a in alerts] == [("life", "drift", trained.version)]
    assert alpha.client(role="viewer").post(url).status_code == 403


def test_retrain_queues_the_recipe_into_challenger(alpha, beta, trained):
    assert alpha.client(role="viewer").post("/api/v1/models/life/retrain/").status_code == 403
    assert beta.client().post("/api/v1/models/life/retrain/").status_code == 404
    with mock.patch("models_registry.tasks.train_model.delay") as delay:
        r = alpha.client(role="analyst").post("/api/v1/models/life/retrain/")
    assert r.status_code == 201, r.content
    job = r.json()
    assert job["params"]["deploy_to"] == "challenger" and job["params"]["families"] == ["logistic"]
    assert job["params"]["symbol"] == "LIFE" and job["state"] == "queued"
    # queued for a worker only once the request's transaction commits (nothing commits in this test)
    assert delay.call_count == 0


def test_jobs_are_handed_to_celery_on_commit(alpha, django_capture_on_commit_callbacks):
    _import(alpha, generate_bars(300, seed=33))
    with mock.patch("models_registry.tasks.train_model.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            r = alpha.client().post("/api/v1/training-jobs/", {"model": "q", "symbol": "LIFE"}, format="json")
    assert r.status_code == 201
    delay.assert_called_once_with(r.json()["id"])


def test_sweep_requeues_orphans_and_starts_scheduled_retrains(alpha, trained):
    with schema_context(alpha.tenant.schema_name):
        orphan = TrainingJob.objects.create(
            model_name="life", params={}, state=JobState.RUNNING, heartbeat_at=timezone.now() - dt.timedelta(hours=1)
        )
        alive = TrainingJob.objects.create(
            model_name="other", params={}, state=JobState.RUNNING, heartbeat_at=timezone.now()
        )
        RegisteredModel.objects.filter(name="life").update(retrain_every_days=7, last_retrain_at=None)
        with mock.patch("models_registry.tasks.train_model.delay") as delay:
            result = registry_sweep_run()
        assert result["reaped"] == 1 and str(orphan.pk) in [c.args[0] for c in delay.call_args_list]
        assert str(alive.pk) not in [c.args[0] for c in delay.call_args_list]
        # the orphaned job for 'life' is still "running", so no second job for it is started
        assert result["retrained"] == []
        TrainingJob.objects.filter(pk=orphan.pk).update(state=JobState.FAILED)
        result = registry_sweep_run()
        assert result["retrained"] == ["life"]
        assert registry_sweep_run()["retrained"] == []  # not due again for 7 days
        assert not ModelAlert.objects.filter(kind="training_failed").exists()


def test_recommendations_follow_the_data_size(alpha):
    _import(alpha, generate_bars(300, seed=34), symbol="SMALL")
    r = alpha.client(role="viewer").get("/api/v1/automl-recommendations/?symbol=SMALL&timeframe=1d")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["rows"] == 300 and body["families"] and body["n_trials"] >= 1
    r = alpha.client().get("/api/v1/automl-recommendations/?symbol=SMALL&timeframe=7d")
    assert r.status_code == 400 and error_code(r) == "invalid_timeframe"


def test_training_progress_reaches_the_tenants_websocket_only(alpha, beta):
    from config.asgi import application
    from models_registry.services.training import _publish

    def publish_for_alpha():  # what a worker does after each trial (no query involved)
        with schema_context(alpha.tenant.schema_name):
            job = TrainingJob(model_name="ws", params={}, percent=42, trials_done=4, n_trials=10)
            _publish(job)
            return str(job.pk)

    async def scenario():
        a = WebsocketCommunicator(application, f"/ws/training/?api_key={alpha.key}")
        b = WebsocketCommunicator(application, f"/ws/training/?api_key={beta.key}")
        for c in (a, b):
            connected, _ = await c.connect(timeout=5)
            assert connected
        await asyncio.sleep(0.2)
        job_id = await sync_to_async(publish_for_alpha)()
        message = await a.receive_json_from(timeout=5)
        assert message["job"]["id"] == job_id and message["job"]["percent"] == 42
        assert await b.receive_nothing(timeout=0.5)
        # narrowed to another job: nothing more arrives
        await a.send_json_to({"job": "00000000-0000-0000-0000-000000000001"})
        assert (await a.receive_json_from(timeout=5))["subscribed"] == "00000000-0000-0000-0000-000000000001"
        await sync_to_async(publish_for_alpha)()
        assert await a.receive_nothing(timeout=0.5)
        for c in (a, b):
            await c.disconnect()

    asyncio.run(scenario())


def test_a_drifted_production_version_can_trigger_a_retrain_into_challenger(alpha, trained):
    from models_registry.services import model_deploy, model_settings_update

    with schema_context(alpha.tenant.schema_name):
        model = trained.model
        model_settings_update(model=model, deploy_policy={"gate": "none"}, retrain_on_drift=True)
        model_deploy(model=model, version=trained)
        start = generate_bars(600, seed=31).index[-1] + pd.Timedelta("1D")
    _import(alpha, generate_bars(120, seed=35, start=start, start_price=100.0, annual_vol=2.5))
    with schema_context(alpha.tenant.schema_name):
        with mock.patch("models_registry.tasks.train_model.delay") as delay:
            result = registry_sweep_run()
        assert result["drift_checked"] == [trained.ref] and result["retrained"] == ["life"]
        job = TrainingJob.objects.filter(model_name="life", state=JobState.QUEUED).get()
        assert job.params["deploy_to"] == "challenger" and delay.call_count == 0  # sent on commit
        assert ModelAlert.objects.filter(kind="drift", version=trained).count() == 1
        # checked today: the next sweep neither re-checks nor queues another job
        assert registry_sweep_run()["drift_checked"] == []
