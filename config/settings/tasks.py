"""Celery (Redis broker) and the per-tenant fairness bound."""

from .env import env_int, env_str
from .services import REDIS_DB_BROKER, TESTING, redis_db_url


def _celery_url(db: int) -> str:
    url = redis_db_url(db)
    if url.startswith("unix://"):  # kombu's socket transport names the database `virtual_host`
        return url.replace("unix://", "redis+socket://", 1).replace("?db=", "?virtual_host=")
    return url


CELERY_BROKER_URL = _celery_url(REDIS_DB_BROKER)
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_TRACK_STARTED = True
# Longest task (AutoML training) is bounded by CELERY_TASK_TIME_LIMIT; unacked tasks are
# redelivered only after the visibility timeout, which must exceed it.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT * 2,
    # a key prefix as well as a database: control broadcasts (pidbox) of a test run never reach a
    # developer's running worker on the same Redis
    "global_keyprefix": "test:" if TESTING else "",
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One tenant may hold at most this many worker slots at once; excess tasks are re-queued
# with a short delay so other tenants' tasks run (see tenants.tasks.TenantFairTask).
TENANT_TASK_CONCURRENCY = env_int("TENANT_TASK_CONCURRENCY", 2)

# Periodic work (celery beat): the registry's sweep re-queues training jobs whose worker died,
# starts scheduled retrains and checks drift of production versions, tenant by tenant.
CELERY_BEAT_SCHEDULE = {
    "models-registry-sweep": {"task": "models_registry.sweep", "schedule": 300.0},
    "analytics-meter-flush": {"task": "analytics.meter_flush", "schedule": 60.0},
    # per tenant: performance rollups and the seed alert thresholds
    "analytics-tenants-tick": {"task": "analytics.tenants_tick", "schedule": 60.0},
    "ops-availability-probe": {"task": "ops.availability_probe", "schedule": 30.0},
    "billing-cycle": {"task": "billing.cycle", "schedule": 3600.0},
    "market-data-retention": {"task": "analytics.retention_tick", "schedule": 86400.0},
}

# what the availability probe asks (the web tier as a client sees it)
AVAILABILITY_PROBE_URL = env_str(
    "AVAILABILITY_PROBE_URL", f"http://127.0.0.1:{env_str('HTTP_PORT', '8000')}/health/ready"
)

# Billing (billing/): invoices are due this many days after they are issued; unpaid this many days
# after that, the tenant moves to the free plan. Midtrans: the server key is a secret (environment
# only); the URLs default to Midtrans' sandbox.
BILLING_DUE_DAYS = env_int("BILLING_DUE_DAYS", 7)
BILLING_GRACE_DAYS = env_int("BILLING_GRACE_DAYS", 7)
MIDTRANS_SERVER_KEY = env_str("MIDTRANS_SERVER_KEY")
MIDTRANS_SNAP_URL = env_str("MIDTRANS_SNAP_URL", "https://app.sandbox.midtrans.com")
MIDTRANS_API_URL = env_str("MIDTRANS_API_URL", "https://api.sandbox.midtrans.com")

