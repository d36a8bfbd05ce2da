"""GDPR: a person's export (API for oneself, command for staff) and erasure (command, admin
action). After erasure their e-mail and name are nowhere in the database (every text/json column of
every schema is scanned) and the tenant's audit chain still verifies: it only ever held ``user:<id>``."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services as accounts
from accounts.models import Invitation, User
from backtesting.models import BacktestRun
from compliance import gdpr
from compliance.chain import audit_chain
from compliance.models import AuditRecord
from compliance.services import actor_display
from intelligence.models import Flow
from models_registry.models import AliasEvent, RegisteredModel
from tenants.models import ApiKey, KillSwitch, Membership, Role
from tenants.services import api_key_create
from tests.conftest import PASSWORD, error_code

pytestmark = pytest.mark.django_db

EMAIL = "ada.lovelace@gdpr.test"
SURNAME = "Lovelacewxyz"  # distinctive, so a scan for it can't hit anything else


def later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)


@pytest.fixture
def ada(alpha, beta, django_capture_on_commit_callbacks):
    """A person with a footprint everywhere: admin of alpha (made so by its owner), a key, an
    invitation sent and one received (from beta), a login, a session, rows naming her in alpha's
    schema and the platform's, and an admin history entry."""
    user = User.objects.create_user(email=EMAIL, password=PASSWORD, first_name="Ada", last_name=SURNAME)
    m = Membership.objects.create(user=user, tenant=alpha.tenant, role=Role.VIEWER)
    accounts.member_role_change(tenant=alpha.tenant, membership_id=m.pk, role=Role.ADMIN, actor=alpha.users[Role.OWNER])
    with django_capture_on_commit_callbacks(execute=False):
        accounts.invitation_create(tenant=alpha.tenant, email="friend@gdpr.test", role=Role.VIEWER, invited_by=user)
    Invitation.objects.create(
        tenant=beta.tenant, email=EMAIL, role=Role.VIEWER, token_hash="g" * 64, invited_by=beta.users[Role.OWNER],
        expires_at=timezone.now() + dt.timedelta(days=7),
    )  # fmt: skip
    key, _ = api_key_create(tenant=alpha.tenant, name="ada's key", scopes=["read"], created_by=user)
    accounts.login_success_record(user=user, email=EMAIL, tenant=alpha.tenant)
    Client().force_login(user)  # a database session
    KillSwitch.objects.create(
        tenant=alpha.tenant, reason="drill", engaged_by=actor_display(user), lifted_by=actor_display(user),
        lifted_at=timezone.now(),
    )  # fmt: skip
    LogEntry.objects.create(
        user=alpha.users[Role.OWNER], content_type=ContentType.objects.get_for_model(User), object_id=str(user.pk),
        object_repr=str(user), action_flag=CHANGE, change_message="[]",
    )  # fmt: skip
    with schema_context(alpha.tenant.schema_name):
        BacktestRun.objects.create(strategy="sma_cross", symbol="GDPR", timeframe="1d", created_by=actor_display(user))
        Flow.objects.create(name="gdpr-flow", version=1, config={}, created_by=actor_display(user))
        model = RegisteredModel.objects.create(name="gdpr-model", created_by=actor_display(user))
        AliasEvent.objects.create(model=model, alias="production", to_version=1, action="assign", actor=EMAIL)
        # notifications to her: an e-mail subscription, an in-app message, a linked Telegram chat
        from notifications.models import Delivery, Event, InAppNotification, Subscription

        Subscription.objects.create(user_id=user.pk, events=["decision"], channel="email", email=EMAIL, created_by="t")
        event = Event.objects.create(type="model.deployed", data={"name": "m", "version": 1})
        d = Delivery.objects.create(event=event, channel="inapp", target=f"inapp:{user.pk}", idempotency_key="gdpr-1")
        InAppNotification.objects.create(user_id=user.pk, delivery=d, title=f"for {SURNAME}")
        Delivery.objects.create(event=event, channel="email", target=f"email:{EMAIL}", idempotency_key="gdpr-2")
    user.key = key
    return user


