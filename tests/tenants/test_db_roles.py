"""Database roles: request handling runs as the app role, which cannot change or delete audit rows
nor remove the append-only guard; schema changes run as the owner (tenants/db/roles.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django_tenants.utils import schema_context

from accounts.models import User
from compliance.models import AuditRecord
from compliance.services import audit_record
from tenants import services as tenant_services
from tenants.db import roles
from tenants.models import Tenant
from tenants.services import tenant_provision
from tests.conftest import service_env

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not settings.DB_APP_ROLE_ENABLED, reason="DB_APP_ROLE_ENABLED=0: all runs as the owner"),
]

APP = settings.DB_APP_ROLE
REFUSED_FOR_THE_APP = [
    ("UPDATE compliance_auditrecord SET action = 'x'", "permission denied"),
    ("DELETE FROM compliance_auditrecord", "permission denied"),
    ("TRUNCATE compliance_auditrecord", "permission denied"),
    ("UPDATE compliance_auditbatch SET prev_hash = hash", "permission denied"),
    ("DELETE FROM compliance_auditbatch", "permission denied"),
    ("DROP TRIGGER compliance_auditrecord_append_only ON compliance_auditrecord", "must be owner"),
    ("ALTER TABLE compliance_auditrecord DISABLE TRIGGER compliance_auditrecord_append_only", "must be owner"),
    ("ALTER TABLE compliance_auditrecord DISABLE TRIGGER ALL", "must be owner"),
    ("DROP TABLE compliance_auditrecord", "must be owner"),
    ("DROP FUNCTION compliance_audit_append_only()", "must be owner"),
    (
        "CREATE OR REPLACE FUNCTION compliance_audit_append_only() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ "
        "LANGUAGE plpgsql",
        "permission denied for schema",
    ),
    ("SET LOCAL session_replication_role = replica", "permission denied"),
    ("CREATE SCHEMA t_by_the_app", "permission denied"),
    ("CREATE TABLE public.by_the_app (id int)", "permission denied"),
]


def _one(sql: str, params=None):
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _refused(sql: str) -> str:
    """The error PostgreSQL gives for ``sql`` (inside a savepoint, so the test goes on)."""
    with pytest.raises(DatabaseError) as exc, transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(sql)
    return str(exc.value)


def _trigger_present(table: str) -> bool:
    return (
        _one(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s AND t.tgname = %s AND t.tgenabled = 'O'",
            [table, f"{table}_append_only"],
        )[0]
        == 1
    )


def test_the_default_connection_is_the_app_role_and_the_owner_is_the_session_user():
    current, session = _one("SELECT current_user, session_user")
    assert current == APP and session != APP
    assert not _one("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = %s", [APP])[0]


def test_a_request_is_handled_as_the_app_role(alpha):
    # given: every query of a request is watched; when: an API call; then: it ran as the app role
    seen = set()

    def watch(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        seen.add(context["connection"].connection.execute("SELECT current_user").fetchone()[0])
        return result

    with connection.execute_wrapper(watch):
        r = alpha.client().get("/api/v1/api-keys/")
    assert r.status_code == 200
    assert seen == {APP}


@pytest.mark.parametrize("sql,error", REFUSED_FOR_THE_APP)
def test_the_app_role_cannot_touch_audit_rows_or_the_guard(alpha, sql, error):
    with schema_context(alpha.tenant.schema_name):
        assert _trigger_present("compliance_auditrecord") and _trigger_present("compliance_auditbatch")
        assert error in _refused(sql)
        assert _trigger_present("compliance_auditrecord")  # the guard is still there


def test_the_app_role_inserts_and_reads_audit_rows_and_writes_ordinary_tables(alpha):
    with schema_context(alpha.tenant.schema_name):
        rec = audit_record("system", "roles.checked", None, {"n": 1})
        assert AuditRecord.objects.filter(pk=rec.pk, action="roles.checked").exists()
        with connection.cursor() as cur:  # tenant and public tables: every row operation
            cur.execute("UPDATE intelligence_position SET symbol = symbol WHERE false")
            cur.execute("DELETE FROM intelligence_position WHERE false")
            cur.execute("UPDATE public.tenants_apikey SET name = name WHERE false")
            cur.execute("DELETE FROM public.tenants_apikey WHERE false")


def test_the_owner_meets_the_trigger_when_privileges_allow_it(alpha):
    # the second layer: even as the owner (a migration, a DBA), an UPDATE/DELETE is refused by the trigger
    with schema_context(alpha.tenant.schema_name), transaction.atomic():
        audit_record("system", "roles.checked")
        with connection.cursor() as cur:
            cur.execute("SET LOCAL ROLE NONE")
        for sql in ("UPDATE compliance_auditrecord SET action = 'x'", "DELETE FROM compliance_auditrecord"):
            assert "append-only" in _refused(sql)


def _app_privileges(schema: str, table: str) -> dict[str, bool]:
    return {
        p: _one("SELECT has_table_privilege(%s, %s, %s)", [APP, f"{schema}.{table}", p])[0]
        for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
    }


AUDIT_PRIVILEGES = {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}
ROW_PRIVILEGES = {"SELECT": True, "INSERT": True, "UPDATE": True, "DELETE": True, "TRUNCATE": False}


def test_a_tenant_provisioned_later_gets_the_same_grants(tenants_ab):
    # given: ensure_db_roles ran at setup; when: a tenant is provisioned (cloned from the template)
    tenant, _ = tenant_provision(slug="roles-later", owner_email="o@roles-later.test")
    schema = tenant.schema_name
    # then: the app role writes rows but only appends audit records, and owns nothing there
    for table in roles.AUDIT_TABLES:
        assert _app_privileges(schema, table) == AUDIT_PRIVILEGES
    assert _app_privileges(schema, "intelligence_position") == ROW_PRIVILEGES
    assert _app_privileges(settings.TENANT_TEMPLATE_SCHEMA, "compliance_auditrecord") == AUDIT_PRIVILEGES
    owned = _one(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND pg_get_userbyid(c.relowner) = %s",
        [schema, APP],
    )
    assert owned == (0,)
    with schema_context(schema):
        assert AuditRecord.objects.filter(action="tenant.provisioned").count() == 1
        assert "permission denied" in _refused("DELETE FROM compliance_auditrecord")
        assert "must be owner" in _refused("DROP TRIGGER compliance_auditrecord_append_only ON compliance_auditrecord")
    assert _one("SELECT current_user") == (APP,)  # back to the app role after the owner's clone


def test_ensure_db_roles_refuses_the_app_role_and_is_idempotent_as_the_owner():
    with pytest.raises(CommandError, match="run as the owner"):
        call_command("ensure_db_roles", stdout=io.StringIO())
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET LOCAL ROLE NONE")
        for _ in range(2):
            out = io.StringIO()
            call_command("ensure_db_roles", stdout=out)
            assert f"app role {APP}: grants on" in out.getvalue()
    assert _app_privileges("t_alpha", "compliance_auditrecord") == AUDIT_PRIVILEGES
    out = io.StringIO()
    call_command("ensure_db_roles", "--check", stdout=out)
    assert "audit tables append-only, owns nothing" in out.getvalue()


def test_ensure_db_roles_check_fails_on_a_gap(alpha):
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET LOCAL ROLE NONE")
            cur.execute(f"GRANT UPDATE ON t_alpha.compliance_auditrecord TO {APP}")
            cur.execute(f"SET LOCAL ROLE {APP}")
        err = io.StringIO()
        with pytest.raises(CommandError, match="1 problem"):
            call_command("ensure_db_roles", "--check", stdout=io.StringIO(), stderr=err)
        assert "t_alpha.compliance_auditrecord" in err.getvalue()
        transaction.set_rollback(True)


SCRIPT = (
    "import django; django.setup(); from django.db import connection; c = connection.cursor(); "
    "c.execute('SELECT current_user'); print(c.fetchone()[0])"
)


def _process_user(**env) -> str:
    """current_user of a fresh process configured like gunicorn, Celery or the stream (manage.py)."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **service_env(), "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_processes_connect_as_the_app_role_unless_switched_off():
    owner = connections["owner"].settings_dict["USER"]
    assert _process_user() == APP
    assert _process_user(DB_APP_ROLE_ENABLED="0") == owner
    assert _process_user(DB_CONNECT_AS_OWNER="1") == owner


