"""Workflows step by step (in this process, the steps a worker would run): train → validate →
backtest → compare → deploy → approval → promote, approval where required, honesty checks that
stop the chain, retry from the failed step, cancel, transient errors retried with backoff, and the
sweep that recovers a step whose worker was lost."""

from __future__ import annotations

import datetime as dt
import threading
from unittest import mock

import pytest
from django.db import OperationalError, connections
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from backtesting.models import BacktestRun
from compliance.models import AuditRecord
from models_registry.models import AliasEvent, JobState, ModelAlias, RegisteredModel, TrainingJob
from notifications.models import Event
from orchestration import services
from orchestration.models import StepState, Workflow, WorkflowState, WorkflowStep
from orchestration.steps import HANDLERS
from tests.orchestration.support import NO_EDGE, TINY, drive, market, states

pytestmark = pytest.mark.django_db


def _start(fx, role="admin", **kw) -> Workflow:
    args = {"model_name": "flow", "symbol": "FLOW", "feature_set": "lagged", **TINY, **kw}
    wf, created = services.workflow_create(
        tenant=fx.tenant, actor=fx.users[role], can_manage=role in ("admin", "owner"), **args
    )
    assert created
    return wf


def _aliases(name="flow") -> dict[str, int]:
    return dict(ModelAlias.objects.filter(model__name=name).values_list("name", "version__version"))


def test_a_workflow_trains_checks_backtests_deploys_and_promotes_then_a_second_one_compares(alpha):
    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        # Given no production version yet: nothing to compare with, no approval configured (admin)
        wf = drive(_start(alpha).pk)
        assert wf.state == WorkflowState.SUCCEEDED and wf.version == 1, wf.error
        assert states(wf) == {
            "train": "succeeded", "validate": "succeeded", "backtest": "succeeded", "compare": "skipped",
            "deploy": "succeeded", "approval": "skipped", "promote": "succeeded",
        }  # fmt: skip
        steps = {s.name: s for s in wf.steps.all()}
        assert {(s.percent, s.attempts) for s in steps.values() if s.state != "skipped"} == {(100, 1)}
        job = TrainingJob.objects.get(pk=steps["train"].result["job_id"])
        assert job.state == JobState.SUCCEEDED and steps["train"].result["ref"] == "flow@1"
        # the honesty checks: the report's out-of-sample accuracy beats its best naive baseline
        v = steps["validate"].result
        assert v["no_edge"] is False and v["model_accuracy"] > v["baseline_accuracy"] and v["p_value"] < 0.05
        # the walk-forward backtest covers the held-out period and is a real backtest run
        bt = steps["backtest"].result
        run = BacktestRun.objects.get(pk=bt["backtest_id"])
        assert run.state == "succeeded" and run.strategy == "model" and run.params["model"] == "flow@1"
        assert bt["figures"]["return_pct"] == run.stats["return_pct"] and bt["plan"]["held_out_bars"] > 50
        assert run.end.isoformat() == bt["plan"]["held_out_end"]
        # deployed as the challenger with 10 % (an admin's default), then promoted: the canary ends
        assert steps["deploy"].result == {"alias": "challenger", "version": 1, "traffic_percent": 10,
                                          "replaced_challenger": None}  # fmt: skip
        assert _aliases() == {"production": 1}
        assert RegisteredModel.objects.get(name="flow").traffic == {"challenger_percent": 0}
        assert steps["promote"].result == {"from_version": None, "to_version": 1, "rollback_to": None}
        actions = list(AuditRecord.objects.filter(object_id=str(wf.pk)).values_list("action", flat=True))
        assert sorted(actions) == ["workflow.created", "workflow.succeeded"]
        assert Event.objects.filter(type="workflow.finished", data__workflow_id=str(wf.pk)).count() == 1

        # When a second workflow trains v2 while v1 is production
        wf2 = drive(_start(alpha).pk)
        assert wf2.state == WorkflowState.SUCCEEDED and wf2.version == 2, wf2.error
        compare = wf2.steps.get(name="compare")
        # then production's recipe was backtested over the same bars, both figures recorded
        assert compare.state == StepState.SUCCEEDED and compare.result["production_version"] == 1
        ours = BacktestRun.objects.get(pk=wf2.steps.get(name="backtest").result["backtest_id"])
        theirs = BacktestRun.objects.get(pk=compare.result["production_backtest_id"])
        assert (ours.start, ours.end, ours.bars) == (theirs.start, theirs.end, theirs.bars)
        assert theirs.params["model"] == "flow@1" and compare.result["production"]["return_pct"] == theirs.stats[
            "return_pct"]  # fmt: skip
        assert compare.result["verdict"] in ("better", "same")
        # and promotion keeps the way back: production moved 1 -> 2, a rollback returns to 1
        assert _aliases() == {"production": 2}
        assert wf2.steps.get(name="promote").result["rollback_to"] == 1
        moves = list(AliasEvent.objects.filter(alias="production").values_list("action", "from_version", "to_version"))
        assert moves[0] == ("deploy", 1, 2)
        from models_registry.services import model_rollback

        model_rollback(model=RegisteredModel.objects.get(name="flow"), reason="test")
        assert _aliases() == {"production": 1}


