"""The kill switch in a real browser: a tenant admin halts trading from the dashboard, every page
says so, no decision is made (the API answers 423 ``kill_switch_active``, nothing is stored), and
only platform staff lift it — from the admin — after which decisions resume."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from django_tenants.utils import schema_context

from tests.conftest import PASSWORD


def _decide(base_url: str, key: str, symbol: str) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{base_url}/api/v1/decisions/",
        data=json.dumps({"symbol": symbol}).encode(),
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_engage_from_the_dashboard_blocks_decisions_until_staff_lift_it(new_dashboard, web, committed, unique):
    from accounts.models import User
    from intelligence.models import Decision
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.services import tenant_provision

    email = f"halt-{unique}@firm.test"
    with committed():
        tenant, key = tenant_provision(slug=f"halt-{unique}", plan="pro", owner_email=email, owner_password=PASSWORD)
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(300, seed=8)), "csv")
            md_services.bars_import(tenant=tenant, symbol="HALT", timeframe="1d", raw=raw)
        staff = User.objects.create_superuser(email=f"staff-{unique}@firm.test", password=PASSWORD)
    status, before = _decide(web.base_url, key, "HALT")
    assert status == 201 and before["action"] in ("BUY", "SELL", "HOLD")

    # the admin halts trading from the Kill switch page (Decisions area)
    d = new_dashboard()
    d.login(email, PASSWORD)
    assert d.page.locator("[data-kill-switch]").count() == 0
    assert d.page.locator('[data-stat="trading"]').inner_text() == "Live"  # the overview's trading state
    d.nav("Kill switch")
    d.submit("kill-switch", reason="model behaves unexpectedly")
    assert "Trading is halted" in d.messages()
    assert d.page.locator("[data-engaged]").is_visible()
    assert d.page.locator('form[data-form="kill-switch"]').count() == 0  # a tenant can't lift its own
    assert "model behaves unexpectedly" in d.page.locator("[data-history]").inner_text()
    for path in ("/app/", "/app/decisions/", "/app/models/"):  # the banner on every page
        d.goto(path)
        banner = d.page.locator("[data-kill-switch]")
        assert banner.is_visible(), path
        assert "Trading is halted" in banner.inner_text() and "model behaves unexpectedly" in banner.inner_text()
        if path == "/app/":
            assert d.page.locator('[data-stat="trading"]').inner_text() == "Halted"

    # no decision is made while it is engaged
    status, body = _decide(web.base_url, key, "HALT")
    assert status == 423 and body["error"]["code"] == "kill_switch_active"
    with committed(), schema_context(tenant.schema_name):
        assert Decision.objects.count() == 1

    # platform staff lift it from the admin
    s = new_dashboard()
    s.goto("/admin/login/")
    s.page.fill("#id_username", staff.email)
    s.page.fill("#id_password", PASSWORD)
    s.page.locator("input[type=submit]").click()
    s.page.wait_for_load_state("networkidle")
    s.goto(f"/admin/tenants/killswitch/?tenant__id__exact={tenant.pk}")
    s.page.locator("input.action-select").first.check()
    s.page.select_option("select[name=action]", "lift")
    s.page.locator("button[name=index]").click()
    s.page.wait_for_load_state("networkidle")
    assert "Lifted 1 kill switch(es)" in s.page.locator("ul.messagelist").inner_text()

    # the tenant's pages no longer say halted, and decisions resume
    d.goto("/app/")
    assert d.page.locator('[data-stat="trading"]').inner_text() == "Live"
    d.goto("/app/decisions/")
    assert d.page.locator("[data-kill-switch]").count() == 0
    d.goto("/app/kill-switch/")
    assert d.page.locator('form[data-form="kill-switch"]').is_visible()  # can be engaged again
    assert staff.email in d.page.locator("[data-history]").inner_text()  # lifted by
    status, after = _decide(web.base_url, key, "HALT")
    assert status in (200, 201) and after["symbol"] == "HALT"
