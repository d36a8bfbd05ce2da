"""The decision stream as deployed: a ``run_decision_stream`` process killed with SIGKILL in the
middle of the live bars, then started again, loses no bar and decides none twice."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from eventbus import bus
from intelligence.models import Decision
from marketdata.models import Bar
from tests.conftest import service_env
from tests.intelligence.helpers import clear_streams, live_market

LIVE = 120


pytestmark = pytest.mark.django_db  # the test database must exist for the module fixture


@pytest.fixture(scope="module")
def committed_market(django_db_setup, django_db_blocker):
    """A tenant with stored bars and the live bars to come, committed (the stream process must see them)."""
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, _ = tenant_provision(slug=f"streamkill{int(time.time())}", plan="enterprise")
        clear_streams(tenant.schema_name)
        live = live_market(tenant, "KILL", seed=91, live=LIVE)
    yield tenant, live
    clear_streams(tenant.schema_name)
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def _stream(tenant, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_decision_stream", "--tenant", tenant.slug, "--batch", "10", *extra],
        cwd=settings.BASE_DIR,
        env={**os.environ, **service_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_a_killed_stream_process_loses_no_bar_and_decides_none_twice(committed_market, django_db_blocker):
    tenant, live = committed_market
    schema = tenant.schema_name
    bus.publish_many("market.data.update", live, schema=schema)
    proc = _stream(tenant)
    try:
        with django_db_blocker.unblock(), schema_context(schema):
            # given a stream some batches into the live bars
            deadline = time.monotonic() + 120
            while Decision.objects.filter(source="stream").count() < 30:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "no decisions from the stream process"
                time.sleep(0.02)
        # when it is killed outright (no clean-up of any kind: its lease and its batch stay behind)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with django_db_blocker.unblock(), schema_context(schema):
        decided_before = Decision.objects.filter(source="stream").count()
    assert decided_before < LIVE, "killed too late to test anything"
    # then a new process (another name) waits out the dead owner's lease, takes back the pending
    # batch first, and finishes the rest
    bus.client().delete(f"lease:{schema}:decisions")  # as if its 15 s had run out
    restarted = _stream(tenant, "--once")
    out, _ = restarted.communicate(timeout=180)
    assert restarted.returncode == 0, out.decode()[-2000:]
    with django_db_blocker.unblock(), schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream").order_by("ts").values_list("ts", flat=True))
        assert [int(ts.timestamp()) for ts in decisions] == [b["ts"] for b in live]  # every bar, once, in order
        assert Bar.objects.filter(instrument__symbol="KILL").count() == 300 + LIVE
        assert Decision.objects.filter(source="stream").exclude(resolved_at=None).count() == LIVE - 1
    groups = bus.stream_info("market.data.update", schema=schema)["groups"]
    assert [g["pending"] for g in groups] == [0]
