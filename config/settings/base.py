from pathlib import Path

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data")))
VERSION = "0.1.0"
GIT_SHA = env_str("GIT_SHA", "")

DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", ".localhost", "127.0.0.1", "testserver"])

# Apps: public-schema apps in SHARED_APPS, everything a tenant owns in TENANT_APPS
# (django-tenants). auth, sessions and admin live together in the public schema.
SHARED_APPS = [
    "django_tenants",
    "tenants",
    "accounts",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "api",
    "ops",
    "billing",
    "dashboard",
    "eventbus",
    "review",  # compliance review index of every tenant's decisions (public schema)
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "compliance",
    "marketdata",
    "features",
    "models_registry",
    "configuration",
    "intelligence",
    "backtesting",
    "analytics",
    "notifications",
    "orchestration",  # train → validate → backtest → compare → deploy → approve → promote workflows
    "riskcore",  # risk, anomalies, return forecasts with intervals, valuation, batch jobs (AI core)
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

MIDDLEWARE = [
    "ops.metrics.MetricsMiddleware",  # first: times the whole stack (ati_http_request_duration_seconds)
    "ops.middleware.RequestIdMiddleware",
    "ops.security_headers.SecurityHeadersMiddleware",  # CSP (+ nonce), Permissions-Policy, COOP
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "tenants.middleware.TenantResolutionMiddleware",
    "ops.middleware.LogContextMiddleware",  # tenant and user on every log record of the request
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.UsageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls_tenants"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.shell",
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_RESET_TIMEOUT = 60 * 60  # reset links work for an hour

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve from app dirs without collectstatic in dev/test
# JSON bodies up to 50 MB (bars posted as JSON); uploads above 2.5 MB spool to a temp file
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Per-process feature caches (features/cache.py): parsed specs and resolved references by count,
# computed features of stored bars by memory (a 200k-bar default-set frame is ~16 MB).
FEATURES_CACHE = {
    "SPEC_ENTRIES": env_int("FEATURES_CACHE_SPEC_ENTRIES", 1024),
    "FRAME_BYTES": env_int("FEATURES_CACHE_MB", 256) * 1024 * 1024,
    "REF_TTL": env_int("FEATURES_REF_TTL_SECONDS", 2),  # how long "name" may mean the previous latest
}

# Model registry: artifacts kept per model (aliased versions are never pruned), loaded models
# cached per process, and the schema of Optuna's study tables.
MODEL_VERSION_LIMIT = env_int("MODEL_VERSION_LIMIT", 10)
AI_MODEL_CACHE_SIZE = env_int("AI_MODEL_CACHE_SIZE", 32)
# circuit breaker: consecutive prediction errors that open a version's circuit; cool-down before a retry
MODEL_BREAKER_ERRORS = env_int("MODEL_BREAKER_ERRORS", 5)
MODEL_BREAKER_COOLDOWN_S = env_int("MODEL_BREAKER_COOLDOWN_S", 300)
OPTUNA_SCHEMA = "optuna"

# Django 6.1 mailers; the console backend in dev, SMTP etc. through EMAIL_BACKEND in production.
# EMAIL_FILE_PATH (with the filebased backend) keeps each message as a file, e.g. for browser tests.
_MAIL_OPTIONS = {"file_path": env_str("EMAIL_FILE_PATH")} if env_str("EMAIL_FILE_PATH") else {}
MAILERS = {
    "default": {
        "BACKEND": env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"),
        "OPTIONS": _MAIL_OPTIONS,
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "noreply@localhost")