def test_approval_required_by_the_tenants_config_holds_promotion_until_an_admin_approves(alpha):
    from configuration.services import config_set

    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        config_set(tenant=alpha.tenant, environment="prod", values={"workflows": {"require_approval": True}},
                   partial=True, actor=alpha.users["owner"])  # fmt: skip
        wf = drive(_start(alpha, canary_percent=25).pk)
        # the canary runs while the workflow waits: challenger with 25 % of traffic, no production yet
        assert wf.state == WorkflowState.AWAITING_APPROVAL and wf.current_step == "approval"
        assert states(wf)["approval"] == "awaiting_approval" and states(wf)["promote"] == "pending"
        assert "configuration (prod@1) requires approval" in wf.steps.get(name="approval").message
        assert _aliases() == {"challenger": 1}
        assert RegisteredModel.objects.get(name="flow").traffic == {"challenger_percent": 25}
        assert Event.objects.filter(type="workflow.awaiting_approval").count() == 1
        # running it again changes nothing (a redelivered message)
        assert services.step_execute(workflow_id=wf.pk, name="approval") == "awaiting_approval"
        with pytest.raises(ApplicationError) as e:
            services.workflow_retry(workflow=wf, actor=alpha.users["admin"])
        assert e.value.code == "not_failed"
        # when an admin approves, promotion runs
        with mock.patch.object(services, "enqueue") as enqueue:
            services.workflow_approve(workflow=wf, actor=alpha.users["admin"], comment="looks good")
        wf = drive(wf.pk)
        assert wf.state == WorkflowState.SUCCEEDED and _aliases() == {"production": 1}
        approval = wf.steps.get(name="approval")
        assert approval.state == "succeeded" and approval.actor == alpha.users["admin"].email
        assert approval.result["comment"] == "looks good"
        assert AuditRecord.objects.filter(action="workflow.approved", object_id=str(wf.pk)).count() == 1
        with pytest.raises(ApplicationError) as e:
            services.workflow_approve(workflow=wf, actor=alpha.users["admin"])
        assert e.value.code == "not_awaiting_approval" and e.value.status == 409
    assert enqueue.call_count == 0  # queued on commit only (nothing commits in this test)


