"""Fixtures every test module reuses: two tenants (alpha, beta), a member per role in each,
API keys per scope, and clients authenticated each way. Tenants are provisioned once per session
(committed, so Celery workers and WebSocket threads see them); each test's own writes roll back."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tenants import resolution
from tenants.models import Membership, Role, Tenant
from tenants.services import _api_key_insert, tenant_provision

PASSWORD = "correct-horse-battery-9"
ROLES = [Role.OWNER, Role.ADMIN, Role.ANALYST, Role.VIEWER]


@dataclass
class TenantFixture:
    tenant: Tenant
    key: str  # all scopes
    users: dict = field(default_factory=dict)  # role -> User
    scoped_keys: dict = field(default_factory=dict)  # scope -> raw key

    @property
    def slug(self) -> str:
        return self.tenant.slug

    def jwt(self, role: str) -> str:
        refresh = RefreshToken.for_user(self.users[role])
        access = refresh.access_token
        access["tenant_id"] = self.tenant.pk
        return str(access)

    def client(self, role: str | None = None, scope: str | None = None) -> APIClient:
        """An API client: all-scopes key by default; a role's JWT; or a single-scope key."""
        c = APIClient()
        if role:
            c.credentials(HTTP_AUTHORIZATION=f"Bearer {self.jwt(role)}")
        elif scope:
            c.credentials(HTTP_AUTHORIZATION=f"Api-Key {self.scoped_keys[scope]}")
        else:
            c.credentials(HTTP_AUTHORIZATION=f"Api-Key {self.key}")
        return c


def _make_tenant(slug: str, plan: str) -> TenantFixture:
    tenant, key = tenant_provision(slug=slug, plan=plan, owner_email=f"owner@{slug}.test", owner_password=PASSWORD)
    fx = TenantFixture(tenant=tenant, key=key)
    fx.users[Role.OWNER] = Membership.objects.get(tenant=tenant, role=Role.OWNER).user
    from accounts.models import User

    for role in ROLES[1:]:
        user = User.objects.create_user(email=f"{role}@{slug}.test", password=PASSWORD)
        Membership.objects.create(user=user, tenant=tenant, role=role)
        fx.users[role] = user
    for scope in ("read", "trade", "admin"):
        # direct insert: fixture keys may exceed a free plan's cap (a test checks the cap)
        _, raw = _api_key_insert(tenant=tenant, name=f"{scope} only", scopes=[scope], created_by=fx.users[Role.OWNER])
        fx.scoped_keys[scope] = raw
    connection.set_schema_to_public()
    return fx


