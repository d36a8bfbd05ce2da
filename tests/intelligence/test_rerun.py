"""Replay of a recorded live period: the stream's decisions derived again by the same agents and
consensus from recorded state (engine checkpoints, each decision's inputs, stored bars) match the
stored ones field for field, across batches, two instruments, a model's votes and a restart; an
edited record or a different engine state is caught and the first differing decision named."""

import datetime as dt
import io
import json
from unittest import mock

import pytest
from django.core.management.base import CommandError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from eventbus import bus
from intelligence.models import Decision, EngineCheckpoint
from intelligence.rerun import decisions_replay
from intelligence.stream import TenantStream
from tests.intelligence.helpers import clear_streams, live_market

pytestmark = pytest.mark.django_db


def _drain(stream: TenantStream) -> None:
    while stream.run_once(block_ms=10):
        pass


def _deploy(tenant, symbol: str) -> None:
    from models_registry.services import model_deploy, model_settings_update
    from models_registry.services.training import training_job_create, training_job_run

    job, _ = training_job_create(
        tenant=tenant, actor="t", model_name="rep", symbol=symbol, families=["logistic"], n_trials=2, enqueue=False
    )
    training_job_run(job_id=job.pk)
    job.refresh_from_db()
    model_settings_update(model=job.model_version.model, deploy_policy={"gate": "none"})
    model_deploy(model=job.model_version.model, version=job.model_version)


@pytest.fixture
def recorded(alpha):
    """Two instruments decided live over 80 bars each: a first process (small batches, a checkpoint
    every commit), then a restarted one for the rest."""
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    a = live_market(alpha.tenant, "RPA", seed=71, live=80)
    b = live_market(alpha.tenant, "RPB", seed=72, live=80)
    with schema_context(schema):
        _deploy(alpha.tenant, "RPA")
    events = sorted(a + b, key=lambda e: (e["ts"], e["symbol"]))
    with mock.patch("intelligence.stream.publish_decisions"):
        bus.publish_many("market.data.update", events[:90], schema=schema)
        first = TenantStream(alpha.tenant, consumer_name="one", batch=13)
        first.start()
        with mock.patch("intelligence.stream.CHECKPOINT_EVERY_S", 0.0):
            _drain(first)
        bus.publish_many("market.data.update", events[90:], schema=schema)
        second = TenantStream(alpha.tenant, consumer_name="two", batch=17)
        _drain(second)
    yield schema, events
    clear_streams(schema)


def test_a_recorded_live_period_replays_to_the_same_decisions(alpha, recorded):
    schema, events = recorded
    with schema_context(schema):
        stored = list(Decision.objects.filter(source="stream").order_by("id"))
        assert len(stored) == 160
        assert sum(bool(d.model_version) for d in stored) > 0, "the model voted on RPA's bars"
        assert all("position" in d.inputs for d in stored)
        reasons = list(EngineCheckpoint.objects.order_by("id").values_list("reason", flat=True))
        assert reasons.count("start") == 2 and reasons.count("periodic") >= 5

        out = decisions_replay()
        report = out["report"]
        assert report["compared"] == 160 and report["matched"] == 160 and report["exact"], report["first_mismatch"]
        assert report["switched_checkpoints"] >= 1  # the restart's reload is replayed as it happened
        model = report["model"]["rep@1"]
        assert model["checked"] > 0 and model["reproduced"], model
        actions = out["actions"][("RPA", "1d")]
        assert len(actions) == 80 and set(actions.values()) <= {"BUY", "SELL", "HOLD"}

        # a period in the middle of the first process, from the periodic checkpoint before it
        mid = stored[60].ts
        part = decisions_replay(symbol="rpb", start=mid)["report"]
        assert part["compared"] == sum(1 for d in stored if d.symbol == "RPB" and d.ts >= mid)
        assert part["exact"] and part["checkpoint"]["after_id"] < stored[60].id


def test_an_edited_record_or_engine_state_is_caught(alpha, recorded):
    schema, _ = recorded
    with schema_context(schema):
        stored = list(Decision.objects.filter(source="stream").order_by("id"))
        victim = stored[100]
        Decision.objects.filter(pk=victim.pk).update(confidence=victim.confidence + 1e-9)
        report = decisions_replay()["report"]
        assert not report["exact"] and report["mismatched"] == 1
        assert report["first_mismatch"]["id"] == victim.pk
        assert set(report["first_mismatch"]["fields"]) == {"confidence"}
        Decision.objects.filter(pk=victim.pk).update(confidence=victim.confidence)

        # the engine the replay starts from is part of the record: another one decides otherwise
        cp = EngineCheckpoint.objects.filter(reason="start").order_by("id").first()
        state = dict(cp.state)
        state["log_weights"] = {"RPA": {"technical": 3.0, "trend": -3.0}}
        EngineCheckpoint.objects.filter(pk=cp.pk).update(state=state)
        report = decisions_replay(symbol="RPA", end=stored[40].ts)["report"]
        assert report["mismatched"] > 0 and report["first_mismatch"]["symbol"] == "RPA"