def test_an_analysts_workflow_routes_no_traffic_waits_for_an_admin_and_a_rejection_ends_the_canary(alpha):
    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        with pytest.raises(ApplicationError) as e:
            _start(alpha, role="analyst", canary_percent=5)
        assert e.value.code == "insufficient_role" and e.value.status == 403
        assert not Workflow.objects.exists() and not TrainingJob.objects.exists()  # nothing written
        wf = drive(_start(alpha, role="analyst").pk)
        assert wf.state == WorkflowState.AWAITING_APPROVAL
        assert "started by an analyst" in wf.steps.get(name="approval").message
        assert _aliases() == {"challenger": 1}  # a shadow challenger: no traffic
        assert RegisteredModel.objects.get(name="flow").traffic.get("challenger_percent", 0) == 0
        services.workflow_reject(workflow=wf, actor=alpha.users["admin"], comment="not now")
        wf.refresh_from_db()
        assert wf.state == WorkflowState.FAILED and "rejected by an admin: not now" in wf.error
        assert states(wf)["approval"] == "failed" and states(wf)["promote"] == "cancelled"
        assert _aliases() == {}  # the canary ended, production unchanged (there was none)
        assert AuditRecord.objects.filter(action="workflow.rejected", object_id=str(wf.pk)).count() == 1


def test_a_version_without_an_edge_stops_the_chain_at_validation(alpha):
    market(alpha.tenant, bars=NO_EDGE)
    with schema_context(alpha.tenant.schema_name):
        wf = drive(_start(alpha).pk)
        assert wf.state == WorkflowState.FAILED and wf.version == 1
        validate = wf.steps.get(name="validate")
        assert validate.state == StepState.FAILED and validate.error_code == "no_edge"
        assert "no better than a coin" in validate.error and "allow_no_edge" in validate.error
        assert validate.result["no_edge"] is True and "baseline_accuracy" in validate.result
        assert wf.error.startswith("validate: flow@1 is no better than a coin")
        assert [s for s, state in states(wf).items() if state == "pending"] == [
            "backtest", "compare", "deploy", "approval", "promote"]  # fmt: skip
        assert _aliases() == {} and not BacktestRun.objects.exists()
        assert Event.objects.filter(type="workflow.failed", data__workflow_id=str(wf.pk)).count() == 1

        # allowed explicitly, without promotion: it becomes a challenger and the workflow ends there
        wf = drive(_start(alpha, allow_no_edge=True, auto_promote=False).pk)
        assert wf.state == WorkflowState.SUCCEEDED, wf.error
        assert states(wf)["validate"] == "succeeded" and states(wf)["promote"] == "skipped"
        assert "allowed by allow_no_edge" in wf.steps.get(name="validate").message
        assert _aliases() == {"challenger": 2}


def test_a_failed_step_is_retried_from_where_it_failed(alpha):
    market(alpha.tenant)
    real = HANDLERS["backtest"]
    calls = []

    def broken_once(wf, step):
        calls.append(step.attempts)
        if len(calls) == 1:
            raise ApplicationError("no_bars", "FLOW has no 1d bars any more; import data.")
        return real(wf, step)

    with schema_context(alpha.tenant.schema_name), mock.patch.dict(HANDLERS, {"backtest": broken_once}):
        wf = drive(_start(alpha).pk)
        assert wf.state == WorkflowState.FAILED and wf.error == "backtest: FLOW has no 1d bars any more; import data."
        job_id = wf.steps.get(name="train").result["job_id"]
        with pytest.raises(ApplicationError) as e:
            services.workflow_cancel(workflow=wf, actor=alpha.users["analyst"])
        assert e.value.code == "workflow_finished"
        wf = services.workflow_retry(workflow=wf, actor=alpha.users["analyst"])
        assert wf.state == WorkflowState.QUEUED and wf.current_step == "backtest" and wf.error == ""
        assert states(wf)["backtest"] == "pending" and states(wf)["train"] == "succeeded"
        wf = drive(wf.pk)
        assert wf.state == WorkflowState.SUCCEEDED, wf.error
        # the train step was not run again: one job, one version
        train = wf.steps.get(name="train")
        assert train.attempts == 1 and train.result["job_id"] == job_id and TrainingJob.objects.count() == 1
        assert wf.steps.get(name="backtest").attempts == 2 and calls == [1, 2]  # the attempt of each run
        assert AuditRecord.objects.filter(action="workflow.retried", object_id=str(wf.pk)).count() == 1