@pytest.fixture(scope="session")
def tenants_ab(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        alpha = _make_tenant("alpha", "pro")
        beta = _make_tenant("beta", "free")
    return alpha, beta


def _plan_kept(fx):
    """A test may change its tenant's plan or limits (in memory, and in the rolled-back DB): the
    session's tenant object gets its own plan back afterwards."""
    tenant = fx.tenant
    saved = (tenant.plan_id, tenant.plan, dict(tenant.plan.limits))
    yield fx
    tenant.plan_id, tenant.plan = saved[0], saved[1]
    tenant.plan.limits = saved[2]


@pytest.fixture
def alpha(tenants_ab, db):
    yield from _plan_kept(tenants_ab[0])


@pytest.fixture
def beta(tenants_ab, db):
    yield from _plan_kept(tenants_ab[1])


@pytest.fixture(autouse=True)
def _fresh_tenant_state():
    resolution.reset_local()
    yield
    connection.set_schema_to_public()
    resolution.reset_local()
    # per-process caches of rows a rolled-back test created (ids are not reused, but a cached
    # name -> row answer would point at a row that no longer exists)
    from features import cache as features_cache
    from intelligence import rl_agent_input as intelligence_rl_input
    from intelligence import services as intelligence_services
    from marketdata import selectors as md_selectors
    from notifications import channels as notify_channels
    from notifications import decisions as notify_decisions

    notify_decisions.reset_local()
    notify_channels.forget_secrets()
    features_cache.refs.discard(lambda key: True)
    intelligence_services._pipelines.clear()
    intelligence_services._serving.clear()
    intelligence_rl_input._versions.clear()
    md_selectors._timeframes.clear()


@pytest.fixture
def staff_user(db, django_user_model):
    """A platform staff member (Django admin, staff pages and endpoints); in no tenant."""
    return django_user_model.objects.create_user(email="ops@platform.test", password="x" * 12, is_staff=True)


@pytest.fixture
def fresh_health():
    """No cached services-health report before or after the test (``ops.health`` keeps one ~2 s)."""
    from ops import health

    health.reset_cache()
    yield
    health.reset_cache()


@pytest.fixture
def usage_redis():
    """The Redis database holding usage counters, emptied for the test."""
    from tenants import limits

    client = limits._redis()
    client.flushdb()
    yield client
    client.flushdb()


def error_code(response) -> str:
    return response.json()["error"]["code"]


_app_role_applied: list[bool] = []  # whether this session's test database has the app role's grants


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database is created and migrated as the owner (pytest-django's django_db_setup);
    then, as in production, the app role gets its grants (ensure_db_roles) and ``default`` -- every
    test, request, task and thread -- connects as it (tenants/db/roles.py). DB_APP_ROLE_ENABLED=0
    runs everything as the owner. At the end the owner again, to end stray sessions and drop it."""
    from django.core.management import call_command

    from config.settings.services import _db_url, _parse_db
    from tenants.db import roles

    options = connection.settings_dict["OPTIONS"]
    kept = options.get("options")
    # no test asked for `db`: pytest-django made no test database (tests/browser makes its own)
    made = connection.settings_dict["NAME"] != _parse_db(_db_url)["NAME"]
    with django_db_blocker.unblock():
        if roles.enabled() and made:
            from tests.parallel import cluster_lock

            with cluster_lock():  # roles are the cluster's: parallel sessions create them in turn
                call_command("ensure_db_roles", stdout=io.StringIO())
            options["options"] = f"{kept or ''} -c role={roles.app_role()}".strip()
            connection.close()  # every connection opened from now on takes the role
            _app_role_applied.append(True)
    yield
    if not made:
        return
    with django_db_blocker.unblock():
        if kept is None:
            options.pop("options", None)
        else:
            options["options"] = kept
        connection.close()
        # worker and Channels threads keep their own connections: end them so the DB can be dropped
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(scope="module")
def worker_thread(django_db_setup, django_db_blocker):
    """A real Celery worker (threads pool) on the real Redis broker, started before any test
    transaction: Celery's Django fixup closes DB connections when a worker starts."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    with django_db_blocker.unblock():
        app.control.purge()
        # both queues: the default one and the notifications' (a worker of its own in production)
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            shutdown_timeout=10,
            queues=["celery", "notify"],
        ) as w:
            yield w


@pytest.fixture(autouse=True)
def _rate_limits_reset():
    """API rate-limit buckets and WebSocket slots live in Redis across tests (the tenants are the
    session's): each test starts with full buckets, so one test's requests never throttle another's."""
    from tenants import limits

    client = limits._redis()
    keys = [*client.scan_iter("rl:*"), *client.scan_iter("wsconn:*"), *client.scan_iter("quota-told:*")]
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _login_throttle_reset():
    """Failed log-ins are counted in Redis per e-mail and per address; every test starts clean."""
    client = resolution.redis_client()
    keys = [*client.scan_iter("login:fail:*"), *client.scan_iter("nrl:*")]  # and notification send rates
    if keys:
        client.delete(*keys)


def tenant_schema_exists(schema: str) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [schema])
        return cur.fetchone() is not None


def service_env() -> dict[str, str]:
    """Environment for a child process (a server, a worker) that must use this test session's
    database and Redis databases."""
    from urllib.parse import quote

    from config.settings import services

    s = connection.settings_dict
    user = quote(s["USER"] or "postgres")
    auth = f"{user}:{quote(s['PASSWORD'])}" if s.get("PASSWORD") else user
    host = s.get("HOST") or ""
    if host.startswith("/"):
        url = f"postgresql://{auth}@/{s['NAME']}?host={quote(host)}"
    else:
        url = f"postgresql://{auth}@{host or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"
    return {
        "DATABASE_URL": url,
        # as the app role when this session's database has its grants, else as the owner
        "DB_APP_ROLE_ENABLED": "1" if _app_role_applied else "0",
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_DB_CACHE": str(services.REDIS_DB_CACHE),
        "REDIS_DB_BROKER": str(services.REDIS_DB_BROKER),
        "REDIS_DB_CHANNELS": str(services.REDIS_DB_CHANNELS),
        "REDIS_DB_USAGE": str(services.REDIS_DB_USAGE),
        "REDIS_DB_STREAMS": str(services.REDIS_DB_STREAMS),
    }


@pytest.fixture(autouse=True)
def _kill_switches_reset():
    """Kill switches are mirrored in Redis and cached per process: each test starts with none."""
    from compliance import controls

    def clear():
        client = resolution.redis_client()
        keys = list(client.scan_iter("kill:*"))
        if keys:
            client.delete(*keys)
        controls.reset_local()

    clear()
    yield
    clear()