# Notifications (notifications/): the delivery engine's tasks run on a queue of their own, so a
# message never waits behind a training job; `make run` starts a threads-pool worker for it.
CELERY_TASK_ROUTES = {"notifications.*": {"queue": "notify"}}
CELERY_BEAT_SCHEDULE["notifications-sweep"] = {"task": "notifications.sweep_all", "schedule": 30.0}
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 6)
NOTIFY_BACKOFF_BASE_S = float(env_str("NOTIFY_BACKOFF_BASE_S", "2"))  # 1st retry within 2 s, then 4, 8, ...
NOTIFY_BACKOFF_CAP_S = float(env_str("NOTIFY_BACKOFF_CAP_S", "600"))
NOTIFY_CLAIM_S = env_int("NOTIFY_CLAIM_S", 120)  # a sending claim older than this was a dead worker's
NOTIFY_SWEEP_GRACE_S = env_int("NOTIFY_SWEEP_GRACE_S", 60)
NOTIFY_WEBHOOK_TIMEOUT_S = float(env_str("NOTIFY_WEBHOOK_TIMEOUT_S", "5"))
NOTIFY_WEBHOOK_RATE = float(env_str("NOTIFY_WEBHOOK_RATE", "10"))  # per endpoint, messages/s
NOTIFY_EMAIL_RATE = float(env_str("NOTIFY_EMAIL_RATE", "5"))  # per tenant, messages/s
NOTIFY_SECRET_CACHE_S = env_int("NOTIFY_SECRET_CACHE_S", 300)
# a rate-limited message whose slot is at most this far away waits for it in the worker's thread
NOTIFY_RATE_SLEEP_S = float(env_str("NOTIFY_RATE_SLEEP_S", "2"))
# more than this many messages waiting for one target's rate: held and sent as one digest instead
NOTIFY_BACKLOG_DIGEST = env_int("NOTIFY_BACKLOG_DIGEST", 10)
NOTIFY_DAILY_DIGEST_HOUR = env_int("NOTIFY_DAILY_DIGEST_HOUR", 8)  # local time of the subscription
# http:// webhook URLs (else https only): for local receivers in development and tests
NOTIFY_WEBHOOK_ALLOW_HTTP = env_str("NOTIFY_WEBHOOK_ALLOW_HTTP", "1") == "1"
# Telegram Bot API: the base URL is configurable (tests and the offline demo use the local server
# of notifications.sandbox); Telegram's limits: ~30 messages/s per bot, 1/s per chat.
TELEGRAM_API_BASE = env_str("TELEGRAM_API_BASE", "https://api.telegram.org")
TELEGRAM_TIMEOUT_S = float(env_str("TELEGRAM_TIMEOUT_S", "10"))
TELEGRAM_RATE_GLOBAL = float(env_str("TELEGRAM_RATE_GLOBAL", "30"))
TELEGRAM_RATE_PER_CHAT = float(env_str("TELEGRAM_RATE_PER_CHAT", "1"))
# where links in messages point (and the Telegram webhook, unless TELEGRAM_WEBHOOK_BASE says otherwise)
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", f"http://127.0.0.1:{env_str('HTTP_PORT', '8000')}")
TELEGRAM_WEBHOOK_BASE = env_str("TELEGRAM_WEBHOOK_BASE", PUBLIC_BASE_URL)

# Orchestration (orchestration/): workflow steps on the default queue; a transient error (database
# or Redis unreachable) is retried with exponential backoff from ORCHESTRATION_RETRY_BASE_S; a step
# 'running' without a heartbeat for ORCHESTRATION_STEP_STALE_S, its lock free, is queued again.
ORCHESTRATION_MAX_RETRIES = env_int("ORCHESTRATION_MAX_RETRIES", 5)
ORCHESTRATION_RETRY_BASE_S = float(env_str("ORCHESTRATION_RETRY_BASE_S", "2"))
ORCHESTRATION_STEP_STALE_S = env_int("ORCHESTRATION_STEP_STALE_S", 300)
CELERY_BEAT_SCHEDULE["orchestration-sweep"] = {"task": "orchestration.sweep", "schedule": 60.0}
# riskcore: each tenant's bars and decision stream scanned for anomalies (new ones stored, emitted)
CELERY_BEAT_SCHEDULE["riskcore-anomaly-sweep"] = {"task": "riskcore.anomaly_sweep", "schedule": 3600.0}

# Jobs whose worker was killed outright (kill -9 of the whole worker: its message stays unacked in
# Redis until the visibility timeout, hours away): the beat sweeps queue them again once they are
# 'running' this long with nobody holding their lock (a live run always holds it).
TRAINING_JOB_STALE_S = env_int("TRAINING_JOB_STALE_S", 600)  # without a heartbeat (the registry's sweep)
BACKTEST_STALE_S = env_int("BACKTEST_STALE_S", 60)  # since it started
CELERY_BEAT_SCHEDULE["backtesting-sweep"] = {"task": "backtesting.sweep", "schedule": 60.0}