def test_a_cancelled_training_job_fails_the_train_step_and_a_retry_trains_in_a_new_job(alpha):
    from models_registry.services import training_job_cancel

    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        wf = _start(alpha)
        first = TrainingJob.objects.get(pk=wf.steps.get(name="train").result["job_id"])
        training_job_cancel(job=first, actor="test")  # someone cancels the job itself, not the workflow
        wf = drive(wf.pk)
        train = wf.steps.get(name="train")
        assert wf.state == WorkflowState.FAILED and train.error_code == "training_cancelled"
        wf = drive(services.workflow_retry(workflow=wf, actor=alpha.users["analyst"]).pk)
        assert wf.state == WorkflowState.SUCCEEDED, wf.error
        train = wf.steps.get(name="train")
        assert train.result["job_id"] != str(first.pk) and train.result["previous"] == [{"job_id": str(first.pk)}]


def test_cancel_stops_what_has_not_run_and_the_queued_training_job(alpha):
    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        wf = _start(alpha)
        job_id = wf.steps.get(name="train").result["job_id"]
        wf = services.workflow_cancel(workflow=wf, actor=alpha.users["analyst"])
        assert wf.state == WorkflowState.CANCELLED and wf.cancel_requested
        assert set(states(wf).values()) == {"cancelled"}
        assert TrainingJob.objects.get(pk=job_id).state == JobState.CANCELLED
        # the step's message arriving afterwards does nothing
        assert services.step_execute(workflow_id=wf.pk, name="train") == "cancelled"
        assert AuditRecord.objects.filter(action="workflow.cancelled", object_id=str(wf.pk)).count() == 1
        with pytest.raises(ApplicationError) as e:
            services.workflow_cancel(workflow=wf, actor=alpha.users["analyst"])
        assert e.value.code == "workflow_finished" and e.value.status == 409


def test_a_cancel_while_a_step_runs_ends_that_step_as_cancelled(alpha):
    from backtesting import services as backtests

    market(alpha.tenant)
    real = backtests.backtest_execute

    def cancelled_meanwhile(*, run_id):
        wf = Workflow.objects.get()
        services.workflow_cancel(workflow=wf, actor=alpha.users["analyst"])  # a person, while it runs
        return real(run_id=run_id)

    patched = mock.patch.object(backtests, "backtest_execute", cancelled_meanwhile)
    with schema_context(alpha.tenant.schema_name), patched:
        wf = drive(_start(alpha).pk)
        assert wf.state == WorkflowState.CANCELLED
        assert states(wf)["backtest"] == "cancelled" and states(wf)["deploy"] == "cancelled"
        assert BacktestRun.objects.get().state == "cancelled" and _aliases() == {}


def test_a_second_workflow_for_a_model_waits_for_the_first(alpha):
    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        first = _start(alpha)
        with pytest.raises(ApplicationError) as e:
            _start(alpha)
        assert e.value.code == "workflow_active" and e.value.details["workflow"] == str(first.pk)
        assert Workflow.objects.count() == 1 and TrainingJob.objects.count() == 1
        again, created = services.workflow_create(
            tenant=alpha.tenant, actor=alpha.users["admin"], can_manage=True, model_name="other", symbol="FLOW",
            idempotency_key="k-1", **TINY,
        )  # fmt: skip
        same, created_again = services.workflow_create(
            tenant=alpha.tenant, actor=alpha.users["admin"], can_manage=True, model_name="other", symbol="FLOW",
            idempotency_key="k-1", **TINY,
        )  # fmt: skip
        assert created and not created_again and same.pk == again.pk


# --- transient errors and lost workers -----------------------------------------------------------


