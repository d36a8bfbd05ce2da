"""Audit export for a range: GET /api/v1/audit/ (JSON pages or streamed CSV) and manage.py
audit_export. Each record carries its chain batch; an auditor verifies the export offline, with
nothing but the exported data (the checks below use hashlib and orjson only)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_tenants.utils import schema_context
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from compliance.chain import audit_chain
from compliance.models import AuditRecord
from compliance.services import audit_record
from tenants.models import Role
from tests.conftest import error_code

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit/"


def later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)


def _backdated(action: str, when: dt.datetime) -> int:
    """A record written at ``when`` (created_at is set by the database otherwise)."""
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {AuditRecord._meta.db_table} (created_at, actor, action, object_type, object_id, details) "
            "VALUES (%s, 'system', %s, '', '', '{}') RETURNING id",
            [when, action],
        )
        return cur.fetchone()[0]


@pytest.fixture
def trail(alpha):
    """Alpha's trail: five records sealed into the chain, two not yet sealed, one from last year."""
    with schema_context(alpha.tenant.schema_name):
        old = _backdated("old.event", dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
        sealed = [audit_record("t", "export.sealed", None, {"n": i}).pk for i in range(5)]
        audit_chain(now=later())
        pending = [audit_record("t", "export.pending", None, {"n": i}).pk for i in range(2)]
    return {"old": old, "sealed": sealed, "pending": pending}


def _verify_offline(records: list[dict], batches: list[dict]) -> None:
    """What an auditor does with an export: each record's digest from its fields, each batch's hash
    from its digests and previous hash."""
    by_last = {b["last_id"]: b for b in batches}
    for b in batches:
        assert hashlib.sha256(b["prev_hash"].encode() + bytes.fromhex(b["digests"])).hexdigest() == b["hash"]
    for r in records:
        if r["batch"] is None:
            continue
        canonical = orjson.dumps(
            [r["id"], r["created_at"], r["actor"], r["action"], r["object_type"], r["object_id"], r["details"]],
            option=orjson.OPT_SORT_KEYS,
        )
        assert hashlib.sha256(canonical).digest()[:8].hex() == r["sealed_digest"]
        batch = by_last[r["batch"]["last_id"]]
        i = batch["ids"].index(r["id"])
        assert batch["digests"][i * 16 : (i + 1) * 16] == r["sealed_digest"]


def _jwt_client(fx, role: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {fx.jwt(role)}")
    return c


def test_json_pages_with_their_seals_verify_offline_and_the_export_is_audited(alpha, trail):
    c = _jwt_client(alpha, Role.ADMIN)
    r = c.get(URL, {"page_size": 4})
    assert r.status_code == 200, r.content
    records, batches, pages = [], [], 0
    while True:
        body = r.json()
        records += body["results"]
        batches += [b for b in body["batches"] if b["last_id"] not in {x["last_id"] for x in batches}]
        pages += 1
        if not body["next"]:
            break
        r = c.get(body["next"])
    ids = [x["id"] for x in records]
    assert pages >= 2 and ids == sorted(ids)
    assert set(trail["sealed"] + trail["pending"]) <= set(ids) and trail["old"] not in ids  # default: 30 days
    by_id = {x["id"]: x for x in records}
    assert all(by_id[i]["batch"] is not None for i in trail["sealed"])
    assert all(by_id[i]["batch"] is None and by_id[i]["sealed_digest"] is None for i in trail["pending"])
    _verify_offline(records, batches)
    with schema_context(alpha.tenant.schema_name):
        exported = AuditRecord.objects.filter(action="audit.exported").order_by("id")
        assert exported.count() == pages and exported[0].actor == f"user:{alpha.users[Role.ADMIN].pk}"
        assert exported[0].details["format"] == "json" and exported[0].details["via"] == "api"


def test_a_range_selects_records_by_time(alpha, trail):
    old_day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=400)).date()
    r = alpha.client().get(URL, {"start": old_day.isoformat(), "end": old_day.isoformat()})
    assert r.status_code == 200 and [x["id"] for x in r.json()["results"]] == [trail["old"]]


