"""A worker killed (SIGKILL) in the middle of a training job: the job is never run twice at once,
the re-delivered job resumes the same Optuna study, and it ends with exactly one version."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.models import JobState, ModelVersion, TrainingJob
from models_registry.services.training import training_job_create, training_job_run
from tests.conftest import service_env

N_TRIALS = 12


pytestmark = pytest.mark.django_db  # the test database must exist for the module fixture


@pytest.fixture(scope="module")
def committed_job(django_db_setup, django_db_blocker):
    """A tenant with bars and a queued job, committed (a worker process must see them)."""
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, _ = tenant_provision(slug=f"kill{int(time.time())}", plan="enterprise")
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(1200, seed=5, planted_signal=0.05)), "csv")
            md_services.bars_import(tenant=tenant, symbol="KILL", timeframe="1d", raw=raw)
            job, _ = training_job_create(
                tenant=tenant,
                actor="test",
                model_name="kill",
                symbol="KILL",
                families=["xgboost", "logistic"],
                n_trials=N_TRIALS,
                enqueue=False,
            )
    yield tenant, job.pk
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def _worker(schema: str, job_id) -> subprocess.Popen:
    code = (
        "from django_tenants.utils import schema_context\n"
        "from models_registry.services.training import training_job_run\n"
        f"with schema_context({schema!r}):\n"
        f"    training_job_run(job_id={str(job_id)!r})\n"
    )
    env = {**os.environ, **service_env()}
    return subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_killed_worker_leaves_a_job_that_completes_once(committed_job, django_db_blocker):
    tenant, job_id = committed_job
    proc = _worker(tenant.schema_name, job_id)
    try:
        with django_db_blocker.unblock(), schema_context(tenant.schema_name):
            # given a worker some trials into the job
            deadline = time.monotonic() + 120
            while TrainingJob.objects.get(pk=job_id).trials_done < 3:
                assert proc.poll() is None, "the worker ended before it was killed"
                assert time.monotonic() < deadline, "no progress from the worker"
                time.sleep(0.2)
            # a second delivery while it lives does nothing (the job's lock is held)
            assert training_job_run(job_id=job_id) == "running elsewhere"
            # when the worker is killed outright
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            done_before = TrainingJob.objects.get(pk=job_id).trials_done
            assert TrainingJob.objects.get(pk=job_id).state == JobState.RUNNING
            # and the job is delivered again
            assert training_job_run(job_id=job_id) == JobState.SUCCEEDED
            # then it resumed the same study (no trial budget lost or doubled), with one version
            job = TrainingJob.objects.get(pk=job_id)
            assert job.attempts == 2 and job.percent == 100 and "resuming (attempt 2)" in job.log
            complete = [t for t in job.trials if t["state"] == "COMPLETE"]
            assert len(job.trials) >= N_TRIALS and len(complete) <= N_TRIALS
            assert done_before >= 3 and ModelVersion.objects.filter(training_job=job).count() == 1
            # and any later delivery is a no-op
            assert training_job_run(job_id=job_id) == JobState.SUCCEEDED
            assert ModelVersion.objects.count() == 1
    finally:
        if proc.poll() is None:
            proc.kill()
