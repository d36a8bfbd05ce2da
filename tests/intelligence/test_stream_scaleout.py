"""Two decision stream consumers for one partition at once (docs/deploy.md: consumers on several
machines, a lease per tenant and partition). The lease makes one the owner; when an owner stalls
past its lease mid-batch, the other takes over while the first still holds a computed batch: the
database constraint (``stream_bar_once``) decides who stored it, the loser's batch fails and comes
back, and every bar is decided once, in order. The whole fleet is exercised by
``benchmarks.scaleout`` (tests/scaleout/, slow)."""

from unittest import mock

import pytest
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence.models import Decision
from intelligence.stream import TenantStream
from tests.intelligence.helpers import clear_streams, live_market

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    yield schema, live_market(alpha.tenant, "TWO", seed=67, live=40)
    clear_streams(schema)


def _drain(stream: TenantStream) -> int:
    total = 0
    while n := stream.run_once(block_ms=10):
        total += n
    return total


def _stamps(schema: str) -> list[int]:
    with schema_context(schema):
        return [int(d.ts.timestamp()) for d in Decision.objects.filter(source="stream").order_by("ts")]


def _lease_lost(stream: TenantStream) -> None:
    """As if ``stream`` stalled for longer than LEASE_S: its lease ran out in Redis and its own
    idea of holding it too."""
    bus.client().delete(stream.lease_key)
    stream._lease_until = 0.0


@pytest.mark.parametrize("first", ["standby", "stalled owner"])
def test_an_owner_that_stalls_past_its_lease_mid_batch_decides_no_bar_twice(alpha, market, first):
    schema, live = market
    owner = TenantStream(alpha.tenant, consumer_name="owner", batch=20, lease=True)
    standby = TenantStream(alpha.tenant, consumer_name="standby", batch=20, lease=True)
    owner.start()
    standby.start()
    bus.publish_many("market.data.update", live[:20], schema=schema)
    commit = TenantStream._commit
    held = {}

    def owner_commit(*args):
        # given the owner has computed its batch and stalls before storing it
        held["args"] = args
        _lease_lost(owner)
        # when the standby takes the partition over (the owner's pending batch is claimed first)
        assert standby.owns()
        if first == "standby":
            assert _drain(standby) == 20  # stores and acknowledges the batch
            commit(owner, *args)  # then the stalled owner wakes up and commits: the constraint refuses it
        else:
            _drain(standby)

    def standby_commit(*args):
        if "args" in held:  # the stalled owner commits first, while the standby computes the same bars
            commit(owner, *held.pop("args"))
        commit(standby, *args)

    owner._commit = owner_commit
    if first == "stalled owner":
        standby._commit = standby_commit
    with mock.patch("intelligence.stream.publish_decisions"):
        assert owner.owns()
        owner.run_once(block_ms=10)
        # then every bar of the batch is stored once, whoever lost the race
        assert _stamps(schema) == [b["ts"] for b in live[:20]]
        # the owner, its lease gone, waits as the standby; the new owner decides the next bars
        assert not owner.owns()
        assert owner.run_once(block_ms=10) == 0
        bus.publish_many("market.data.update", live[20:], schema=schema)
        assert _drain(standby) == 20
    assert _stamps(schema) == [b["ts"] for b in live]  # each bar once, in order
    with schema_context(schema):
        assert Decision.objects.filter(source="stream", resolved_at__isnull=False).count() == len(live) - 1
    groups = bus.stream_info("market.data.update", schema=schema)["groups"]
    assert [g["pending"] for g in groups] == [0]
    standby.release()
