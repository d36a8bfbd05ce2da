"""The audit chain: records sealed in batches by one writer per tenant; verify_audit detects an
edited, deleted or inserted record (and an altered seal), names the first bad one, exits 1."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from compliance.chain import audit_chain, audit_verify
from compliance.models import AuditBatch, AuditRecord
from compliance.services import audit_record

pytestmark = pytest.mark.django_db


def later() -> dt.datetime:
    """A time when every record made so far is settled (past the chain's lag)."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)


def _records(n: int) -> list[int]:
    return [audit_record("t", "test.event", None, {"n": i}).pk for i in range(n)]


def _tamper(sql: str, params) -> None:
    """As someone with direct database access would: as the owner (the app role may not), around the
    append-only trigger."""
    with connection.cursor() as cur:
        cur.execute("SET LOCAL ROLE NONE")
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(sql, params)
        cur.execute("SET LOCAL session_replication_role = origin")


def test_sealed_in_batches_and_verified(alpha):
    with schema_context(alpha.tenant.schema_name):
        ids = _records(30)
        sealed = audit_chain(now=later())
        assert sealed >= 30 and audit_chain(now=later()) == 0
        _records(5)
        audit_chain(now=later())
        report = audit_verify()
        assert report["ok"] and report["records_verified"] == AuditRecord.objects.count()
        assert report["batches"] == AuditBatch.objects.count() >= 2 and report["pending_unsealed"] == 0
        assert AuditBatch.objects.filter(last_id__gte=ids[-1]).exists()
        with pytest.raises(Exception):  # the seals are append-only too
            AuditBatch.objects.filter(pk=AuditBatch.objects.first().pk).update(hash="0" * 64)


@pytest.mark.parametrize("how", ["edited", "deleted", "inserted", "seal"])
def test_tampering_is_found_and_the_first_bad_record_named(alpha, how):
    schema = alpha.tenant.schema_name
    with schema_context(schema):
        ids = _records(20)
        audit_chain(now=later())
        victim = ids[7]
        table = AuditRecord._meta.db_table
        if how == "edited":
            _tamper(f"UPDATE {table} SET details = %s WHERE id = %s", ['{"n": 999}', victim])
        elif how == "deleted":
            _tamper(f"DELETE FROM {table} WHERE id = %s", [victim])
        elif how == "inserted":
            _tamper(f"DELETE FROM {table} WHERE id = %s", [victim])  # make a hole, then fill it with a forgery
            _tamper(f"INSERT INTO {table} (id, created_at, actor, action, object_type, object_id, details) "
                    "VALUES (%s, now(), 'x', 'forged', '', '', '{}')", [victim])  # fmt: skip
        else:
            batch = AuditBatch.objects.order_by("last_id").first()
            _tamper(f"UPDATE {AuditBatch._meta.db_table} SET prev_hash = %s WHERE id = %s", ["f" * 64, batch.pk])
        report = audit_verify()
        assert not report["ok"]
        problem = report["first_problem"]
        expected = {"edited": ("edited", victim), "deleted": ("deleted", victim), "inserted": ("edited", victim)}
        if how == "seal":
            assert problem["kind"] == "batch"
        else:
            assert (problem["kind"], problem["record_id"]) == expected[how], problem
    out = io.StringIO()
    with pytest.raises(SystemExit) as done:
        call_command("verify_audit", "--tenant", alpha.slug, stdout=out)
    assert done.value.code == 1 and "BROKEN" in out.getvalue() and "first bad one" in out.getvalue()


def test_a_record_inserted_inside_a_sealed_range_is_found(alpha):
    with schema_context(alpha.tenant.schema_name):
        table = AuditRecord._meta.db_table
        _records(3)
        with connection.cursor() as cur:  # an id taken and never used (as a rolled-back insert leaves)
            cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
            gap = cur.fetchone()[0]
        _records(3)
        audit_chain(now=later())
        _tamper(f"INSERT INTO {table} (id, created_at, actor, action, object_type, object_id, details) "
                "VALUES (%s, now(), 'x', 'forged', '', '', '{}')", [gap])  # fmt: skip
        report = audit_verify()
        assert report["first_problem"] == {"kind": "inserted", "record_id": gap,
                                           "message": f"record #{gap} appeared inside a sealed range"}  # fmt: skip


def test_the_command_reports_a_good_chain(alpha):
    with schema_context(alpha.tenant.schema_name):
        _records(3)
    out = io.StringIO()
    call_command("verify_audit", "--tenant", alpha.slug, stdout=out)
    assert "verifies" in out.getvalue() and "head" in out.getvalue()
