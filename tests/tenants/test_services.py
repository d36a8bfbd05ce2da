"""Provisioning, plan limits and usage counters."""

import pytest
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from accounts.models import User
from api.errors import ApplicationError
from compliance.models import AuditRecord
from tenants import limits
from tenants.models import ApiKey, Domain, Membership, Tenant
from tenants.resolution import api_key_resolve
from tenants.services import tenant_provision

pytestmark = pytest.mark.django_db


class TestProvision:
    def test_creates_schema_domain_owner_key_and_audit(self, tenants_ab):
        # (its speed -- a clone of the migrated template -- is a benchmark: `make bench`, provision_tenant)
        tenant, key = tenant_provision(slug="gamma-one", plan="enterprise", owner_email="Boss@Gamma.test")
        assert tenant.schema_name == "t_gamma_one" and schema_exists("t_gamma_one")
        assert Domain.objects.get(tenant=tenant).domain == "gamma-one.localhost"
        owner = Membership.objects.get(tenant=tenant)
        assert owner.role == "owner" and owner.user.email == "boss@gamma.test"
        assert not owner.user.has_usable_password()
        info = api_key_resolve(key)
        assert info.tenant_id == tenant.pk and set(info.scopes) == {"read", "trade", "admin"}
        with schema_context("t_gamma_one"):
            assert list(AuditRecord.objects.values_list("action", flat=True).order_by("id")) == [
                "tenant.provisioned",
                "api_key.created",
            ]

    @pytest.mark.parametrize(
        "slug,code",
        [
            ("A", "invalid_slug"),
            ("ab", "invalid_slug"),
            ("1abc", "invalid_slug"),
            ("has_underscore", "invalid_slug"),
            ("admin", "invalid_slug"),
            ("alpha", "slug_taken"),
        ],
    )
    def test_bad_slug_writes_nothing(self, tenants_ab, slug, code):
        before = (Tenant.objects.count(), Domain.objects.count(), User.objects.count())
        with pytest.raises(ApplicationError) as exc:
            tenant_provision(slug=slug, owner_email="x@new.test")
        assert exc.value.code == code
        assert (Tenant.objects.count(), Domain.objects.count(), User.objects.count()) == before

    def test_unknown_plan(self, tenants_ab):
        with pytest.raises(ApplicationError) as exc:
            tenant_provision(slug="delta", plan="platinum")
        assert exc.value.code == "unknown_plan" and "free" in exc.value.details["choices"]
        assert not schema_exists("t_delta")

    def test_failure_midway_leaves_no_schema_or_rows(self, tenants_ab, monkeypatch):
        from tenants import services

        def boom(**kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(services, "_api_key_insert", boom)
        with pytest.raises(RuntimeError):
            tenant_provision(slug="epsilon", owner_email="e@eps.test")
        connection.set_schema_to_public()
        assert not Tenant.objects.filter(slug="epsilon").exists()
        assert not User.objects.filter(email="e@eps.test").exists()
        assert not schema_exists("t_epsilon")

    def test_command_prints_one_json_line_last(self, tenants_ab, capsys):
        import json

        from django.core.management import call_command

        call_command("provision_tenant", "zeta", "--plan", "pro", "--json")
        last = capsys.readouterr().out.strip().splitlines()[-1]
        data = json.loads(last)
        assert data["slug"] == "zeta" and data["schema_name"] == "t_zeta" and data["api_key"].startswith("ati_")
        assert ApiKey.objects.filter(tenant__slug="zeta").count() == 1


class TestLimits:
    def test_limit_check_consumes_until_cap_then_429(self, beta, usage_redis):
        beta.tenant.plan.limits = {**beta.tenant.plan.limits, "decisions_per_day": 3}
        for i in range(3):
            assert limits.limit_check(beta.tenant, "decisions_per_day").used == i + 1
        with pytest.raises(ApplicationError) as exc:
            limits.limit_check(beta.tenant, "decisions_per_day")
        # the code names the quota; a daily one is a 429 that says when to retry
        assert exc.value.status == 429 and exc.value.code == "decisions_per_day_exceeded"
        details = exc.value.details
        assert {k: details[k] for k in ("quota", "limit", "used", "plan")} == {
            "quota": "decisions_per_day", "limit": 3, "used": 3, "plan": "free"
        }  # fmt: skip
        assert 0 < int(exc.value.headers["Retry-After"]) <= 86400
        assert limits.usage_get(beta.tenant, "decisions_per_day").remaining == 0

    def test_a_monthly_quota_is_a_402_and_a_refused_amount_consumes_nothing(self, beta, usage_redis):
        beta.tenant.plan.limits = {**beta.tenant.plan.limits, "backtest_bars_per_month": 1000}
        assert limits.limit_check(beta.tenant, "backtest_bars_per_month", 600).used == 600
        with pytest.raises(ApplicationError) as exc:
            limits.limit_check(beta.tenant, "backtest_bars_per_month", 500)
        assert exc.value.status == 402 and exc.value.code == "backtest_bars_per_month_exceeded"
        assert exc.value.details["requested"] == 500 and exc.value.details["resets_at"].endswith("T00:00:00+00:00")
        assert limits.usage_get(beta.tenant, "backtest_bars_per_month").used == 600
        assert limits.limit_check(beta.tenant, "backtest_bars_per_month", 400).remaining == 0

    def test_unlimited_metric_and_per_tenant_counters(self, alpha, beta, usage_redis):
        assert limits.limit_check(alpha.tenant, "not_capped", amount=1000).limit is None
        limits.usage_increment(alpha.tenant, "predictions_per_day", 5)
        assert limits.usage_get(alpha.tenant, "predictions_per_day").used == 5
        assert limits.usage_get(beta.tenant, "predictions_per_day").used == 0


def test_tenant_status_set_rules(alpha):
    from tenants.services import tenant_status_set, tenant_template_ensure

    with pytest.raises(ApplicationError) as exc:
        tenant_status_set(tenant=alpha.tenant, status="deleted", actor=None)
    assert exc.value.code == "invalid_status"
    assert tenant_status_set(tenant=tenant_template_ensure(), status="suspended", actor=None) is False
    assert tenant_status_set(tenant=alpha.tenant, status="active", actor=None) is False  # already active
    assert tenant_status_set(tenant=alpha.tenant, status="suspended", actor=alpha.users["owner"]) is True
    alpha.tenant.refresh_from_db()
    assert alpha.tenant.status == "suspended"
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="tenant.suspended").exists()
