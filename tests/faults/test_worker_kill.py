"""A Celery worker killed with SIGKILL in the middle of a job, against real workers (prefork, as
deployed) on a private Redis broker. Training: the whole worker (main process and its pool) is
killed, so its message stays unacknowledged in Redis for hours (visibility timeout); a second
worker and the beat sweep's reaper (job running, heartbeat stale, its advisory lock free) finish
it. Backtest: the pool process running it is killed; the worker rejects the message
(acks_late + reject_on_worker_lost) and its new pool process runs it again. Either way the job
ends succeeded exactly once: one model version, one set of trades, and a further delivery of the
same message changes nothing."""

import os
import sys
import time

import psutil
import pytest
from celery import Celery
from django.conf import settings
from django_tenants.utils import schema_context

from backtesting.models import BacktestRun, BacktestTrade
from backtesting.services import backtest_create
from config.settings.services import REDIS_DB_BROKER
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.models import JobState, ModelVersion, TrainingJob
from models_registry.services.training import training_job_create
from tests.conftest import service_env
from tests.faults.conftest import kill_group, spawn, wait_for

N_TRIALS = 12
# the test database must exist for the module fixtures, which commit what the workers must see
pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def tenant(django_db_setup, django_db_blocker):
    """A tenant with bars, committed (worker processes must see it)."""
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, _ = tenant_provision(slug=f"faultkill{int(time.time())}", plan="enterprise")
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(1200, seed=5, planted_signal=0.05)), "csv")
            md_services.bars_import(tenant=tenant, symbol="KILL", timeframe="1d", raw=raw)
    yield tenant
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


@pytest.fixture(scope="module")
def training_job_id(tenant, django_db_blocker):
    with django_db_blocker.unblock(), schema_context(tenant.schema_name):
        job, _ = training_job_create(
            tenant=tenant, actor="test", model_name="faultkill", symbol="KILL",
            families=["xgboost", "logistic"], n_trials=N_TRIALS, enqueue=False,
        )  # fmt: skip
        return str(job.pk)


@pytest.fixture(scope="module")
def backtest_run_id(tenant, django_db_blocker):
    with django_db_blocker.unblock(), schema_context(tenant.schema_name):
        run = backtest_create(
            tenant=tenant, actor="test", strategy="consensus", symbol="KILL", timeframe="1d",
            params={"use_model": False}, enqueue=False,
        )  # fmt: skip
        return str(run.pk)


class Workers:
    """Celery workers as deployed (``celery -A config worker``, prefork), each in a process group
    of its own, on the test's private Redis; and a client that sends tasks as the app does (in a
    tenant's schema: tenant-schemas-celery's header) and reads their results."""

    def __init__(self, redis_url: str, port: int, logs):
        self.env = {**os.environ, **service_env(), "REDIS_URL": redis_url,
                    "TRAINING_JOB_STALE_S": "1", "BACKTEST_STALE_S": "1"}  # fmt: skip
        url = f"redis://127.0.0.1:{port}/{REDIS_DB_BROKER}"
        self.client = Celery(broker=url, backend=url)
        self.logs, self.procs = logs, []

    def start(self, name: str):
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the test's tmp dir
        proc = spawn(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", "1", "-Q", "celery",
             "-n", f"{name}@fault", "--without-mingle", "--without-gossip", "-l", "INFO"],
            cwd=settings.BASE_DIR, env=self.env, stdout=log, stderr=log,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def send(self, task: str, schema: str, *args):
        return self.client.send_task(task, args=list(args), headers={"_schema_name": schema})

    def pool_child(self, proc):
        def child():
            kids = psutil.Process(proc.pid).children()
            return kids[0] if kids else None

        return wait_for(child, 30, "the worker's pool process")

    def stop_all(self):
        for proc in self.procs:
            kill_group(proc)
        self.client.close()


@pytest.fixture
def workers(private_redis, tmp_path):
    w = Workers(private_redis.url, private_redis.port, tmp_path)
    yield w
    w.stop_all()


