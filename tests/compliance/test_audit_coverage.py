"""What the audit trail must hold, and what it must never hold.

* the events a compliance review asks for are recorded: login, API-key create/revoke, a member's
  role change, model deploy / rollback, bars imported (with counts) and deleted, exports;
* no record written by the product carries an e-mail or a person's name (people are ``user:<id>``);
* audit records are kept five years whatever the plan: the daily retention task deletes market
  data only, and a four-year-old record survives it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from accounts import services as accounts
from compliance.models import AuditRecord
from tenants.models import Membership, Plan, Role
from tenants.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def _actions() -> set[str]:
    return set(AuditRecord.objects.values_list("action", flat=True))


def test_people_flows_are_audited_by_pseudonym_without_addresses(alpha, django_capture_on_commit_callbacks):
    owner, admin = alpha.users[Role.OWNER], alpha.users[Role.ADMIN]
    with django_capture_on_commit_callbacks(execute=False):  # no mail sent
        invitation, _ = accounts.invitation_create(
            tenant=alpha.tenant, email="someone.private@cov.test", role=Role.VIEWER, invited_by=admin
        )
        accounts.invitation_revoke(tenant=alpha.tenant, invitation_id=invitation.pk, actor=admin)
        viewer = Membership.objects.get(tenant=alpha.tenant, user=alpha.users[Role.VIEWER])
        accounts.member_role_change(tenant=alpha.tenant, membership_id=viewer.pk, role=Role.ANALYST, actor=owner)
        accounts.member_remove(tenant=alpha.tenant, membership_id=viewer.pk, actor=admin)
        key, _ = api_key_create(tenant=alpha.tenant, name="coverage", scopes=["read"], created_by=admin)
        with schema_context(alpha.tenant.schema_name):
            api_key_revoke(tenant=alpha.tenant, key_id=key.pk, actor=admin)
        accounts.login_success_record(user=owner, email=owner.email, tenant=alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        assert {
            "member.invited", "member.invitation_revoked", "member.role_changed", "member.removed",
            "api_key.created", "api_key.revoked", "user.logged_in",
        } <= _actions()  # fmt: skip
        changed = AuditRecord.objects.get(action="member.role_changed")
        assert changed.actor == f"user:{owner.pk}" and changed.details["user"] == f"user:{viewer.user_id}"
        with connection.cursor() as cur:  # not one address anywhere in the trail, whoever wrote it
            cur.execute(
                f"SELECT action, actor, details::text FROM {AuditRecord._meta.db_table} "
                "WHERE actor LIKE '%%@%%' OR details::text LIKE '%%@%%'"
            )
            assert cur.fetchall() == []


def test_model_moves_and_bar_imports_are_audited(alpha):
    from marketdata import services as md
    from marketdata.models import Instrument
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from models_registry.services import registry
    from tests.models_registry.factories import stored_version

    with schema_context(alpha.tenant.schema_name):
        v1 = stored_version("cov-model")
        v2 = stored_version("cov-model", seed=1)
        registry.model_deploy(model=v1.model, version=v1, alias="challenger", actor="t")
        registry.alias_set(model=v1.model, alias="production", version=v2, actor="t")
        registry.model_rollback(model=v1.model, version=v1, actor="t", reason="drill")
        md.bars_import(
            tenant=alpha.tenant, symbol="COV", timeframe="1d", raw=read_table(as_csv(generate_bars(20)), "csv")
        )
        md.bars_delete(instrument=Instrument.objects.get(symbol="COV"), actor="t")
        assert {"model.deploy", "model.assign", "model.rollback", "bars.imported", "bars.deleted"} <= _actions()
        imported = AuditRecord.objects.get(action="bars.imported")
        assert (imported.details["rows"], imported.details["inserted"]) == (20, 20)
        rollback = AuditRecord.objects.get(action="model.rollback")
        assert (rollback.details["from"], rollback.details["to"]) == (v2.version, v1.version)


def test_a_four_year_old_audit_record_survives_the_retention_task(beta):
    from analytics.tasks import retention_tick
    from marketdata import services as md
    from marketdata.models import Bar
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table

    # Given a plan keeping market data 30 days, old bars, and a record written four years ago
    Plan.objects.filter(pk=beta.tenant.plan_id).update(
        limits={**beta.tenant.plan.limits, "market_data_retention_days": 30}
    )
    four_years_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=4 * 365)
    with schema_context(beta.tenant.schema_name):
        md.bars_import(
            tenant=beta.tenant, symbol="RET4", timeframe="1d", raw=read_table(as_csv(generate_bars(50)), "csv")
        )
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {AuditRecord._meta.db_table} (created_at, actor, action, object_type, object_id, details)"
                " VALUES (%s, 'system', 'ancient.event', '', '', '{}') RETURNING id",
                [four_years_ago],
            )
            old_id = cur.fetchone()[0]
    # When the daily retention task runs
    deleted = retention_tick()
    # Then the market data went, the audit record stayed
    assert deleted >= 50
    with schema_context(beta.tenant.schema_name):
        assert not Bar.objects.filter(instrument__symbol="RET4").exists()
        assert AuditRecord.objects.filter(pk=old_id, action="ancient.event").exists()
        assert AuditRecord.objects.filter(action="bars.expired").exists()