# --- with its own login (DATABASE_APP_URL), the owner's DDL runs on a second connection ------------


@pytest.fixture(scope="module")
def _schemas_made(django_db_setup, django_db_blocker):
    """Schemas committed by the owner's own connection: dropped once the tests' transactions ended."""
    made = []
    yield made
    # a connection of its own: pytest-django may tear this module fixture down while another
    # module's test forbids the ``owner`` alias
    own = connections["owner_cleanup"] = connections["owner"].__class__(
        dict(connections.settings["owner"]), "owner_cleanup"
    )
    try:
        with django_db_blocker.unblock(), own.cursor() as cur:
            for schema in made:
                cur.execute(f"DROP SCHEMA IF EXISTS {roles.quote(schema)} CASCADE")
    finally:
        own.close()
        del connections["owner_cleanup"]


@pytest.fixture
def separate_owner(monkeypatch, tenants_ab, _schemas_made):
    """As when the app role logs in by itself: owner work on the ``owner`` connection, a second
    connection outside the test's transaction, committed on its own."""
    monkeypatch.setattr(roles, "owner_connection_separate", lambda: True)
    saved = connections["owner"]
    own = saved.__class__(dict(connections.settings["owner"]), "owner_own")  # an alias the test allows
    connections["owner"] = connections["owner_own"] = own
    try:
        yield _schemas_made
    finally:
        connections["owner"] = saved
        own.close()


