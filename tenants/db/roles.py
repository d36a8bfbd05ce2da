"""Database roles: the owner changes schemas, the app role handles requests.

The owner (``DATABASE_URL``'s login) owns every schema, table, trigger and function: it runs
migrations, creates the tenant template and clones tenant schemas. Request handling, Celery tasks,
the stream and the edge connect as the app role (``DB_APP_ROLE``), which may read and write rows
but owns nothing, so it can never ``DROP``/``ALTER`` a table, drop or disable the append-only
trigger, and holds only ``SELECT``/``INSERT`` on the audit tables: an ``UPDATE``/``DELETE`` there
is refused by privileges before the trigger even runs.

Two ways to be the app role (``config/settings/services.py``):

* ``DATABASE_APP_URL`` set (production): its own login; owner work goes through the ``owner``
  alias, a second connection with its own transaction;
* unset (embedded, dev, CI): the owner's login with the startup option ``-c role=<app>``. The
  session user is still the owner, so code could ``SET ROLE NONE``: defence in depth against
  mistakes and injected SQL that does not know to do that, not a hard boundary. Owner work then
  runs on the same connection and transaction behind ``SET LOCAL ROLE NONE``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

OWNER_ALIAS = "owner"
# append-only: the app role may SELECT and INSERT, nothing else (a trigger also refuses UPDATE/DELETE)
AUDIT_TABLES = ("compliance_auditrecord", "compliance_auditbatch")
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT"
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def enabled() -> bool:
    return bool(getattr(settings, "DB_APP_ROLE_ENABLED", False))


def app_role() -> str:
    name = settings.DB_APP_ROLE
    if not _NAME_RE.match(name or ""):
        raise ValueError(f"DB_APP_ROLE {name!r} is not a plain lowercase PostgreSQL identifier")
    return name


def quote(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise ValueError(f"{name!r} is not a plain lowercase PostgreSQL identifier")
    return f'"{name}"'


def role_exists(cursor, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    return cursor.fetchone() is not None


def owner_connection_separate() -> bool:
    """Owner work needs its own connection when the default one logs in as the app itself."""
    return (
        enabled()
        and bool(getattr(settings, "DATABASE_APP_URL", ""))
        and OWNER_ALIAS in settings.DATABASES
        and connections[DEFAULT_DB_ALIAS].settings_dict["USER"] != connections[OWNER_ALIAS].settings_dict["USER"]
    )


@contextlib.contextmanager
def owner_atomic() -> Iterator[str]:
    """A transaction as the owner; yields the alias to run the DDL on.

    With its own login, the app role gets the ``owner`` connection (its own transaction, committed
    when the block ends: callers undo it themselves if their own transaction then fails). Otherwise
    the default connection's transaction, as the session's owner for the block (``SET LOCAL ROLE
    NONE``), back to the role it had afterwards, so the DDL commits or rolls back with the caller.
    """
    if owner_connection_separate():
        with transaction.atomic(using=OWNER_ALIAS):
            connections[OWNER_ALIAS].set_schema_to_public()
            yield OWNER_ALIAS
        return
    conn = connections[DEFAULT_DB_ALIAS]
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, session_user")
            current, session = cur.fetchone()
            if current != session:
                cur.execute("SET LOCAL ROLE NONE")
        yield DEFAULT_DB_ALIAS
        if current != session:
            with conn.cursor() as cur:
                cur.execute(f"SET LOCAL ROLE {quote(current)}")


def schema_drop(schema: str) -> None:
    with owner_atomic() as alias, connections[alias].cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")


def schema_grant(cursor, schema: str, role: str | None = None) -> None:
    """The app role's privileges on one schema: rows of every table, sequences, and only SELECT and
    INSERT on the audit tables (UPDATE/DELETE/TRUNCATE revoked, also from PUBLIC)."""
    role = quote(role or app_role())
    s = quote(schema)
    cursor.execute(f"GRANT USAGE ON SCHEMA {s} TO {role}")
    cursor.execute(f"GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {s} TO {role}")
    cursor.execute(f"GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {s} TO {role}")
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
        [schema, list(AUDIT_TABLES)],
    )
    for (table,) in cursor.fetchall():
        cursor.execute(
            f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {s}.{quote(table)} FROM {role}, PUBLIC"
        )


def schema_grant_if_enabled(cursor, schema: str) -> None:
    """After the owner creates a schema (a clone, the template): the app role's grants on it, when
    roles are on and the role exists (``ensure_db_roles`` creates it)."""
    if enabled() and role_exists(cursor, app_role()):
        schema_grant(cursor, schema)
