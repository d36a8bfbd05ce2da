"""A Celery worker killed with SIGKILL in the middle of a job, against real workers (prefork, as
deployed: ``celery -A config worker``) on a private Redis broker, for a training job and for a
backtest, each in two ways:

- ``pool``: the pool process running the task is killed; the worker's main process rejects the
  message (acks_late + reject_on_worker_lost) and its new pool process runs the job again;
- ``worker``: the whole worker (main process and pool) is killed, so nobody rejects the message: it
  stays unacknowledged in Redis until the visibility timeout, hours away. A second worker starts,
  and the beat sweep (registry / backtesting) re-queues the job: ``running``, stale, and its
  advisory lock free (the dead worker's connection took it along).

Either way the job ends succeeded exactly once -- one model version (a training job resumes its
Optuna study), one set of trades -- and a further delivery of the same message changes nothing."""

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


MODES = ["pool", "worker"]


@pytest.fixture(scope="module")
def training_jobs(tenant, django_db_blocker):
    """One committed, queued training job per kill mode."""
    with django_db_blocker.unblock(), schema_context(tenant.schema_name):
        return {
            mode: str(training_job_create(
                tenant=tenant, actor="test", model_name=f"faultkill-{mode}", symbol="KILL",
                families=["xgboost", "logistic"], n_trials=N_TRIALS, enqueue=False,
            )[0].pk)
            for mode in MODES
        }  # fmt: skip


@pytest.fixture(scope="module")
def backtest_runs(tenant, django_db_blocker):
    """One committed, queued backtest (the live consensus replayed bar by bar) per kill mode."""
    with django_db_blocker.unblock(), schema_context(tenant.schema_name):
        return {
            mode: str(backtest_create(
                tenant=tenant, actor="test", strategy="consensus", symbol="KILL", timeframe="1d",
                params={"use_model": False}, enqueue=False,
            ).pk)
            for mode in MODES
        }  # fmt: skip


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

    def kill(self, mode: str, proc, child, schema: str, sweep: str):
        """Kill the pool process, or the whole worker and then recover as production does: a
        second worker, and the beat's sweep for the job's tenant (stale after 1 s here)."""
        if mode == "pool":
            child.kill()
            return None
        kill_group(proc)
        self.start("second")
        time.sleep(1.5)
        return self.send(sweep, schema).get(timeout=120)

    def stop_all(self):
        for proc in self.procs:
            kill_group(proc)
        self.client.close()


@pytest.fixture
def workers(private_redis, tmp_path):
    w = Workers(private_redis.url, private_redis.port, tmp_path)
    yield w
    w.stop_all()


@pytest.mark.parametrize("mode", MODES)
def test_a_worker_killed_mid_training_leaves_a_job_that_completes_once(
    mode, tenant, training_jobs, workers, django_db_blocker, fault_report
):
    schema, job_id = tenant.schema_name, training_jobs[mode]
    with django_db_blocker.unblock(), schema_context(schema):
        started = time.monotonic()
        first = workers.start("first")
        child = workers.pool_child(first)
        workers.send("models_registry.tasks.train_model", schema, job_id)
        # given a worker some trials into the job
        trials = lambda: TrainingJob.objects.get(pk=job_id).trials_done  # noqa: E731
        wait_for(lambda: trials() >= 3 or first.poll() is not None, 180, "3 trials")
        assert first.poll() is None, (workers.logs / "first.log").read_text()[-2000:]
        # when the worker (its pool process, or all of it) is killed outright
        reaped = workers.kill(mode, first, child, schema, "models_registry.tasks.registry_sweep_tenant")
        done_before = trials()
        # then the job is run again (same worker or a second one) and finishes, resuming its study
        ended = (JobState.SUCCEEDED, JobState.FAILED)
        wait_for(lambda: TrainingJob.objects.get(pk=job_id).state in ended, 240, "the job to end")
        recovered_s = time.monotonic() - started
        job = TrainingJob.objects.get(pk=job_id)
        assert job.state == JobState.SUCCEEDED, job.log
        assert job.attempts == 2 and "resuming (attempt 2)" in job.log
        complete = [t for t in job.trials if t["state"] == "COMPLETE"]
        counted = [t for t in job.trials if t["state"] in ("COMPLETE", "PRUNED")]
        assert len(counted) == N_TRIALS and done_before >= 3  # the trial budget neither lost nor spent twice
        assert ModelVersion.objects.filter(training_job=job).count() == 1
        if mode == "worker":
            assert reaped["reaped"] == 1
        # and a later delivery of the same message (for ``worker``: the dead worker's own, once its
        # visibility timeout runs out) changes nothing
        again = workers.send("models_registry.tasks.train_model", schema, job_id).get(timeout=60)
        assert again == JobState.SUCCEEDED
        assert ModelVersion.objects.filter(model__name=f"faultkill-{mode}").count() == 1
        assert TrainingJob.objects.get(pk=job_id).attempts == 2
    how = "the pool process (the worker re-ran it)" if mode == "pool" else "the whole worker (sweep re-queued 1)"
    fault_report(
        f"training: killed {how} at {done_before}/{N_TRIALS} trials; attempt 2 resumed the study: "
        f"{len(counted)}/{N_TRIALS} trials counted ({len(complete)} complete), 1 version, {job.state}; "
        f"redelivery a no-op; {recovered_s:.0f} s"
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_worker_killed_mid_backtest_leaves_a_run_that_completes_once(
    mode, tenant, backtest_runs, workers, django_db_blocker, fault_report
):
    schema, run_id = tenant.schema_name, backtest_runs[mode]
    with django_db_blocker.unblock(), schema_context(schema):
        started = time.monotonic()
        first = workers.start("first")
        child = workers.pool_child(first)
        workers.send("backtesting.tasks.run_backtest", schema, run_id)
        # given the run simulating its bars
        row = lambda: BacktestRun.objects.get(pk=run_id)  # noqa: E731
        wait_for(lambda: row().percent > 30 or row().finished, 120, "the run simulating")
        assert not row().finished, "the run finished before it could be killed: make it longer"
        first_start, percent = row().started_at, row().percent
        # when the worker (its pool process, or all of it) is killed outright
        reaped = workers.kill(mode, first, child, schema, "backtesting.sweep_tenant")
        # then the run is started again (same worker or a second one) and finishes
        wait_for(lambda: row().finished, 240, "the run to finish")
        recovered_s = time.monotonic() - started
        done = row()
        assert done.state == JobState.SUCCEEDED, done.error
        assert done.started_at > first_start  # it did run a second time
        trades = list(BacktestTrade.objects.filter(run_id=run_id).values_list("n", flat=True).order_by("n"))
        assert trades and trades == list(range(1, len(trades) + 1))  # one set of trades, none twice
        assert BacktestRun.objects.count() == len(MODES)  # the recovery made no run of its own
        if mode == "worker":
            assert reaped == 1
        # and a later delivery of the same message changes nothing
        assert workers.send("backtesting.tasks.run_backtest", schema, run_id).get(timeout=60) == JobState.SUCCEEDED
        assert BacktestTrade.objects.filter(run_id=run_id).count() == len(trades)
        assert row().finished_at == done.finished_at
    how = "the pool process (the worker re-ran it)" if mode == "pool" else "the whole worker (sweep re-queued 1)"
    fault_report(
        f"backtest: killed {how} at {percent} %; run started twice, {done.state}, {len(trades)} trade(s) "
        f"stored once, redelivery a no-op; {recovered_s:.0f} s"
    )
