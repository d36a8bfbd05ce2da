"""PostgreSQL and Redis: from DATABASE_URL / REDIS_URL, else embedded servers under .data/."""

import sys
from urllib.parse import parse_qs, unquote, urlparse

from .env import env_bool, env_int, env_str

_db_url = env_str("DATABASE_URL") or __import__("config.embedded", fromlist=["x"]).database_url()
REDIS_URL = env_str("REDIS_URL") or __import__("config.embedded", fromlist=["x"]).redis_url()


def _parse_db(url: str) -> dict:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return {
        "ENGINE": "tenants.db",  # django-tenants, fewer round trips (tenants/db/base.py)
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": query.pop("host", None) or parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Persistent connections under WSGI (gunicorn); the tenant middleware sets search_path
        # on every request, so a reused connection never carries the previous tenant.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": query,
        "TEST": {"NAME": env_str("TEST_DB_NAME") or None},
    }


DATABASES = {"default": _parse_db(_db_url)}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

# Database roles (tenants/db/roles.py, README "Database roles"): DATABASE_URL's login is the owner
# (schema changes: migrations, the tenant template, tenant schemas); request handling, Celery, the
# stream and the edge run as DB_APP_ROLE, which cannot UPDATE/DELETE audit rows nor drop the guard.
# The app role logs in with DATABASE_APP_URL (production) or, unset, the owner's login takes it with
# `-c role=...` (defence in depth only). DB_APP_ROLE_ENABLED=0 turns it all off (all as the owner).
DB_APP_ROLE_ENABLED = env_bool("DB_APP_ROLE_ENABLED", True)
DATABASE_APP_URL = env_str("DATABASE_APP_URL") if DB_APP_ROLE_ENABLED else ""
DB_APP_ROLE = unquote(urlparse(DATABASE_APP_URL).username or "") or env_str("DB_APP_ROLE", "ati_app")
# commands that change schemas or grants connect as the owner on `default` as well (django-tenants'
# router migrates only TENANT_DB_ALIAS, so `migrate_schemas --database owner` would migrate nothing)
DB_OWNER_COMMANDS = {"migrate", "migrate_schemas", "ensure_tenant_template", "ensure_db_roles", "makemigrations"}
_as_owner = (
    not DB_APP_ROLE_ENABLED
    or env_bool("DB_CONNECT_AS_OWNER")
    or sys.argv[1:2] in [[c] for c in DB_OWNER_COMMANDS]
    # tests: the test database is created and migrated as the owner; tests/conftest.py then runs
    # ensure_db_roles and puts `default` on the app role
    or "pytest" in sys.modules
)
if DB_APP_ROLE_ENABLED:
    DATABASES["owner"] = {**_parse_db(_db_url), "TEST": {"MIRROR": "default"}}
    if not _as_owner:
        if DATABASE_APP_URL:
            DATABASES["default"] = _parse_db(DATABASE_APP_URL)
        else:
            _opts = DATABASES["default"]["OPTIONS"]
            _opts["options"] = f"{_opts.get('options', '')} -c role={DB_APP_ROLE}".strip()


def redis_db_url(db: int) -> str:
    """REDIS_URL pointed at logical database ``db`` (works for redis:// and unix:// URLs)."""
    parts = urlparse(REDIS_URL)
    if parts.scheme == "unix":
        query = parse_qs(parts.query)
        query["db"] = [str(db)]
        q = "&".join(f"{k}={v[0]}" for k, v in query.items())
        return f"unix://{parts.path}?{q}"
    return parts._replace(path=f"/{db}").geturl()


# Tests use their own Redis databases so a running `make run` on the same server is never touched.
TESTING = "pytest" in sys.modules or sys.argv[1:2] == ["test"]
_redis_base = 10 if TESTING else 0
REDIS_DB_CACHE = env_int("REDIS_DB_CACHE", _redis_base + 1)
REDIS_DB_BROKER = env_int("REDIS_DB_BROKER", _redis_base + 2)
REDIS_DB_CHANNELS = env_int("REDIS_DB_CHANNELS", _redis_base + 3)
REDIS_DB_USAGE = env_int("REDIS_DB_USAGE", _redis_base + 4)
REDIS_DB_STREAMS = env_int("REDIS_DB_STREAMS", _redis_base + 5)
# the decision feed's edge server (intelligence/edge.py): its port and, behind a proxy, where browsers
# reach it (default: this host, port WS_FEED_PORT)
WS_FEED_PORT = env_int("WS_FEED_PORT", 8002)
WS_FEED_PUBLIC_URL = env_str("WS_FEED_PUBLIC_URL", "")
# daphne (config/asgi.py: ws/notifications/, ws/training/): its port and, behind a proxy, where browsers
# reach it (default: this host, port WS_PORT)
WS_PORT = env_int("WS_PORT", 8001)
WS_PUBLIC_URL = env_str("WS_PUBLIC_URL", "")
# bytes a feed client may leave unread in its socket's send buffer before it is dropped as too slow
# (close 4008): about 1,300 decisions
WS_CLIENT_BUFFER = env_int("WS_CLIENT_BUFFER", 4 * 1024 * 1024)
# the feed's resume log (intelligence/feed.py): a Redis Stream per tenant of the last ~N published
# decisions (?cursor= replays from it; older cursors fall back to ?after= or close 4009), dropped
# when the tenant publishes nothing for TTL seconds (0: kept)
FEED_RESUME_RETAIN = env_int("FEED_RESUME_RETAIN", 10_000)
FEED_RESUME_TTL_S = env_int("FEED_RESUME_TTL_S", 24 * 3600)
# external market feed for `ingest_feed` (marketdata/feeds.py): ws(s):// or http(s):// URL, may carry
# credentials (never printed); empty = no feed
LEVEL3_DATA_STREAM_URL = env_str("LEVEL3_DATA_STREAM_URL", "")
# bars per second of a live replay turned on without a speed (the onboarding's sample data);
# `replay_market --all` publishes every tenant's enabled replays (marketdata.LiveReplay)
LIVE_REPLAY_SPEED = float(env_str("LIVE_REPLAY_SPEED", "1") or 1)
# approximate cap per event stream (XADD MAXLEN ~): about a day of 1-minute bars for 70 symbols
EVENTBUS_MAXLEN = env_int("EVENTBUS_MAXLEN", 100_000)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_db_url(REDIS_DB_CACHE),
        # one key space per schema: tenant A can never read tenant B's cache entries
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "ati"),
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [redis_db_url(REDIS_DB_CHANNELS)], "prefix": env_str("CHANNELS_PREFIX", "ati")},
    }
}
