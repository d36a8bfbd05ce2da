"""The rl agent in the live stream: once an RL version is in production for the instrument, every
stream decision carries its vote (the state from the stream's own feature engine for the version's
feature set) and the RL events are published after the batch's commit."""

from unittest import mock

import pytest
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence.models import Decision
from intelligence.rerun import decisions_replay
from intelligence.stream import TenantStream
from models_registry.models import JobState, ModelVersion
from models_registry.services.registry import model_deploy
from models_registry.services.training import training_job_create, training_job_run
from tests.intelligence.helpers import clear_streams, live_market

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    yield schema, live_market(alpha.tenant, "RLS", seed=63, live=20)
    clear_streams(schema)


def _drain(stream: TenantStream) -> None:
    while stream.run_once(block_ms=10):
        pass


def test_a_deployed_rl_policy_votes_on_every_stream_bar_and_publishes_events(
    alpha, market, django_capture_on_commit_callbacks
):
    schema, live = market
    with schema_context(schema):
        job, _ = training_job_create(
            tenant=alpha.tenant, actor="test", model_name="rl-live", symbol="RLS",
            target={"kind": "rl", "algo": "actor_critic"}, n_trials=3, enqueue=False,
        )  # fmt: skip
        assert training_job_run(job_id=job.pk) == JobState.SUCCEEDED
        version = ModelVersion.objects.get(training_job=job)
        assert version.feature_names  # the policy reads the feature set, not only the closes
        # stands in for a version that showed an edge (this short series has none: the gate would refuse it)
        ModelVersion.objects.filter(pk=version.pk).update(no_edge=False)
        version.refresh_from_db()
        model_deploy(model=version.model, version=version, reason="test")
    bus.publish_many("market.data.update", live, schema=schema)
    stream = TenantStream(alpha.tenant, batch=10)
    stream.start()
    with mock.patch("intelligence.stream.publish_decisions"), django_capture_on_commit_callbacks(execute=True):
        _drain(stream)
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream", symbol="RLS").order_by("ts"))
    assert len(decisions) == 20
    votes = [next(v for v in d.votes if v["agent"] == "rl") for d in decisions]
    assert all(not v["details"].get("abstain") and v["details"]["version"] == version.ref for v in votes), votes[0]
    signals = bus.client().xrange(bus.stream_key("rl.signal.generated", schema))
    assert len(signals) == 20
    assert bus.client().xlen(bus.stream_key("rl.confidence.update", schema)) == 20
    actionable = sum(v["action"] != "HOLD" for v in votes)
    assert bus.client().xlen(bus.stream_key("rl.action.recommended", schema)) == actionable
    # a replay reloads the same policy by version (sha256-checked) and derives every decision again
    with schema_context(schema):
        report = decisions_replay(symbol="RLS")["report"]
    assert report["compared"] == 20 and report["matched"] == 20 and report["exact"], report["first_mismatch"]


def test_without_an_rl_version_the_stream_agent_abstains_and_publishes_nothing(
    alpha, market, django_capture_on_commit_callbacks
):
    schema, live = market
    bus.publish_many("market.data.update", live[:5], schema=schema)
    stream = TenantStream(alpha.tenant, batch=10)
    stream.start()
    with mock.patch("intelligence.stream.publish_decisions"), django_capture_on_commit_callbacks(execute=True):
        _drain(stream)
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream", symbol="RLS"))
    assert len(decisions) == 5
    rl_votes = [next(v for v in d.votes if v["agent"] == "rl") for d in decisions]
    assert all(v["details"].get("abstain") for v in rl_votes), rl_votes[0]
    assert bus.client().xlen(bus.stream_key("rl.signal.generated", schema)) == 0
