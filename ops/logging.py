"""Structured logs: one pipeline (structlog) for our ``logging.getLogger`` calls, Django's, Celery's
and ``structlog.get_logger()`` alike.

Every record carries what is known where it was written: ``request_id`` (HTTP, WebSocket),
``tenant`` (schema name), ``user`` (``user:<id>`` or ``apikey:<prefix>`` -- the audit trail's
pseudonyms, never an e-mail), ``task_id`` / ``task_name`` (Celery). Output is JSON lines
(``LOG_FORMAT=json``, the default without DEBUG) or a readable console line (``LOG_FORMAT=console``).
Secrets are redacted in the last step before rendering, whatever logged them: values of sensitive
keys anywhere in the event, and API keys, bearer tokens, JWTs, ``password=…`` pairs, URL passwords
and PEM private keys inside any string, exception text included. See docs/observability.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import uuid
from typing import Any

import structlog
from celery import signals as celery_signals

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REDACTED = "[REDACTED]"


class RequestIdFilter(logging.Filter):
    """``%(request_id)s`` for plain ``logging`` formatters (kept for handlers configured by hand)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


# --- context ---------------------------------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def log_context(**values: Any):
    """Bind ``values`` (None ones skipped) to every record logged inside the block, then restore
    what was bound before (safe in threads and asyncio tasks: contextvars)."""
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in values.items() if v is not None}):
        yield


def _current_schema() -> str | None:
    """The schema of this thread's DB connection, if it has one already (never opens one: a log
    call must not create connection objects in async code)."""
    try:
        from django.db import DEFAULT_DB_ALIAS, connections

        conn = getattr(connections._connections, DEFAULT_DB_ALIAS, None)
    except Exception:  # Django not configured yet
        return None
    schema = getattr(conn, "schema_name", None)
    return schema if schema and schema != "public" else None


def add_context(logger, method_name: str, event_dict: dict) -> dict:
    """request id (HTTP) and tenant (bound, else the connection's schema: Celery, commands)."""
    if "request_id" not in event_dict:
        rid = request_id_var.get()
        if rid != "-":
            event_dict["request_id"] = rid
    if "tenant" not in event_dict:
        schema = _current_schema()
        if schema:
            event_dict["tenant"] = schema
    return event_dict


# --- secrets ---------------------------------------------------------------------------------------

# keys whose value is a secret wherever they occur (dicts nested in the event too)
_SECRET_KEY = re.compile(
    r"passw|passphrase|pwd|secret|token|api[_-]?key|authori[sz]ation|cookie|sessionid|csrf|"
    r"private[_-]?key|signing[_-]?key|credential|jwt|^key$|^raw_key$|_secret$|^dsn$|^otp$|^signature$",
    re.IGNORECASE,
)
_SECRET_WORDS = (
    r"[\w-]*(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|apikey|authorization|cookie|sessionid|csrf)[\w-]*"
)
# (pattern, replacement) applied to every string, in this order
_STRING_RULES: list[tuple[re.Pattern, str]] = [
    # PEM private keys (key material)
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
        REDACTED,
    ),
    # our API keys, ati_<prefix>_<secret> (tenants/keys.py): the prefix is a public lookup id, kept
    (re.compile(r"\bati_([0-9a-f]{12})_[A-Za-z0-9_\-]{8,}"), rf"ati_\1_{REDACTED}"),
    # JWTs (header.payload.signature, base64url JSON starting with '{"')
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"), REDACTED),
    # Authorization schemes with a credential after them
    (
        re.compile(r"(?i)\b(bearer|api-key|basic)\s+(?![\w.~+/=\-]*\[REDACTED\])[A-Za-z0-9._~+/=\-]{8,}"),
        rf"\1 {REDACTED}",
    ),
    # password in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # key=value / key: value / "key": "value" with a secret-looking key
    (
        re.compile(
            rf"(?i)\b({_SECRET_WORDS})(\"?'?\s*[:=]\s*\"?'?)(?!\[REDACTED\])(?!(?i:bearer|api-key|basic)\s)([^\s\"'&,;}}\]]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
]
_SKIP_KEYS = frozenset({"timestamp", "level", "logger", "request_id", "task_id", "task_name", "tenant", "user"})


def redact_text(text: str) -> str:
    for pattern, replacement in _STRING_RULES:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if value_secret(k, v) else _redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = repr(value)
    cleaned = redact_text(text)
    return value if cleaned == text else cleaned


# counts, sizes, times and ids of secrets are not secrets (``token_count``, ``api_key_id``)
_NOT_SECRET_SUFFIX = re.compile(r"_(count|ttl|len|size|seconds|s|ms|at|id|ids|prefix|expires|scope|scopes|name)$", re.I)


def value_secret(key: Any, value: Any) -> bool:
    return (
        value is not None
        and value != ""
        and isinstance(key, str)
        and bool(_SECRET_KEY.search(key))
        and not _NOT_SECRET_SUFFIX.search(key)
    )


def redact_secrets(logger, method_name: str, event_dict: dict) -> dict:
    """Processor: secrets out of every value (keys, strings, nested containers, exception text)."""
    for key, value in list(event_dict.items()):
        if key in _SKIP_KEYS or key.startswith("_"):
            continue
        if key != "event" and value_secret(key, value):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(value)
    return event_dict


# --- wiring ----------------------------------------------------------------------------------------

SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.PositionalArgumentsFormatter(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_context,
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
    structlog.processors.UnicodeDecoder(),
]
# foreign (standard-library) records also bring their ``extra={...}``
FOREIGN_PRE_CHAIN = [*SHARED_PROCESSORS[:3], structlog.stdlib.ExtraAdder(), *SHARED_PROCESSORS[3:]]


def _renderer(fmt: str):
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer()


def formatter(fmt: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The ``logging`` formatter of every handler (``LOGGING["formatters"]``: ``"()"`` points here).
    Configures structlog's own loggers to end in it too, so both kinds of call render alike."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=FOREIGN_PRE_CHAIN,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_secrets, _renderer(fmt)],
    )


# --- Celery: task id and name on every record of a task --------------------------------------------


@celery_signals.task_prerun.connect(weak=False)
def _task_bind(task_id=None, task=None, **_):
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@celery_signals.task_postrun.connect(weak=False)
def _task_unbind(**_):
    structlog.contextvars.unbind_contextvars("task_id", "task_name")


@celery_signals.setup_logging.connect(weak=False)
def _celery_keeps_django_logging(**_):
    """A receiver here stops Celery from replacing the root handlers: workers log through
    Django's LOGGING (configured by django.setup()) like every other process."""
