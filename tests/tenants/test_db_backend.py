"""The database backend (tenants/db/base.py): ``SET search_path`` is sent only when the
session's path changes, and never skipped when the session may have lost it."""

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from intelligence.models import Position

pytestmark = pytest.mark.django_db


def _symbols() -> list[str]:
    return list(Position.objects.values_list("symbol", flat=True))


def _sets(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SET search_path")]


@pytest.fixture
def two(alpha, beta):
    for t, symbol in ((alpha.tenant, "AAA"), (beta.tenant, "BBB")):
        with schema_context(t.schema_name):
            Position.objects.create(symbol=symbol)
    return alpha.tenant, beta.tenant


def test_the_same_tenant_again_sends_no_set_and_a_switch_sends_one(two):
    a, b = two
    with CaptureQueriesContext(connection) as ctx:
        for tenant, want in ((a, "AAA"), (a, "AAA"), (b, "BBB"), (b, "BBB"), (a, "AAA")):
            connection.set_schema_to_public()  # as the middleware does around every request
            connection.set_tenant(tenant)
            assert _symbols() == [want]
    assert len(_sets(ctx)) == 3  # a, b, a: the repeats reuse the session's path
    assert b.schema_name in _sets(ctx)[1]


def test_after_a_rolled_back_tenant_switch_each_tenant_reads_its_own_rows(two):
    a, b = two
    connection.set_tenant(a)
    assert _symbols() == ["AAA"]
    with pytest.raises(RuntimeError), transaction.atomic():
        connection.set_tenant(b)
        assert _symbols() == ["BBB"]  # SET to b after the savepoint...
        connection.set_tenant(a)
        raise RuntimeError  # ...which ROLLBACK TO SAVEPOINT reverts
    for tenant, want in ((a, "AAA"), (b, "BBB"), (b, "BBB"), (a, "AAA")):
        connection.set_tenant(tenant)
        assert _symbols() == [want]


def test_a_connection_dropped_under_it_is_unusable_and_the_next_one_gets_its_path_again(two):
    a, b = two
    other = connections.create_connection("default")  # outside the test's transaction
    try:
        other.set_tenant(b)
        with other.cursor() as cursor:
            cursor.execute("SELECT symbol FROM intelligence_position")
            assert cursor.fetchall() == []  # b's row is in the test's uncommitted transaction
        assert other.is_usable()
        with connection.cursor() as cursor:  # the server ends that session, as a restart would
            cursor.execute("SET LOCAL ROLE NONE")  # as the owner: the app role may not end its sessions
            cursor.execute("SELECT pg_terminate_backend(%s)", [other.connection.info.backend_pid])
        with pytest.raises(OperationalError), other.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert not other.is_usable()  # so Django closes it at the end of the request
        other.close()
        other.set_tenant(b)
        with other.cursor() as cursor:
            cursor.execute("SHOW search_path")
            assert b.schema_name in cursor.fetchone()[0]  # a new session: the path was sent again
    finally:
        other.close()


def test_a_set_undone_by_a_rollback_is_sent_again(two):
    a, b = two
    other = connections.create_connection("default")  # a real transaction, outside the test's

    def path() -> str:
        with other.cursor() as cursor:
            cursor.execute("SHOW search_path")
            return cursor.fetchone()[0]

    try:
        other.set_tenant(a)
        assert a.schema_name in path()
        other.set_autocommit(False)
        other.set_tenant(b)
        assert b.schema_name in path()  # SET inside the transaction...
        other.rollback()  # ...undone with it: the session is on a's path again
        other.set_autocommit(True)
        other.set_tenant(b)
        assert b.schema_name in path()
    finally:
        other.close()
