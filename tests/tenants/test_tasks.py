"""Celery: a task runs in its caller's schema, and one tenant cannot starve the others."""

import time

import pytest
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from ops.tasks import probe
from tenants.resolution import redis_client

pytestmark = pytest.mark.django_db


def test_task_runs_in_the_schema_of_its_caller(worker_thread, alpha, beta):
    with schema_context("t_alpha"):
        expected_alpha = AuditRecord.objects.count()
        r_alpha = probe.delay()
    with schema_context("t_beta"):
        r_beta = probe.delay()
    r_public = probe.delay()
    assert r_alpha.get(timeout=30) == {"schema": "t_alpha", "audit_records": expected_alpha}
    assert r_beta.get(timeout=30)["schema"] == "t_beta"
    assert r_public.get(timeout=30) == {"schema": "public", "audit_records": None}


def test_a_tenant_at_its_concurrency_cap_waits_while_others_run(worker_thread, alpha, beta):
    # Given alpha's worker slots (pro plan: 2) are all held
    slots = redis_client()
    slots.zadd("fair:t_alpha", {"held-1": time.time() + 600, "held-2": time.time() + 600})
    try:
        with schema_context("t_alpha"):
            waiting = probe.delay()
        with schema_context("t_beta"):
            other = probe.delay()
        # then beta's task runs at once, and alpha's does not run while its slots are held: it was
        # tried and deferred (state RETRY), not merely not reached yet
        assert other.get(timeout=30)["schema"] == "t_beta"
        deadline = time.monotonic() + 30
        while waiting.state in ("PENDING", "STARTED") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting.state == "RETRY", (waiting.state, waiting.result, waiting.traceback)
    finally:
        slots.delete("fair:t_alpha")
    # when the slots free up, alpha's task runs
    assert waiting.get(timeout=30)["schema"] == "t_alpha"
