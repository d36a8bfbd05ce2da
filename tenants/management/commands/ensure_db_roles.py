from urllib.parse import unquote, urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, ProgrammingError, connection, transaction

from tenants.db import roles


class Command(BaseCommand):
    help = (
        "Create the app role (DB_APP_ROLE, default ati_app) and grant it what request handling needs "
        "(idempotent; runs as the owner: `make migrate` calls it after migrating). Every schema the owner "
        "owns (public, the template, each tenant): USAGE, rows of every table (SELECT/INSERT/UPDATE/DELETE), "
        "sequences (USAGE/SELECT); the audit tables only SELECT/INSERT. Default privileges cover tables the "
        "owner creates later. The role is NOLOGIN (the owner's login takes it with `-c role=`) unless "
        "DATABASE_APP_URL is set, then it logs in with that URL's password. Does nothing when "
        "DB_APP_ROLE_ENABLED=0. With --check, changes nothing and exits 1 if the app role could change "
        "an audit row or owns anything (outside Optuna's schema)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Verify only; exit 1 on a gap.")

    def handle(self, *args, **opts):
        if not roles.enabled():
            self.stdout.write("DB_APP_ROLE_ENABLED is off: everything runs as the owner; nothing to do.")
            return
        role = roles.app_role()
        if opts["check"]:
            return self._check(role)
        with connection.cursor() as cur:
            cur.execute("SELECT current_user, session_user")
            owner, session = cur.fetchone()
            if owner != session:
                raise CommandError(
                    f"connected as {session} in role {owner}: run as the owner "
                    "(DB_CONNECT_AS_OWNER=1, or DB_APP_ROLE_ENABLED=0 to turn roles off)"
                )
            if owner == role:
                raise CommandError(f"DATABASE_URL logs in as the app role {role}: it must name the owner")
            self._role_ensure(cur, role, owner)
        with transaction.atomic():
            with connection.cursor() as cur:
                schemas = self._grant(cur, role, owner)
        self.stdout.write(f"app role {role}: grants on {len(schemas)} schema(s) as owner {owner}")

    def _role_ensure(self, cur, role: str, owner: str) -> None:
        login = bool(settings.DATABASE_APP_URL)
        q = roles.quote(role)
        if not roles.role_exists(cur, role):
            try:
                with transaction.atomic():  # another process may create it at the same moment
                    cur.execute(f"CREATE ROLE {q} {'LOGIN' if login else 'NOLOGIN'}")
            except (IntegrityError, ProgrammingError) as exc:
                if not roles.role_exists(cur, role):
                    raise CommandError(
                        f"cannot create role {role} as {owner} ({exc.__class__.__name__}): create it once "
                        f"as a superuser (CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'}) and rerun"
                    ) from exc
        if login:
            password = unquote(urlparse(settings.DATABASE_APP_URL).password or "")
            if password:
                # through psycopg directly: Django's SQL debug log would otherwise record the password
                from psycopg import sql

                raw = connection.connection
                with raw.cursor() as c:
                    c.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), password))
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:  # `-c role=` and ALTER DEFAULT PRIVILEGES need membership
            cur.execute(
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = current_user",
                [role],
            )
            if cur.fetchone() is None:
                cur.execute(f"GRANT {q} TO {roles.quote(owner)}")

    def _grant(self, cur, role: str, owner: str) -> list[str]:
        q, o = roles.quote(role), roles.quote(owner)
        # only the owner creates objects in public (PostgreSQL 15+ already does this)
        cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        cur.execute(f"REVOKE CREATE ON DATABASE {connection.ops.quote_name(connection.settings_dict['NAME'])} FROM {q}")
        # Optuna's study tables (models_registry/services/training.py): the app role creates them
        optuna = roles.quote(settings.OPTUNA_SCHEMA)
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {optuna}")
        cur.execute(f"GRANT USAGE, CREATE ON SCHEMA {optuna} TO {q}")
        cur.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = 'public' OR (nspowner = "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user) AND nspname NOT LIKE 'pg\\_%%' "
            "AND nspname <> 'information_schema') ORDER BY nspname"
        )
        schemas = [row[0] for row in cur.fetchall()]
        for schema in schemas:
            roles.schema_grant(cur, schema, role)
        # what the owner creates later (migrations, cloned tenant schemas) is covered too; the audit
        # tables of a new schema lose UPDATE/DELETE in the provisioning step (roles.schema_grant)
        cur.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT {roles.TABLE_PRIVILEGES} ON TABLES TO {q}")
        cur.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT {roles.SEQUENCE_PRIVILEGES} ON SEQUENCES TO {q}")
        cur.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT USAGE ON SCHEMAS TO {q}")
        return schemas

    def _check(self, role: str) -> None:
        problems = []
        with connection.cursor() as cur:
            if not roles.role_exists(cur, role):
                raise CommandError(f"role {role} does not exist: run `manage.py ensure_db_roles`")
            cur.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = ANY(%s) AND c.relkind IN ('r', 'p') AND (has_table_privilege(%s, c.oid, 'UPDATE') "
                "OR has_table_privilege(%s, c.oid, 'DELETE') OR has_table_privilege(%s, c.oid, 'TRUNCATE'))",
                [list(roles.AUDIT_TABLES), role, role, role],
            )
            problems += [f"{name}: the app role may UPDATE/DELETE/TRUNCATE" for (name,) in cur.fetchall()]
            cur.execute(  # but Optuna's tables, which the app role creates in their own schema
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE r.rolname = %s AND n.nspname NOT IN (%s, 'pg_toast')",
                [role, settings.OPTUNA_SCHEMA],
            )
            owned = cur.fetchone()[0]
            if owned:
                problems.append(f"the app role owns {owned} relation(s)")
            cur.execute("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = %s", [role])
            if cur.fetchone()[0]:
                problems.append("the app role is a superuser or may create roles or databases")
        for p in problems:
            self.stderr.write(p)
        if problems:
            raise CommandError(f"{len(problems)} problem(s): run `manage.py ensure_db_roles`", returncode=1)
        self.stdout.write(f"app role {role}: audit tables append-only, owns nothing")