def test_csv_is_streamed_with_each_records_seal(alpha, trail):
    r = _jwt_client(alpha, Role.OWNER).get(URL, {"format": "csv"})
    assert r.status_code == 200 and r.streaming and r["Content-Type"].startswith("text/csv")
    assert "attachment" in r["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    by_id = {int(row["id"]): row for row in rows}
    sealed = by_id[trail["sealed"][0]]
    assert sealed["batch_hash"] and int(sealed["batch_first_id"]) <= trail["sealed"][0] <= int(sealed["batch_last_id"])
    assert json.loads(sealed["details"]) == {"n": 0} and len(sealed["sealed_digest"]) == 16
    assert by_id[trail["pending"][0]]["batch_hash"] == ""
    # the same digests as the JSON export
    page = alpha.client().get(URL, {"page_size": 1000}).json()["results"]
    assert {x["id"]: x["sealed_digest"] or "" for x in page if x["id"] in by_id} == {
        i: by_id[i]["sealed_digest"] for i in by_id if i in {x["id"] for x in page}
    }
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="audit.exported", details__format="csv").count() == 1


@pytest.mark.parametrize(
    "params, code",
    [
        ({"start": "yesterday"}, "invalid_date"),
        ({"end": "2025-13-01"}, "invalid_date"),
        ({"start": "2025-03-01", "end": "2025-02-01"}, "invalid_range"),
        ({"start": "2024-01-01", "end": "2025-06-01"}, "range_too_long"),
        ({"format": "xml"}, "invalid_input"),
    ],
)
def test_bad_input_is_a_400_that_writes_nothing(alpha, params, code):
    r = alpha.client().get(URL, params)
    assert r.status_code == 400 and error_code(r) == code, r.content
    assert r.json()["error"]["message"]
    with schema_context(alpha.tenant.schema_name):
        assert not AuditRecord.objects.filter(action="audit.exported").exists()


def test_an_offset_survives_an_unencoded_plus(alpha, trail):
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    r = alpha.client().get(f"{URL}?start={start}+00:00")  # "+" arrives as a space
    assert r.status_code == 200 and r.json()["start"].startswith(start)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANALYST])
def test_below_admin_is_refused(alpha, role):
    r = _jwt_client(alpha, role).get(URL)
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    r = alpha.client(scope="read").get(URL, {"format": "csv"})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    with schema_context(alpha.tenant.schema_name):
        assert not AuditRecord.objects.filter(action="audit.exported").exists()


def test_another_tenants_trail_is_404(alpha, beta, trail):
    token = RefreshToken.for_user(beta.users[Role.OWNER]).access_token
    token["tenant_id"] = alpha.tenant.pk
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert c.get(URL).status_code == 404
    r = beta.client().get(URL, HTTP_HOST="alpha.localhost")  # beta's key on alpha's host
    assert r.status_code == 404 and error_code(r) == "not_found"
    # and beta's own export never shows alpha's records
    actions = {x["action"] for x in beta.client().get(URL, {"page_size": 1000}).json()["results"]}
    assert "export.sealed" not in actions and "tenant.provisioned" in actions


def test_command_writes_a_verifiable_json_and_a_csv(alpha, trail, tmp_path):
    out = tmp_path / "audit.json"
    call_command("audit_export", "--tenant", alpha.slug, "--output", str(out), stderr=io.StringIO())
    doc = json.loads(out.read_text())
    assert doc["tenant"] == alpha.slug and {x["id"] for x in doc["records"]} >= set(trail["sealed"])
    assert {b["last_id"] for b in doc["batches"]} == {x["batch"]["last_id"] for x in doc["records"] if x["batch"]}
    _verify_offline(doc["records"], doc["batches"])
    text = io.StringIO()
    call_command("audit_export", "--tenant", alpha.slug, "--format", "csv", stdout=text)
    assert text.getvalue().startswith("id,created_at,actor,action")
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="audit.exported", details__via="cli").count() == 2
    with pytest.raises(CommandError, match="366 days"):
        call_command("audit_export", "--tenant", alpha.slug, "--start", "2020-01-01", "--end", "2022-01-01")
    with pytest.raises(CommandError, match="No tenant"):
        call_command("audit_export", "--tenant", "nope")