def _hits(needle: str) -> list[str]:
    """Every (schema.table.column) of any schema whose text, JSON or array value contains ``needle``."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE t.table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_schema NOT LIKE 'pg_toast%%' "
            "AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY')"
        )
        columns = cur.fetchall()
        hits = []
        for schema, table, column in columns:
            cur.execute(
                f'SELECT 1 FROM "{schema}"."{table}" WHERE strpos(lower("{column}"::text), %s) > 0 LIMIT 1',
                [needle.lower()],
            )
            if cur.fetchone():
                hits.append(f"{schema}.{table}.{column}")
    assert len(columns) > 100  # the scan really covers the schemas
    return hits


# --- export --------------------------------------------------------------------------------------


def test_export_holds_everything_about_the_person_and_is_audited(ada, alpha, beta):
    data = gdpr.gdpr_export(user=ada, actor=ada)
    p = f"user:{ada.pk}"
    assert data["subject"] == p and data["profile"]["email"] == EMAIL and data["profile"]["last_name"] == SURNAME
    assert data["memberships"] == [
        {"tenant": "alpha", "tenant_name": alpha.tenant.name, "role": "admin", "since": data["memberships"][0]["since"]}
    ]
    [key] = data["api_keys"]
    assert key["prefix"] == ada.key.prefix and key["scopes"] == ["read"] and key["revoked_at"] is None
    assert "hashed_key" not in json.dumps(data) and ada.key.hashed_key not in json.dumps(data)
    assert [i["email"] for i in data["invitations_sent"]] == ["friend@gdpr.test"]
    assert [i["tenant"] for i in data["invitations_received"]] == ["beta"]
    assert data["sessions"] == {"active": 1}
    assert {r["column"] for r in data["platform_rows"]} == {
        "tenants.KillSwitch.engaged_by",
        "tenants.KillSwitch.lifted_by",
    }
    by_tenant = {t["tenant"]: t for t in data["tenants"]}
    assert set(by_tenant) == {"alpha"}  # beta holds nothing of hers in its schema
    actions = {r["action"] for r in by_tenant["alpha"]["audit_records"]}
    assert {"member.invited", "api_key.created", "user.logged_in"} <= actions
    assert all(r["actor"] == p for r in by_tenant["alpha"]["audit_records"])
    assert {r["column"] for r in by_tenant["alpha"]["rows"]} == {
        "backtesting.BacktestRun.created_by", "intelligence.Flow.created_by",
        "models_registry.RegisteredModel.created_by", "models_registry.AliasEvent.actor",
    }  # fmt: skip
    with schema_context(alpha.tenant.schema_name):
        rec = AuditRecord.objects.get(action="gdpr.exported")
        assert (rec.actor, rec.object_id, rec.details) == (p, str(ada.pk), {"subject": p})
    with schema_context(beta.tenant.schema_name):
        assert not AuditRecord.objects.filter(action="gdpr.exported").exists()


def test_me_export_for_a_person_by_token_or_session(ada, alpha):
    token = RefreshToken.for_user(ada).access_token
    token["tenant_id"] = alpha.tenant.pk
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    r = c.get("/api/v1/me/export/")
    assert r.status_code == 200 and r.json()["profile"]["email"] == EMAIL
    session = Client()
    session.force_login(ada)
    r = session.get("/api/v1/me/export/")  # the dashboard's session, on the main host
    assert r.status_code == 200 and r.json()["subject"] == f"user:{ada.pk}"
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="gdpr.exported", actor=f"user:{ada.pk}").count() == 2


def test_me_export_refuses_api_keys_strangers_and_other_tenants(alpha, beta):
    r = alpha.client().get("/api/v1/me/export/")
    assert r.status_code == 403 and error_code(r) == "person_required" and "Bearer" in r.json()["error"]["message"]
    r = APIClient().get("/api/v1/me/export/")
    assert r.status_code == 401 and error_code(r) == "not_authenticated"
    # a beta member's token claiming alpha: alpha is not theirs
    token = RefreshToken.for_user(beta.users[Role.OWNER]).access_token
    token["tenant_id"] = alpha.tenant.pk
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert c.get("/api/v1/me/export/").status_code == 404
    with schema_context(alpha.tenant.schema_name):
        assert not AuditRecord.objects.filter(action="gdpr.exported").exists()  # nothing written


def test_export_command_for_staff(ada, tmp_path):
    out = tmp_path / "ada.json"
    call_command("gdpr_export", "--email", EMAIL.upper(), "--output", str(out), stderr=io.StringIO())
    assert json.loads(out.read_text())["profile"]["email"] == EMAIL
    with pytest.raises(CommandError, match="No user"):
        call_command("gdpr_export", "--email", "nobody@gdpr.test")


# --- erasure -------------------------------------------------------------------------------------


def test_erasure_leaves_the_email_nowhere_and_the_chain_verifying(ada, alpha, beta, django_capture_on_commit_callbacks):
    p = f"user:{ada.pk}"
    with schema_context(alpha.tenant.schema_name):
        assert audit_chain(now=later()) > 0  # her records are sealed before she is erased
    assert _hits(EMAIL) and _hits(SURNAME)  # the scan does find her before
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("gdpr_erase", "--email", EMAIL, "--yes", stdout=out)
    assert out.getvalue().startswith(f"erased {p}") and "note:" not in out.getvalue()
    # nowhere: not in the user row, created_by columns, invitations, admin history, sessions, audit
    assert _hits(EMAIL) == [] and _hits(SURNAME) == []
    ada.refresh_from_db()
    assert ada.email == f"erased-{ada.pk}@invalid" and (ada.first_name, ada.last_name) == ("", "")
    assert not ada.is_active and not ada.has_usable_password()
    assert ApiKey.objects.get(pk=ada.key.pk).revoked_at is not None
    assert not Invitation.objects.filter(tenant=beta.tenant, email=f"erased-{ada.pk}@invalid").first().is_open
    assert KillSwitch.objects.get(tenant=alpha.tenant, reason="drill").engaged_by == p
    with schema_context(alpha.tenant.schema_name):
        assert BacktestRun.objects.get(symbol="GDPR").created_by == p
        from notifications.models import InAppNotification, Subscription

        assert not Subscription.objects.exists() and not InAppNotification.objects.exists()  # nothing more to her
        erased = AuditRecord.objects.get(action="gdpr.erased")
        assert erased.details["subject"] == p and erased.details["rows_pseudonymised"] == 4
        assert AuditRecord.objects.filter(action="api_key.revoked", object_id=str(ada.key.pk)).exists()
    with schema_context(beta.tenant.schema_name):  # an invitation to her was rewritten: beta is told
        assert AuditRecord.objects.filter(action="gdpr.erased", details__subject=p).exists()
    verify = io.StringIO()
    call_command("verify_audit", "--tenant", alpha.slug, "--seal", stdout=verify)  # exits 1 if broken
    assert "verifies" in verify.getvalue()
    # she can't log in any more, and the API key she made is refused
    assert not Client().login(email=f"erased-{ada.pk}@invalid", password=PASSWORD)
    assert not Client().login(email=EMAIL, password=PASSWORD)


def test_erasure_command_asks_and_needs_a_known_address(ada, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Not erased"):
        call_command("gdpr_erase", "--email", EMAIL)
    assert User.objects.get(pk=ada.pk).email == EMAIL  # nothing written
    with pytest.raises(CommandError, match="No user"):
        call_command("gdpr_erase", "--email", "nobody@gdpr.test", "--yes")


def test_admin_action_confirms_then_erases_and_is_staff_only(ada, alpha):
    root = User.objects.create_superuser(email="root@gdpr-admin.test", password=PASSWORD)
    staff = Client()
    staff.force_login(root)
    url = "/admin/accounts/user/"
    form = {"action": "gdpr_erase", "_selected_action": [ada.pk]}
    r = staff.post(url, form)
    assert r.status_code == 200 and b"This can't be undone" in r.content  # the confirmation page
    assert User.objects.get(pk=ada.pk).email == EMAIL
    r = staff.post(url, {**form, "post": "yes"})
    assert r.status_code == 302
    assert User.objects.get(pk=ada.pk).email == f"erased-{ada.pk}@invalid"
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.get(action="gdpr.erased").actor == f"user:{root.pk}"
    # staff without the right to change users are not offered the action
    viewer = User.objects.create_user(email="viewer-staff@gdpr-admin.test", password=PASSWORD, is_staff=True)
    c = Client()
    c.force_login(viewer)
    other = User.objects.create_user(email="other@gdpr.test", password=PASSWORD)
    r = c.post(url, {"action": "gdpr_erase", "_selected_action": [other.pk], "post": "yes"})
    assert r.status_code in (302, 403)
    assert User.objects.get(pk=other.pk).email == "other@gdpr.test"


def test_a_person_cannot_erase_themself(ada):
    from api.errors import ApplicationError

    with pytest.raises(ApplicationError) as exc:
        gdpr.gdpr_erase(user=ada, actor=ada)
    assert exc.value.code == "cannot_erase_self" and User.objects.get(pk=ada.pk).email == EMAIL


def test_every_actor_column_is_known():
    """Every ``*_by``/actor CharField either names people (and erasure rewrites it) or is listed as
    not naming people: a new one can't slip past erasure unnoticed."""
    from django.apps import apps
    from django.db import models

    tenant_cols, public_cols = gdpr.actor_columns()
    covered = {gdpr._label(m, f) for m, f in tenant_cols + public_cols}
    assert {"backtesting.BacktestRun.created_by", "tenants.KillSwitch.lifted_by"} <= covered
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            label = gdpr._label(model, f.name)
            if isinstance(f, models.CharField) and (f.name.endswith("_by") or f.name == "actor"):
                assert label in covered or label in gdpr.NOT_PEOPLE or model is AuditRecord, label
