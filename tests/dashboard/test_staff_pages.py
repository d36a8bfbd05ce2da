"""Staff pages: service health (statuses coloured, with their text) and the multi-tenant console
(search, filters, pagination; a tenant's read-only detail, audited). Tenants' members get 403."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from ops import health, selectors
from tests.dashboard.support import HX, dashboard_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_health")]
PAGES = ["/app/staff/health/", "/app/staff/tenants/", "/app/staff/tenants/alpha/"]


@pytest.fixture
def staff(staff_user):
    c = Client()
    c.force_login(staff_user)
    c.user = staff_user
    return c


def _audits(fx) -> list[AuditRecord]:
    with schema_context(fx.tenant.schema_name):
        return list(AuditRecord.objects.filter(action="staff.tenant_viewed"))


def _tenant_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-tenant="([^"]+)"', html)


# --- who may open them -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_members_get_403_and_anonymous_the_login(path, alpha):
    r = dashboard_client(alpha, "owner").get(path)
    assert r.status_code == 403 and "platform staff only" in r.content.decode()
    r = Client().get(path)
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]
    assert _audits(alpha) == []


def test_staff_links_in_the_menu_and_on_the_staff_pages(staff, alpha):
    html = staff.get("/app/staff/revenue/").content.decode()
    assert 'data-staff-link="health"' in html and 'data-staff-link="tenants"' in html
    assert "data-staff-health" in html and "data-staff-tenants" in html  # the menu
    member_html = dashboard_client(alpha, "owner").get("/app/usage/").content.decode()
    assert "data-staff-health" not in member_html and "data-staff-tenants" not in member_html


# --- service health --------------------------------------------------------------------------------


def test_health_page_colours_each_status_with_its_text(staff, alpha, beta):
    from compliance import controls

    # given: alpha halted by its kill switch (down), no worker (celery down)
    controls.kill_engage(tenant=alpha.tenant, reason="desk review", actor=alpha.users["owner"])
    r = staff.get("/app/staff/health/")
    assert r.status_code == 200
    html = r.content.decode()
    # then: each status is a badge with a symbol and its word, not a colour alone
    assert re.search(r'<tr data-check="celery" data-status="down">.*?<span class="badge badge-down" '
                     r'data-status="down">■ down</span>', html, re.S)  # fmt: skip
    assert re.search(r'<tr data-tenant="alpha" data-status="down">.*?badge-down" data-status="down">■ down</span>'
                     r".*?trading halted: desk review", html, re.S)  # fmt: skip
    assert re.search(r'<tr data-tenant="beta" data-status="ok">.*?badge-ok" data-status="ok">✓ ok</span>', html, re.S)
    assert "warn &gt; 10.00 ms, critical &gt; 20.00 ms" in html  # the bounds a round trip is judged against
    assert "seed 000" in html  # where each threshold comes from
    # and: htmx polling gets the panel alone
    panel = staff.get("/app/staff/health/", **HX).content.decode()
    assert panel.startswith('<div id="health-panel"') or panel.lstrip().startswith('<div id="health-panel"')
    assert "<nav" not in panel


def test_health_page_shows_warn_for_a_stream_behind(staff, alpha):
    from eventbus import bus

    r = bus.client()
    r.flushdb()
    try:
        bars = [{"symbol": "ETHUSDT", "timeframe": "1m", "ts": 1_700_000_000 + 60 * i, "open": 1.0, "high": 1.0,
                 "low": 1.0, "close": 1.0, "volume": 1.0} for i in range(1100)]  # fmt: skip
        bus.publish_many("market.data.update", bars, schema=alpha.tenant.schema_name)
        r.xgroup_create(bus.stream_key("market.data.update", alpha.tenant.schema_name), "decisions", id="0")
        html = staff.get("/app/staff/health/?fresh=1").content.decode()
    finally:
        r.flushdb()
    assert re.search(r'data-stream-group="alpha:decisions">.*?1100.*?badge-warn" data-status="warn">! warn</span>',
                     html, re.S)  # fmt: skip
    assert re.search(r'<tr data-tenant="alpha" data-status="degraded">.*?! degraded', html, re.S)


# --- the console: search, filters, pagination --------------------------------------------------------


def test_list_search_filters_and_pagination(staff, alpha, beta, monkeypatch):
    html = staff.get("/app/staff/tenants/").content.decode()
    assert _tenant_rows(html) == ["alpha", "beta"]
    assert 'data-health="ok"' in html and "owner@alpha.test" not in html  # no member e-mails in the list
    # search: slug, name, a member's e-mail
    assert _tenant_rows(staff.get("/app/staff/tenants/?q=alph").content.decode()) == ["alpha"]
    assert _tenant_rows(staff.get("/app/staff/tenants/?q=viewer@beta.test").content.decode()) == ["beta"]
    empty = staff.get("/app/staff/tenants/?q=nobody-here").content.decode()
    assert _tenant_rows(empty) == [] and 'data-no-match="tenants"' in empty and "No tenants match" in empty
    # filters: plan, status, health
    assert _tenant_rows(staff.get("/app/staff/tenants/?plan=free").content.decode()) == ["beta"]
    assert _tenant_rows(staff.get("/app/staff/tenants/?status=suspended").content.decode()) == []
    from compliance import controls

    controls.kill_engage(tenant=beta.tenant, reason="audit", actor=beta.users["owner"])
    health.reset_cache()
    assert _tenant_rows(staff.get("/app/staff/tenants/?health=down").content.decode()) == ["beta"]
    assert _tenant_rows(staff.get("/app/staff/tenants/?health=ok&plan=pro").content.decode()) == ["alpha"]
    # values that make no sense are ignored, saying what is allowed (as on every list)
    r = staff.get("/app/staff/tenants/?plan=gold&health=purple")
    html = r.content.decode()
    assert r.status_code == 200 and _tenant_rows(html) == ["alpha", "beta"]
    assert "Ignored plan “gold”: it is one of free, pro, enterprise." in html and "Ignored health “purple”" in html
    # pagination keeps the filters
    monkeypatch.setattr(selectors, "CONSOLE_PAGE", 1)
    first = staff.get("/app/staff/tenants/?status=active").content.decode()
    assert _tenant_rows(first) == ["alpha"] and "Page 1 of 2" in first
    assert 'href="?status=active&amp;page=2"' in first
    second = staff.get("/app/staff/tenants/?status=active&page=2").content.decode()
    assert _tenant_rows(second) == ["beta"] and "Page 2 of 2" in second
    assert _audits(alpha) == [] and _audits(beta) == []  # the list is not a look into a tenant


def test_list_shows_usage_and_last_activity(staff, alpha, usage_redis):
    from tenants import limits, metering

    limits.limit_check(alpha.tenant, "decisions_per_day", 7)
    for _ in range(3):
        metering.request_write(alpha.tenant.schema_name, endpoint="GET /api/v1/tenant/", status=200, latency_ms=2,
                               key_id=1, user_id=None)  # fmt: skip
    metering.units_add(alpha.tenant, "decision", 7)
    metering.barrier()
    alpha.client().get("/api/v1/tenant/")  # an API key used now
    html = staff.get("/app/staff/tenants/?q=alpha").content.decode()
    row = html[html.index('<tr data-tenant="alpha">') :]
    row = row[: row.index("</tr>")]
    assert re.search(r'data-label="Decisions">7<', row) and re.search(r'data-label="Today">7 / 20000<', row)
    assert re.search(r'data-label="Requests">[4-9]<', row)  # 3 written + the key's own request (metered)
    assert 'data-label="Last key use">never<' not in row and 'data-label="Last decision">never<' in row


# --- a tenant's detail: read only, audited -----------------------------------------------------------


def test_detail_shows_the_tenant_read_only_and_is_audited(staff, alpha, beta):
    r = staff.get("/app/staff/tenants/alpha/")
    assert r.status_code == 200
    html = r.content.decode()
    # members, keys by name and prefix, never a key or its hash
    assert "owner@alpha.test" in html and "viewer@alpha.test" in html and "owner@beta.test" not in html
    from tenants.models import ApiKey

    for key in ApiKey.objects.filter(tenant=alpha.tenant):
        assert f'data-key-prefix="{key.prefix}"' in html and key.hashed_key not in html
    assert alpha.key not in html and alpha.key.split("_")[-1] not in html
    assert 'data-quota="decisions_per_day"' in html and "data-decisions" in html and 'data-empty="models"' in html
    # read only: no form that changes anything, no way to act as the tenant
    main = html[html.index("<main") :]
    assert "<form" not in main and "tenant-switch" not in main
    # audited in alpha's own trail, by pseudonym
    (record,) = _audits(alpha)
    assert record.actor == f"user:{staff.user.pk}" and record.object_type == "Tenant"
    assert record.object_id == str(alpha.tenant.pk) and "ops@platform.test" not in str(record.details)
    assert _audits(beta) == []
    staff.get("/app/staff/tenants/alpha/")
    assert len(_audits(alpha)) == 2  # every view


def test_detail_refuses_writes_and_unknown_tenants(staff, alpha):
    r = staff.post("/app/staff/tenants/alpha/", {"plan": "enterprise"})
    assert r.status_code == 405
    alpha.tenant.refresh_from_db()
    assert alpha.tenant.plan.code == "pro" and _audits(alpha) == []
    assert staff.get("/app/staff/tenants/nope/").status_code == 404


def test_detail_lists_models_with_production_versions_and_decision_counts(staff, alpha):
    import datetime as dt

    from intelligence.models import Decision
    from models_registry.services import registry
    from tests.models_registry.factories import stored_version

    with schema_context(alpha.tenant.schema_name):
        v1 = stored_version("staff-model")
        v2 = stored_version("staff-model", seed=1)
        registry.alias_set(model=v1.model, alias="production", version=v1, actor="t")
        registry.alias_set(model=v1.model, alias="challenger", version=v2, actor="t")
        for i, action in enumerate(("BUY", "BUY", "HOLD")):
            Decision.objects.create(source="api", symbol="STAFF", timeframe="1d", action=action, confidence=0.6,
                                    ts=dt.datetime(2024, 1, 1 + i, tzinfo=dt.UTC))  # fmt: skip
    html = staff.get("/app/staff/tenants/alpha/").content.decode()
    row = re.search(r'<tr data-model="staff-model">(.*?)</tr>', html, re.S).group(1)
    assert "2 (latest v2)" in row and "<td>v1</td><td>v2</td>" in row
    assert "data-decisions-24h>3<" in html and "BUY 2" in html and "HOLD 1" in html


def test_list_queries_do_not_grow_with_the_rows(staff, alpha, beta):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    staff.get("/app/staff/tenants/")  # the session, the health report
    counts = []
    for query in ("?q=alpha", ""):
        with CaptureQueriesContext(connection) as q:
            html = staff.get(f"/app/staff/tenants/{query}").content.decode()
        counts.append((len(_tenant_rows(html)), len(q)))
    assert [rows for rows, _ in counts] == [1, 2]
    assert counts[0][1] == counts[1][1], counts  # per-tenant figures: one UNION ALL for the page