def test_a_period_before_any_checkpoint_or_without_decisions_is_refused(alpha, recorded):
    schema, _ = recorded
    with schema_context(schema):
        EngineCheckpoint.objects.filter(reason="start").order_by("id").first().delete()
        first = Decision.objects.filter(source="stream").order_by("id").first()
        with pytest.raises(ApplicationError) as err:
            decisions_replay(end=first.ts + dt.timedelta(days=1))
        assert err.value.code == "no_checkpoint"
        with pytest.raises(ApplicationError) as err:
            decisions_replay(symbol="NOPE")
        assert err.value.code == "no_decisions"


def test_a_replay_backtest_from_the_api_and_the_dashboard(alpha, beta, recorded, usage_redis):
    from backtesting.models import BacktestRun
    from backtesting.services import backtest_execute
    from tests.conftest import error_code
    from tests.dashboard.support import dashboard_client
    from tests.dashboard.test_backtests_pages import FORM

    schema, _ = recorded
    body = {"strategy": "consensus", "symbol": "RPA", "params": {"replay": True}}
    r = alpha.client().post("/api/v1/backtests/", body, format="json")
    assert r.status_code == 201, r.content
    with schema_context(schema):
        assert backtest_execute(run_id=r.json()["id"]) == "succeeded"
    stats = alpha.client().get(f"/api/v1/backtests/{r.json()['id']}/").json()["stats"]
    replay = stats["consensus"]["replay"]
    assert replay["exact"] and replay["compared"] == replay["matched"] == 80
    assert sum(stats["consensus"]["decisions"].values()) == 80 and stats["trades"] >= 0
    # nothing to replay: a symbol the stream never decided, no job created
    with schema_context(schema):
        live_market(alpha.tenant, "RPC", seed=73, live=1)
        runs = BacktestRun.objects.count()
    r = alpha.client().post("/api/v1/backtests/", {**body, "symbol": "RPC"}, format="json")
    assert r.status_code == 400 and error_code(r) == "no_decisions"
    assert beta.client().post("/api/v1/backtests/", body, format="json").status_code == 404
    assert alpha.client(role="viewer").post("/api/v1/backtests/", body, format="json").status_code == 403
    with schema_context(schema):
        assert BacktestRun.objects.count() == runs

    analyst = dashboard_client(alpha, "analyst")
    r = analyst.post("/app/backtests/", {**FORM, "symbol": "RPB", "strategy": "replay", "params": ""})
    assert r.status_code == 302, r.content.decode()[:2000]
    with schema_context(schema):
        run = BacktestRun.objects.filter(symbol="RPB").get()
        assert run.strategy == "consensus" and run.params == {"replay": True}
        backtest_execute(run_id=run.pk)
    page = analyst.get(f"/app/backtests/{run.pk}/").content.decode()
    assert "data-replay" in page and "80 of 80 decisions reproduced exactly" in page


def test_the_replay_command_reports_and_fails_on_a_difference(alpha, recorded):
    from django.core.management import call_command

    schema, _ = recorded
    slug = alpha.tenant.slug
    out = io.StringIO()
    call_command("replay_decisions", "--tenant", slug, "--symbol", "RPA", stdout=out)
    assert "80 of 80 in the period identical to the record" in out.getvalue()
    with schema_context(schema):
        victim = Decision.objects.filter(source="stream", symbol="RPA").order_by("id")[30]
        Decision.objects.filter(pk=victim.pk).update(action="BUY" if victim.action != "BUY" else "SELL")
    out = io.StringIO()
    with pytest.raises(SystemExit) as done:
        call_command("replay_decisions", "--tenant", slug, "--json", stdout=out)
    assert done.value.code == 1
    report = json.loads(out.getvalue())
    assert report["first_mismatch"]["id"] == victim.pk and "action" in report["first_mismatch"]["fields"]
    with pytest.raises(CommandError, match="not a date"):
        call_command("replay_decisions", "--tenant", slug, "--start", "yesterday-ish")
