"""``python -m benchmarks.tenants`` (README "Scale: 500 tenants") with 3 tenants against this
session's test database, in a subprocess as ``make scale-tenants`` runs it: it prints every figure
and ``--drop`` leaves nothing behind (tenants, sign-up users, schemas, the pending-migration probe)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.db import connection

from accounts.models import User
from tenants.models import Tenant
from tests.conftest import service_env

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "scaletest"
NUMBER = r"[\d.,]+"
FIGURES = [
    rf"tenant creation \(tenant_provision\)\s+p50\s+{NUMBER} ms\s+p99\s+{NUMBER} ms\s+max\s+{NUMBER} ms\s+total\s+"
    rf"{NUMBER} s for 3",
    rf"decision POST /api/v1/decisions/,\s+\d+ tenants present\s+p50\s+{NUMBER} ms\s+p99\s+{NUMBER} ms\s+over 20",
    rf"decision POST /api/v1/decisions/,\s+\d+ tenants present \(after --drop\)\s+p50\s+{NUMBER} ms",
    rf"decision p99 ratio \d+ tenants / \d+\s+{NUMBER}x .*target <= 1.2x\) -> (met|MISSED)",
    rf"sign-up \(POST /accounts/signup/ \+ GET /app/\),\s+\d+ tenants present\s+p50\s+{NUMBER} ms.*-> (met|MISSED)",
    rf"catalog,\s+\d+ tenants present\s+pg_class\s+{NUMBER} rows\s+pg_class \+ pg_attribute\s+{NUMBER} MB",
    rf"migrate_schemas --tenant, standard, nothing pending\s+{NUMBER} s\s+over \d+ schemas",
    rf"migrate_schemas --tenant, multiprocessing, nothing pending\s+{NUMBER} s",
    rf"migrate_schemas --tenant, standard, 1 pending\s+{NUMBER} s",
    rf"migrate_schemas --tenant, multiprocessing, 1 pending\s+{NUMBER} s",
    r"drop \(--drop\)\s+\d+ tenants in [\d.]+ s; schemas of this run left: 0",
]


def _state() -> dict:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", [f"t\\_{PREFIX}%"])
        schemas = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s",
            ["scale_probe"],
        )
        probes = cur.fetchone()[0]
        cur.execute("SELECT schema_name FROM public.tenants_tenant")
        applied = 0
        for (schema,) in cur.fetchall():
            cur.execute(f'SELECT count(*) FROM "{schema}".django_migrations WHERE name = %s', ["9999_scale_probe"])
            applied += cur.fetchone()[0]
    return {
        "tenants": Tenant.objects.exclude(status=Tenant.Status.TEMPLATE).count(),  # the script may make the template
        "run tenants": Tenant.objects.filter(slug__startswith=f"{PREFIX}-").count(),
        "users": User.objects.count(),
        "run users": User.objects.filter(email__startswith=f"{PREFIX}-").count(),
        "run schemas": schemas,
        "probe tables": probes,
        "probe migrations": applied,
    }


def test_scale_script_prints_every_figure_and_drops_what_it_created(db):
    # given this session's test database and nothing of a previous run (this test's transaction
    # only reads: the script commits on its own connections)
    before = _state()
    env = dict(os.environ, **service_env())
    assert before["run tenants"] == before["run schemas"] == before["probe tables"] == 0
    # when the scale script runs with 3 tenants and --drop
    argv = [sys.executable, "-m", "benchmarks.tenants", "--count", "3", "--requests", "20", "--signups", "1"]
    done = subprocess.run(
        [*argv, "--drop", "--prefix", PREFIX], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    # then it printed every figure
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for figure in FIGURES:
        assert re.search(figure, done.stdout), f"missing: {figure}\n{done.stdout}"
    assert len(re.findall(r"sign-up \(POST", done.stdout)) == 2
    assert len(re.findall(r"^catalog,", done.stdout, re.M)) == 2
    # and left the database as it found it
    assert _state() == before