def _owner_sees_schema(schema: str) -> bool:
    with connections["owner"].cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cur.fetchone() is not None


def test_separate_owner_connection_clones_and_grants(separate_owner):
    separate_owner.append("t_roles_sep")
    tenant, _ = tenant_provision(slug="roles-sep", owner_email="o@roles-sep.test")
    assert _owner_sees_schema("t_roles_sep")  # committed by the owner's own transaction
    assert _app_privileges("t_roles_sep", "compliance_auditrecord") == AUDIT_PRIVILEGES
    with schema_context(tenant.schema_name):
        assert AuditRecord.objects.filter(action="tenant.provisioned").count() == 1
    assert _one("SELECT current_user") == (APP,)


def test_separate_owner_connection_failure_inside_a_transaction_leaves_no_tenant(separate_owner, monkeypatch):
    # given: provisioning fails after the owner committed the clone, inside a caller's transaction
    # (which still locks the new schema's sequences, so the schema waits for the next attempt:
    # test_separate_owner_connection_reclaims_a_schema_left_by_a_crash)
    separate_owner.append("t_roles_fail")

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tenant_services, "_api_key_insert", boom)
    with pytest.raises(RuntimeError):
        tenant_provision(slug="roles-fail", owner_email="f@roles-fail.test")
    assert not Tenant.objects.filter(slug="roles-fail").exists()
    assert not User.objects.filter(email="f@roles-fail.test").exists()


def test_separate_owner_connection_reclaims_a_schema_left_by_a_crash(separate_owner):
    # given: a schema with no tenant, as a process killed between the two commits leaves it
    separate_owner.append("t_roles_orphan")
    with connections["owner"].cursor() as cur:
        cur.execute("CREATE SCHEMA t_roles_orphan")
        cur.execute("CREATE TABLE t_roles_orphan.leftover (id int)")
    # when: the slug is provisioned again; then: a fresh clone replaces it
    tenant_provision(slug="roles-orphan")
    assert _owner_sees_schema("t_roles_orphan")
    assert _one("SELECT to_regclass('t_roles_orphan.leftover')") == (None,)
    assert _one("SELECT to_regclass('t_roles_orphan.compliance_auditrecord')")[0] is not None


def test_deleting_a_tenant_drops_its_schema_as_the_owner(tenants_ab):
    tenant, _ = tenant_provision(slug="roles-gone")
    tenant.delete(force_drop=True)
    assert _one("SELECT to_regnamespace('t_roles_gone')") == (None,)
    assert _one("SELECT current_user") == (APP,)


def test_separate_owner_connection_drops_a_deleted_tenants_schema_after_commit(
    separate_owner, django_capture_on_commit_callbacks
):
    separate_owner.append("t_roles_del")
    with connections["owner"].cursor() as cur:
        cur.execute("CREATE SCHEMA t_roles_del")
    tenant = Tenant.objects.create(schema_name="t_roles_del", slug="roles-del", name="x", plan=_free_plan())
    with django_capture_on_commit_callbacks(execute=True):
        tenant.delete(force_drop=True)
        assert _owner_sees_schema("t_roles_del")  # not before the deletion commits
    assert not _owner_sees_schema("t_roles_del")
    assert not Tenant.objects.filter(slug="roles-del").exists()


def _free_plan():
    from tenants.models import Plan

    return Plan.objects.get(code="free")
