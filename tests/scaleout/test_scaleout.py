"""Scale-out on loopback (issue 14, part 7): ``benchmarks.scaleout`` run as ``make scaleout`` runs it,
against this session's database and Redis: 2 gunicorn + 2 edge + 2 Celery workers + 2 decision
stream consumers (and a standby that takes over from a killed one) behind the round-robin proxy.
Every check it prints must pass (no bar decided twice, every decision on every socket of its
tenant and none of another, REST on both web processes) and it must leave no process behind."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.conftest import service_env

pytestmark = pytest.mark.django_db  # the test database must exist (the run makes and drops its own tenants)

CHECKS = {
    "celery workers",
    "sockets spread over the edge processes",
    "no bar decided twice",
    "every bar fed was decided",
    "partition 1's consumer decided its instruments' bars",
    "the standby took partition 0 over from its killed owner",
    "REST answers",
    "REST reached both web processes",
    "/health/ready through the proxy",
    "every process stopped",
    "resume cursors in publish order on every socket",
}


@pytest.mark.slow
def test_two_of_each_server_behind_a_proxy_decide_once_and_fan_out_to_every_socket(django_db_setup):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaleout", "--json"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **service_env()},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, out[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    failed = [(name, detail) for name, ok, detail in result["checks"] if not ok]
    assert not failed and proc.returncode == 0, out[-3000:]
    names = {name for name, _, _ in result["checks"]}
    assert CHECKS <= names
    assert sum(name.startswith("client ") for name in names) == 4  # two sockets per tenant, each checked
