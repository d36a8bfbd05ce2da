"""A credential's secret is never logged and never echoed: every log record at DEBUG (root, with
django.request and django.db.backends' SQL logging on), every API response body and every admin
page of a credential's whole life — created, listed, rotated, used, refused, deleted — through the
API and through the admin."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from compliance import credentials
from compliance.models import AuditRecord
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

URL = "/api/v1/credentials/"
ADMIN_URL = "/admin/compliance/credential/"


class _Everything(logging.Handler):
    """Keeps every record's message, its raw arguments and any exception text."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args), repr(record.__dict__.get("params"))]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        self.texts.append(" ".join(parts))


@pytest.fixture
def all_logs():
    """Every logger at DEBUG into one handler, SQL statements (with their parameters) included."""
    handler = _Everything()
    root = logging.getLogger()
    names = ["django", "django.request", "django.db.backends", "django.security", "django.server", "api"]
    saved = [(root, root.level)] + [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    root.addHandler(handler)
    for logger, _ in saved:
        logger.setLevel(logging.DEBUG)
    debug_cursor, connection.force_debug_cursor = connection.force_debug_cursor, True
    yield handler
    connection.force_debug_cursor = debug_cursor
    root.removeHandler(handler)
    for logger, level in saved:
        logger.setLevel(level)


def test_secret_never_reaches_logs_api_responses_or_admin_pages(alpha, all_logs):
    # given: secrets no other text could contain by chance
    first, second, third = (f"sk-{tag}-{uuid.uuid4().hex}{uuid.uuid4().hex}" for tag in ("one", "two", "adm"))
    bodies: list[str] = []
    api = alpha.client(role="owner")

    def keep(r):
        bodies.append(r.content.decode())
        return r

    # when: a credential's whole life through the API
    r = keep(api.post(URL, {"name": "ex", "kind": "exchange", "secret": first, "metadata": {}}, format="json"))
    assert r.status_code == 201
    cid = r.json()["id"]
    assert keep(api.get(URL)).status_code == 200
    assert keep(api.get(f"{URL}{cid}/")).status_code == 200
    # refusals on the way: too long, secret pasted into metadata, malformed JSON, duplicate name
    assert keep(api.post(URL, {"name": "x", "kind": "other", "secret": first * 80}, format="json")).status_code == 400
    assert keep(api.post(URL, {"name": "y", "kind": "other", "secret": first,
                               "metadata": {"description": first}}, format="json")).status_code == 400  # fmt: skip
    assert keep(api.post(URL, f'{{"secret": "{first}"', content_type="application/json")).status_code == 400
    assert keep(api.post(URL, {"name": "ex", "kind": "other", "secret": first}, format="json")).status_code == 409
    assert keep(api.post(f"{URL}{cid}/rotate/", {"secret": second}, format="json")).status_code == 200
    with schema_context(alpha.tenant.schema_name):
        assert credentials.credential_use("ex", "place order", alpha.users["owner"]) == second
    assert keep(api.delete(f"{URL}{cid}/")).status_code == 204

    # and: through the admin (staff with alpha as the active tenant)
    root = User.objects.create_superuser(email="root@leak.test", password=PASSWORD)
    staff = Client()
    staff.force_login(root)
    staff.post("/admin/tenant-switch/", {"tenant": alpha.tenant.pk})
    r = keep(staff.post(f"{ADMIN_URL}add/", {"name": "adm", "kind": "other", "secret": third, "metadata": "{}"}))
    assert r.status_code == 302
    bad = {"name": "adm2", "kind": "webhook", "secret": third, "metadata": '{"url": "http://x"}'}
    assert keep(staff.post(f"{ADMIN_URL}add/", bad)).status_code == 200  # a validation error
    with schema_context(alpha.tenant.schema_name):
        pk = credentials.credential_list().get(name="adm").pk
    for url in (ADMIN_URL, f"{ADMIN_URL}{pk}/change/", f"{ADMIN_URL}{pk}/history/", f"{ADMIN_URL}{pk}/delete/"):
        assert keep(staff.get(url)).status_code == 200
    assert keep(staff.post(f"{ADMIN_URL}{pk}/change/", {"secret": first})).status_code == 302  # rotated in the admin
    with schema_context(alpha.tenant.schema_name):
        assert credentials.credential_use("adm", "check", "test") == first
    assert keep(staff.post(f"{ADMIN_URL}{pk}/delete/", {"post": "yes"})).status_code == 302
    assert keep(staff.get(ADMIN_URL)).status_code == 200

    # then: the SQL log was really on (so its silence means something) ...
    assert any("INSERT INTO" in t and "compliance_credential" in t for t in all_logs.texts)
    assert any("credential.used" in t for t in all_logs.texts)
    # ... and no secret is in any log record, response body, admin page or audit record
    with schema_context(alpha.tenant.schema_name):
        audit = [str(a.details) for a in AuditRecord.objects.filter(action__startswith="credential.")]
    assert len(audit) >= 6
    for secret in (first, second, third):
        assert not [t for t in all_logs.texts if secret in t], "a secret was logged"
        assert not [b for b in bodies if secret in b], "a secret was echoed in a response"
        assert not [a for a in audit if secret in a], "a secret was audited"
