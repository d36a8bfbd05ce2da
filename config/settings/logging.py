"""Structured logs (ops/logging.py): JSON lines in production, a readable line in development.
``LOG_FORMAT`` = json | console (default: console with DJANGO_DEBUG on, else json)."""

from .env import env_bool, env_str

LOG_FORMAT = env_str("LOG_FORMAT", "") or ("console" if env_bool("DJANGO_DEBUG", False) else "json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # every record -- ours, Django's, Celery's, structlog's -- through one structlog pipeline
        "structured": {"()": "ops.logging.formatter", "fmt": LOG_FORMAT},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own handlers (DEFAULT_LOGGING: plain console, runserver lines) dropped: its
        # records reach the root handler and its format like every other
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},  # SQL (and its parameters) never logged
        "django.request": {"level": "ERROR"},
    },
}