def test_a_whole_worker_killed_mid_training_leaves_a_job_that_completes_once(
    tenant, training_job_id, workers, django_db_blocker, fault_report
):
    schema, job_id = tenant.schema_name, training_job_id
    with django_db_blocker.unblock(), schema_context(schema):
        started = time.monotonic()
        first = workers.start("first")
        workers.send("models_registry.tasks.train_model", schema, job_id)
        # given a worker some trials into the job
        trials = lambda: TrainingJob.objects.get(pk=job_id).trials_done  # noqa: E731
        wait_for(lambda: trials() >= 3 or first.poll() is not None, 180, "3 trials")
        assert first.poll() is None, (workers.logs / "first.log").read_text()[-2000:]
        # when the whole worker is killed outright (main process and pool: nobody rejects the message)
        kill_group(first)
        done_before = trials()
        assert TrainingJob.objects.get(pk=job_id).state == JobState.RUNNING
        # and a second worker is up; the beat sweep runs (the heartbeat is stale after 1 s here)
        workers.start("second")
        time.sleep(1.5)
        reaped = workers.send("models_registry.tasks.registry_sweep_tenant", schema).get(timeout=120)
        # then the job is queued again and finished by the second worker, resuming the same study
        ended = (JobState.SUCCEEDED, JobState.FAILED)
        wait_for(lambda: TrainingJob.objects.get(pk=job_id).state in ended, 240, "the job to end on the second worker")
        recovered_s = time.monotonic() - started
        job = TrainingJob.objects.get(pk=job_id)
        assert job.state == JobState.SUCCEEDED, job.log
        assert job.attempts == 2 and "resuming (attempt 2)" in job.log
        complete = [t for t in job.trials if t["state"] == "COMPLETE"]
        assert len(complete) <= N_TRIALS and done_before >= 3
        assert ModelVersion.objects.filter(training_job=job).count() == 1
        # and a later delivery of the same message (the dead worker's, once its visibility timeout
        # runs out) changes nothing
        again = workers.send("models_registry.tasks.train_model", schema, job_id).get(timeout=60)
        assert again == JobState.SUCCEEDED
        assert ModelVersion.objects.filter(model__name="faultkill").count() == 1
        assert TrainingJob.objects.get(pk=job_id).attempts == 2
    fault_report(
        f"training: killed the whole worker at {done_before}/{N_TRIALS} trials; sweep re-queued {reaped['reaped']}; "
        f"second worker finished attempt 2 with {len(complete)} complete trials, 1 version, state "
        f"{job.state}; redelivery a no-op; {recovered_s:.0f} s"
    )


def test_a_pool_process_killed_mid_backtest_leaves_a_run_that_completes_once(
    tenant, backtest_run_id, workers, django_db_blocker, fault_report
):
    run_id = backtest_run_id
    schema = tenant.schema_name
    with django_db_blocker.unblock(), schema_context(schema):
        started = time.monotonic()
        worker = workers.start("bt")
        child = workers.pool_child(worker)
        workers.send("backtesting.tasks.run_backtest", schema, run_id)
        # given the run simulating its bars
        row = lambda: BacktestRun.objects.get(pk=run_id)  # noqa: E731
        wait_for(lambda: row().percent > 30 or row().finished, 120, "the run simulating")
        assert not row().finished, "the run finished before it could be killed: make it longer"
        first_start, percent = row().started_at, row().percent
        # when the pool process running it is killed outright
        child.kill()
        # then the worker hands the message back and its new pool process runs it again, to the end
        wait_for(lambda: row().finished, 240, "the run to finish")
        recovered_s = time.monotonic() - started
        done = row()
        assert done.state == JobState.SUCCEEDED, done.error
        assert done.started_at > first_start  # it did run a second time
        trades = list(BacktestTrade.objects.filter(run_id=run_id).values_list("n", flat=True).order_by("n"))
        assert trades == list(range(1, len(trades) + 1)) and trades  # one set of trades, no duplicates
        assert BacktestRun.objects.count() == 1
        # and a later delivery of the same message changes nothing
        assert workers.send("backtesting.tasks.run_backtest", schema, run_id).get(timeout=60) == JobState.SUCCEEDED
        assert BacktestTrade.objects.filter(run_id=run_id).count() == len(trades)
        assert row().finished_at == done.finished_at
    fault_report(
        f"backtest: killed the pool process at {percent} %; the worker redelivered it, run started twice, "
        f"state {done.state}, {len(trades)} trades once, redelivery a no-op; {recovered_s:.0f} s"
    )
