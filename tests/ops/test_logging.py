"""Structured logs (ops/logging.py): every record, whoever logged it, through one pipeline that
adds request id / tenant / user / task id and redacts secrets. Records are captured as the
configured formatter renders them (JSON lines) from a handler on the root logger."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import structlog
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django_tenants.utils import schema_context

from config.asgi import application  # (imported first: django.setup() in it configures logging anew)
from config.celery import app as celery_app
from ops import logging as ops_logging
from ops.consumers import EchoConsumer
from ops.logging import REDACTED

API_KEY = "ati_0123456789ab_Zq3xY-9_kLmNoPqRsTuVwXyZ0123456789abcdEFG"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoxLCJ0ZW5hbnRfaWQiOjJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
PASSWORD = "hunter2-Correct-Horse"


class Captured:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]

    def one(self, event: str) -> dict:
        found = [r for r in self.records() if r.get("event") == event]
        assert len(found) == 1, (event, self.text)
        return found[0]


def _capture(fmt: str):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ops_logging.formatter(fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    return handler, Captured(stream)


@pytest.fixture
def captured():
    handler, cap = _capture("json")
    yield cap
    logging.getLogger().removeHandler(handler)


def test_settings_route_every_record_through_the_structlog_formatter():
    # given the project's LOGGING: one handler on the root, its formatter built by ops.logging
    formatter = settings.LOGGING["formatters"]["structured"]
    assert formatter["()"] == "ops.logging.formatter"
    assert settings.LOGGING["root"]["handlers"] == ["console"]
    assert settings.LOGGING["loggers"]["django.db.backends"]["level"] == "WARNING"
    # and the live root handler really renders with structlog's ProcessorFormatter
    assert any(isinstance(h.formatter, structlog.stdlib.ProcessorFormatter) for h in logging.getLogger().handlers)


def test_stdlib_and_structlog_records_render_as_json_lines(captured):
    logging.getLogger("tests.plain").info("plain %s call", "stdlib", extra={"rows": 3})
    structlog.get_logger("tests.native").info("native call", rows=4)
    plain, native = captured.one("plain stdlib call"), captured.one("native call")
    assert plain["level"] == "info" and plain["logger"] == "tests.plain" and plain["rows"] == 3
    assert native["logger"] == "tests.native" and native["rows"] == 4
    assert plain["timestamp"].endswith("Z")


def test_sql_is_not_logged(captured, db):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    assert "SELECT 1" not in captured.text


# --- secrets ---------------------------------------------------------------------------------------


def test_a_dict_with_secrets_is_redacted_at_any_depth(captured):
    payload = {
        "password": PASSWORD,
        "headers": {"Authorization": f"Bearer {JWT}", "Cookie": "ati_session=abc123def456", "Accept": "json"},
        "nested": [{"api_key": API_KEY, "client_secret": "s3cr3t-value"}, {"token": "tok-value-123"}],
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
        "symbol": "BTCUSDT",
        "api_key_id": 12,
    }
    logging.getLogger("tests.secrets").info("settings dump", extra={"settings": payload})
    structlog.get_logger("tests.secrets").info("native dump", password=PASSWORD, config=payload)
    out = captured.text
    for secret in (PASSWORD, JWT, API_KEY, "abc123def456", "s3cr3t-value", "tok-value-123", "MIIEvQIBADANBg"):
        assert secret not in out
    record = captured.one("settings dump")["settings"]
    assert record["password"] == REDACTED
    assert record["headers"]["Authorization"] == REDACTED
    assert record["headers"]["Accept"] == "json"  # not a secret: kept
    assert record["nested"][0]["api_key"] == REDACTED and record["nested"][1]["token"] == REDACTED
    assert record["symbol"] == "BTCUSDT" and record["api_key_id"] == 12
    assert captured.one("native dump")["password"] == REDACTED


def test_secrets_inside_message_strings_are_redacted(captured):
    log = logging.getLogger("tests.secrets")
    log.warning("request with Api-Key %s failed", API_KEY)
    log.warning("Authorization: Bearer %s", JWT)
    log.warning("connecting to postgresql://app:%s@db:5432/ati", PASSWORD)
    log.warning("GET /ws/feed/?token=%s&symbols=BTC", "abcdefgh12345678")
    out = captured.text
    assert API_KEY not in out and JWT not in out and PASSWORD not in out and "abcdefgh12345678" not in out
    # the key's prefix (its public lookup id, as in ``apikey:<prefix>``) stays for debugging
    assert captured.one(f"request with Api-Key ati_0123456789ab_{REDACTED} failed")
    assert captured.one(f"connecting to postgresql://app:{REDACTED}@db:5432/ati")
    assert captured.one(f"GET /ws/feed/?token={REDACTED}&symbols=BTC")


def test_an_exception_whose_message_holds_a_password_is_redacted(captured):
    log = logging.getLogger("tests.secrets")
    try:
        raise ConnectionError(f"login refused for user=ops password={PASSWORD} (api_key={API_KEY})")
    except ConnectionError:
        log.exception("broker login failed")
    try:
        raise ValueError(f"bad header Bearer {JWT}")
    except ValueError:
        structlog.get_logger("tests.secrets").exception("native failure")
    out = captured.text
    assert PASSWORD not in out and API_KEY not in out and JWT not in out
    record = captured.one("broker login failed")
    assert "ConnectionError: login refused for user=ops" in record["exception"]
    assert f"password={REDACTED}" in record["exception"]
    assert REDACTED in captured.one("native failure")["exception"]


def test_console_format_is_readable_and_redacted():
    handler, cap = _capture("console")
    try:
        logging.getLogger("tests.console").info("hello %s", "dev", extra={"password": PASSWORD})
    finally:
        logging.getLogger().removeHandler(handler)
        ops_logging.formatter("json")  # structlog back to the suite's configuration
    line = cap.text.strip().splitlines()[-1]
    assert not line.startswith("{") and "hello dev" in line and "[tests.console]" in line
    assert PASSWORD not in cap.text and f"password={REDACTED}" in line


# --- context ---------------------------------------------------------------------------------------


def test_a_record_of_an_api_request_carries_request_id_tenant_and_user(alpha, captured, monkeypatch):
    from marketdata.api.views import InstrumentListCreateApi

    original = InstrumentListCreateApi.get

    def logging_get(self, request, *args, **kwargs):
        logging.getLogger("tests.view").info("inside the view")
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(InstrumentListCreateApi, "get", logging_get)
    response = alpha.client().get("/api/v1/instruments/", HTTP_X_REQUEST_ID="req-abcdef-123")
    assert response.status_code == 200
    record = captured.one("inside the view")
    assert record["request_id"] == "req-abcdef-123" == response["X-Request-ID"]
    assert record["tenant"] == alpha.tenant.schema_name
    prefix = alpha.key.split("_")[1]
    assert record["user"] == f"apikey:{prefix}"  # the audit trail's name for a key, never a secret
    assert alpha.key not in captured.text


def test_a_jwt_request_names_the_user_by_pseudonym_never_email(alpha, captured, monkeypatch):
    from marketdata.api.views import InstrumentListCreateApi

    original = InstrumentListCreateApi.get

    def logging_get(self, request, *args, **kwargs):
        logging.getLogger("tests.view").info("jwt view")
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(InstrumentListCreateApi, "get", logging_get)
    owner = alpha.users["owner"]
    response = alpha.client(role="owner").get("/api/v1/instruments/")
    assert response.status_code == 200
    record = captured.one("jwt view")
    assert record["user"] == f"user:{owner.pk}"
    assert record["request_id"] == response["X-Request-ID"]
    assert owner.email not in captured.text


def test_context_does_not_leak_past_the_request(alpha, captured):
    alpha.client().get("/api/v1/instruments/")
    logging.getLogger("tests.after").info("after the request")
    record = captured.one("after the request")
    assert "request_id" not in record and "user" not in record


@celery_app.task(name="tests.ops.log_probe", fair=False)
def log_probe(word: str) -> str:
    logging.getLogger("tests.task").info("task says %s", word)
    return word


def test_a_record_of_a_celery_task_carries_task_id_name_and_tenant(alpha, captured):
    with schema_context(alpha.tenant.schema_name):
        result = log_probe.apply(args=["hi"], task_id="task-id-0001")
    assert result.get() == "hi"
    record = captured.one("task says hi")
    assert record["task_id"] == "task-id-0001"
    assert record["task_name"] == "tests.ops.log_probe"
    assert record["tenant"] == alpha.tenant.schema_name
    logging.getLogger("tests.task").info("after the task")
    assert "task_id" not in captured.one("after the task")


def test_log_context_binds_and_restores():
    with ops_logging.log_context(tenant="acme", user="user:7", skipped=None):
        inside = structlog.contextvars.get_contextvars()
    assert inside == {"tenant": "acme", "user": "user:7"}
    assert "tenant" not in structlog.contextvars.get_contextvars()


def test_a_record_of_a_websocket_consumer_carries_connection_id_tenant_and_user(alpha, captured, monkeypatch):
    original = EchoConsumer.connect

    async def logging_connect(self):
        logging.getLogger("tests.ws").info("consumer connects")
        await original(self)

    monkeypatch.setattr(EchoConsumer, "connect", logging_connect)
    viewer = alpha.users["viewer"]

    async def scenario():
        client = WebsocketCommunicator(application, f"/ws/echo/?token={alpha.jwt('viewer')}")
        connected, _ = await client.connect(timeout=5)
        assert connected
        await client.disconnect()

    asyncio.run(scenario())
    record = captured.one("consumer connects")
    assert record["tenant"] == alpha.tenant.schema_name and record["user"] == f"user:{viewer.pk}"
    assert len(record["request_id"]) == 32  # one id per connection
