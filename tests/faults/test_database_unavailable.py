"""PostgreSQL unreachable, simulated (fast suite): whatever layer meets the error -- the tenant
middleware resolving an API key, or a view's query -- the API answers 503 ``database_unavailable``
with Retry-After, not a 500; an error that is not about the connection (a statement timeout)
stays a 500. The real restart is tests/faults/test_postgres_restart.py (slow)."""

from unittest import mock

import psycopg
import psycopg.errors
import pytest
from django.db import OperationalError

from api import errors
from tenants import resolution

pytestmark = pytest.mark.django_db


def _down(message="connection failed: Connection refused"):
    """What Django raises when the server is gone: its wrapper, caused by the driver's error."""
    try:
        raise psycopg.OperationalError(message)
    except psycopg.OperationalError as exc:
        try:
            raise OperationalError(message) from exc
        except OperationalError as wrapped:
            return wrapped


def _client(fx):
    c = fx.client()
    c.raise_request_exception = False  # as in production: the exception reaches handler500
    return c


def test_the_tenant_middleware_meeting_a_dead_database_answers_503(alpha, fault_report):
    # given the API-key lookup (tenant middleware, before any view) failing to connect
    with mock.patch.object(resolution, "api_key_resolve", side_effect=_down()):
        r = _client(alpha).get("/api/v1/decisions/")
    # then a machine-readable 503 the client may retry
    assert r.status_code == 503, r.content
    body = r.json()["error"]
    assert body["code"] == "database_unavailable"
    assert r["Retry-After"] == str(errors.DATABASE_RETRY_AFTER_S)
    assert body["details"] == {"retry_after_seconds": errors.DATABASE_RETRY_AFTER_S}
    fault_report(f"middleware: status {r.status_code}, code {body['code']}, Retry-After {r['Retry-After']}")


def test_a_view_whose_query_loses_the_server_answers_503(alpha, fault_report):
    # given a view's query meeting a server that is shutting down (SQLSTATE 57P01)
    shutdown = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    client = _client(alpha)
    assert client.get("/api/v1/decisions/").status_code == 200  # the key is resolved (and cached)
    with mock.patch("django.db.models.query.QuerySet._fetch_all", side_effect=_wrap(shutdown)):
        r = client.get("/api/v1/decisions/")
    assert r.status_code == 503, r.content
    assert r.json()["error"]["code"] == "database_unavailable"
    fault_report(f"view query (57P01): status {r.status_code}, code {r.json()['error']['code']}")


def test_a_statement_timeout_is_not_called_an_outage(alpha, fault_report):
    # given a query cancelled by statement_timeout (an OperationalError too, SQLSTATE 57014)
    timeout = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    client = _client(alpha)
    assert client.get("/api/v1/decisions/").status_code == 200
    with mock.patch("django.db.models.query.QuerySet._fetch_all", side_effect=_wrap(timeout)):
        r = client.get("/api/v1/decisions/")
    # then it stays an internal error: retrying in 5 s would not help
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "server_error"
    fault_report(f"statement timeout (57014): status {r.status_code}, code server_error (not an outage)")


def _wrap(cause):
    try:
        raise cause
    except psycopg.Error as exc:
        try:
            raise OperationalError(str(exc)) from exc
        except OperationalError as wrapped:
            return wrapped


def test_a_dashboard_page_gets_an_html_503(client, fault_report):
    # given a browser asking for a page while the tenant lookup by host cannot reach the database
    client.raise_request_exception = False
    with mock.patch.object(resolution, "tenant_by_host", side_effect=_down()):
        r = client.get("/", HTTP_ACCEPT="text/html")
    # then an HTML error page with 503 and Retry-After, not the JSON envelope
    assert r.status_code == 503 and r["Content-Type"].startswith("text/html")
    assert r["Retry-After"] == str(errors.DATABASE_RETRY_AFTER_S)
    fault_report(f"dashboard page: status {r.status_code}, HTML, Retry-After {r['Retry-After']}")