def test_a_transient_database_error_is_retried_with_backoff_and_the_step_completes(alpha):
    from orchestration import tasks

    market(alpha.tenant)
    real = HANDLERS["validate"]
    calls = []

    def flaky(wf, step):
        calls.append(1)
        if len(calls) <= 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(wf, step)

    with schema_context(alpha.tenant.schema_name):
        wf = drive(_start(alpha).pk, stop_before="validate")
        with mock.patch.dict(HANDLERS, {"validate": flaky}), mock.patch.object(tasks, "backoff", return_value=0) as b:
            result = tasks.run_step.apply(args=[str(wf.pk), "validate"])
        assert result.get() == "succeeded" and len(calls) == 3
        assert [c.args[0] for c in b.call_args_list] == [0, 1]  # retries 0 and 1: growing countdowns
        validate = wf.steps.get(name="validate")
        assert validate.state == StepState.SUCCEEDED and validate.attempts == 3
        # and the backoff itself grows exponentially, capped
        with override_settings(ORCHESTRATION_RETRY_BASE_S=2):
            assert 1.6 <= tasks.backoff(0) <= 2.4 and 12.8 <= tasks.backoff(3) <= 19.2 and tasks.backoff(20) <= 360


def test_a_transient_error_that_persists_fails_the_step_saying_what_to_do(alpha):
    from orchestration import tasks

    market(alpha.tenant)

    def down(wf, step):
        raise OperationalError("could not connect to server")

    with schema_context(alpha.tenant.schema_name):
        wf = drive(_start(alpha).pk, stop_before="validate")
        with (
            mock.patch.dict(HANDLERS, {"validate": down}),
            mock.patch.object(tasks, "backoff", return_value=0),
            override_settings(ORCHESTRATION_MAX_RETRIES=2),
        ):
            assert tasks.run_step.apply(args=[str(wf.pk), "validate"]).get() == "failed"
        wf.refresh_from_db()
        validate = wf.steps.get(name="validate")
        assert wf.state == WorkflowState.FAILED and validate.error_code == "service_unavailable"
        assert validate.attempts == 3 and "retry the workflow once they are back" in validate.error


def _hold_lock(workflow_id, schema: str, ready: threading.Event, release: threading.Event):
    """Another session holding the workflow's lock (a worker running a step of it)."""
    try:
        with schema_context(schema):
            services._try_lock(workflow_id)
            ready.set()
            release.wait(30)
    finally:
        connections.close_all()


def test_the_sweep_requeues_a_step_whose_worker_was_lost_and_it_then_completes(alpha):
    market(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        wf = drive(_start(alpha).pk, stop_before="validate")
        busy = drive(_start(alpha, model_name="busy").pk, stop_before="validate")
        long_ago = timezone.now() - dt.timedelta(hours=1)
        # given two steps left 'running' an hour ago: one by a lost worker, one whose worker still holds its lock
        for w in (wf, busy):
            WorkflowStep.objects.filter(workflow=w, name="validate").update(
                state=StepState.RUNNING, heartbeat_at=long_ago, attempts=1
            )
        fresh = _start(alpha, model_name="fresh")  # queued a moment ago: its message is on its way
        ready, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(busy.pk, alpha.tenant.schema_name, ready, release))
        holder.start()
        try:
            assert ready.wait(10)
            with mock.patch.object(services, "enqueue") as enqueue:
                assert services.workflows_reap() == 1
            enqueue.assert_called_once_with(wf.pk, "validate")
        finally:
            release.set()
            holder.join()
        # a message lost before its step ever ran: the idle workflow's next step is queued again
        Workflow.objects.filter(pk=fresh.pk).update(updated_at=long_ago)
        with mock.patch.object(services, "enqueue") as enqueue:
            services.workflows_reap()
        assert mock.call(fresh.pk, "train") in enqueue.call_args_list
        # the re-queued step runs again (attempt 2) and the chain goes on to the end
        wf = drive(wf.pk)
        assert wf.state == WorkflowState.SUCCEEDED, wf.error
        assert wf.steps.get(name="validate").attempts == 2
