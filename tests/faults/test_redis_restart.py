"""Redis killed (SIGKILL) and started again on the same port while the decision stream runs
(``run_decision_stream`` as deployed, against a private redis-server with appendonly, as
production must run it): the stream process outlives the outage and reconnects, the publisher
retries, and every live bar is decided exactly once (checked in PostgreSQL)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis
from django.conf import settings
from django_tenants.utils import schema_context

from config.settings.services import REDIS_DB_STREAMS
from eventbus import bus
from intelligence.models import Decision
from tests.conftest import service_env
from tests.faults.conftest import kill_group, spawn, wait_for
from tests.intelligence.helpers import live_market

LIVE = 200
RATE = 15  # bars a second from the publisher
DOWN_S = 2.0

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def committed_market(django_db_setup, django_db_blocker):
    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, _ = tenant_provision(slug=f"faultredis{int(time.time())}", plan="enterprise")
        live = live_market(tenant, "RDS", seed=17, live=LIVE)
    yield tenant, live
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


class Publisher(threading.Thread):
    """The market-data side: one bar at a time, retrying a bar until Redis took it."""

    def __init__(self, schema: str, bars: list[dict]):
        super().__init__(daemon=True)
        self.schema, self.bars = schema, bars
        self.published = self.retries = 0
        self.stop = threading.Event()

    def run(self):
        for bar in self.bars:
            while not self.stop.is_set():
                try:
                    bus.publish_many("market.data.update", [bar], schema=self.schema)
                    break
                except (redis.ConnectionError, redis.TimeoutError):
                    self.retries += 1  # the entry may have landed before the reply was lost: sent again
                    time.sleep(0.1)
            self.published += 1
            time.sleep(1 / RATE)


def test_a_redis_restart_mid_stream_loses_no_bar_and_decides_none_twice(
    committed_market, django_db_blocker, private_redis, monkeypatch, fault_report
):
    tenant, live = committed_market
    schema = tenant.schema_name
    monkeypatch.setattr(bus, "_client", redis.Redis(port=private_redis.port, db=REDIS_DB_STREAMS, socket_timeout=2))
    env = {**os.environ, **service_env(), "REDIS_URL": private_redis.url}
    proc = spawn(
        [sys.executable, "manage.py", "run_decision_stream", "--tenant", tenant.slug, "--batch", "10"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    publisher = Publisher(schema, live)
    output = b""
    started = time.monotonic()
    try:
        with django_db_blocker.unblock(), schema_context(schema):
            decided = lambda: Decision.objects.filter(source="stream").count()  # noqa: E731
            # the stream process is up (its group exists) before the first bar
            wait_for(lambda: bus.stream_info("market.data.update", schema=schema)["groups"], 60, "the group")
            publisher.start()
            # given the stream some bars into the live feed, the publisher still publishing
            wait_for(lambda: decided() >= 30 or proc.poll() is not None, 120, "30 decisions")
            assert proc.poll() is None, "the stream process died before the fault"
            assert publisher.published < LIVE - 30, "the publisher ended before the fault"
            # when Redis is killed outright and comes back DOWN_S later on the same port
            before = decided()
            private_redis.restart(DOWN_S)
            back = time.monotonic()
            # then the same stream process goes on deciding (it reconnected) ...
            wait_for(lambda: decided() > before + 5 or proc.poll() is not None, 60, "decisions after the restart")
            assert proc.poll() is None, "the stream process died with Redis"
            resumed_s = time.monotonic() - back
            # ... until every bar is decided
            wait_for(lambda: decided() >= LIVE or proc.poll() is not None, 180, f"{LIVE} decisions")
            publisher.join(30)
            time.sleep(1.0)  # anything decided twice would show up now
            rows = list(Decision.objects.filter(source="stream").order_by("ts").values_list("symbol", "ts"))
        groups = bus.stream_info("market.data.update", schema=schema)["groups"]
    finally:
        publisher.stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                output, _ = proc.communicate()
        kill_group(proc)
    # every bar once, in order; nothing left pending on the stream
    assert [int(ts.timestamp()) for _, ts in rows] == [b["ts"] for b in live], output.decode()[-3000:]
    assert len(set(rows)) == len(rows) == LIVE
    assert [g["pending"] for g in groups] == [0]
    assert b"Redis unreachable" in output, output.decode()[-3000:]  # it did meet the outage
    fault_report(
        f"{LIVE} bars, {before} decided before Redis was SIGKILLed, down {DOWN_S:.0f} s, deciding again "
        f"{resumed_s:.1f} s after it was back, publisher retries {publisher.retries}, "
        f"{len(rows)} decisions (each bar once), pending 0, {time.monotonic() - started:.0f} s in all"
    )
