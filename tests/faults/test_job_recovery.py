"""What makes a job run exactly once after its worker is lost (fast; the real kill -9 of Celery
workers is tests/faults/test_worker_kill.py): a run holds an advisory lock for its whole duration,
so a second delivery while it lives does nothing; the sweeps re-queue a job left ``running`` only
when its lock is free (its worker's connection is gone), never one that a worker still holds."""

import datetime as dt
from unittest import mock

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from backtesting import services as bt_services
from backtesting.models import BacktestRun
from models_registry.models import JobState, TrainingJob
from models_registry.services import training

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_session():
    """A second database session: another worker's connection."""
    s = connection.settings_dict
    conn = psycopg.connect(
        host=s["HOST"] or None, port=s["PORT"] or None, user=s["USER"], password=s["PASSWORD"] or None,
        dbname=s["NAME"], autocommit=True,
    )  # fmt: skip
    yield conn
    conn.close()


def _hold(conn, key: int) -> None:
    assert conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]


def test_a_backtest_held_by_a_live_worker_is_neither_run_again_nor_reaped(alpha, other_session, settings, fault_report):
    settings.BACKTEST_STALE_S = 60
    with schema_context(alpha.tenant.schema_name):
        old = timezone.now() - dt.timedelta(minutes=5)

        def running(started_at):
            return BacktestRun.objects.create(
                strategy="sma_cross", symbol="X", timeframe="1d", state=JobState.RUNNING, started_at=started_at
            )

        held, lost = running(old), running(old)
        running(timezone.now())  # running, but started a moment ago: not reaped
        # given another worker running ``held`` (it holds the run's lock)
        _hold(other_session, bt_services._lock_key(held.pk))
        # then a second delivery of it does nothing
        assert bt_services.backtest_execute(run_id=held.pk) == "running elsewhere"
        # and the sweep re-queues only the run whose worker is gone (lock free, running long enough)
        with mock.patch.object(bt_services, "backtest_enqueue") as enqueue:
            assert bt_services.backtests_reap() == 1
        assert [c.args[0].pk for c in enqueue.call_args_list] == [lost.pk]
        # when the worker holding ``held`` dies (its connection, and so its lock, go), it is reaped too
        other_session.close()
        with mock.patch.object(bt_services, "backtest_enqueue") as enqueue:
            assert bt_services.backtests_reap() == 2
        assert {c.args[0].pk for c in enqueue.call_args_list} == {held.pk, lost.pk}
    fault_report(
        "backtest: held run 'running elsewhere' when redelivered; sweep re-queued 1 of 3, then 2 once unlocked"
    )


def test_a_finished_backtest_delivered_again_is_left_as_it_is(alpha, fault_report):
    with schema_context(alpha.tenant.schema_name):
        done = BacktestRun.objects.create(strategy="sma_cross", symbol="X", timeframe="1d", state=JobState.SUCCEEDED,
                                          percent=100, stats={"trades": 3})  # fmt: skip
        assert bt_services.backtest_execute(run_id=done.pk) == JobState.SUCCEEDED
        done.refresh_from_db()
        assert done.stats == {"trades": 3} and done.percent == 100
    fault_report("backtest: a finished run delivered again is left as it is")


def test_the_training_reaper_waits_for_the_lock_and_its_stale_age_is_a_setting(
    alpha, other_session, settings, fault_report
):
    with schema_context(alpha.tenant.schema_name):
        job = TrainingJob.objects.create(model_name="reap", params={}, state=JobState.RUNNING,
                                         heartbeat_at=timezone.now() - dt.timedelta(seconds=30))  # fmt: skip
        with mock.patch.object(training, "job_enqueue") as enqueue:
            settings.TRAINING_JOB_STALE_S = 600
            assert training.training_jobs_reap() == 0  # a 30 s old heartbeat is not stale at 600 s
            settings.TRAINING_JOB_STALE_S = 10
            _hold(other_session, training._lock_key(job.pk))
            assert training.training_jobs_reap() == 0  # stale, but a live worker holds it
            other_session.close()
            assert training.training_jobs_reap() == 1
        assert enqueue.call_args.args[0].pk == job.pk
    fault_report("training: not reaped when fresh (600 s) nor while locked; re-queued once the lock went")
