"""Platform staff in a real browser: the service-health page (statuses with their words, refreshed
in place every 5 s), the tenants console (search, filters, pages) and a tenant's read-only detail,
whose every view lands in that tenant's audit trail. A tenant's owner is refused all three."""

from __future__ import annotations

import os

from django_tenants.utils import schema_context

from tests.conftest import PASSWORD

from .support import PHONE

SHOTS = os.environ.get("STAFF_SCREENSHOTS")  # a folder: also keep PNGs of the pages for review


def test_staff_watch_health_and_browse_tenants_read_only(new_dashboard, web, committed, unique):
    from accounts.models import User
    from compliance.models import AuditRecord
    from tenants.services import tenant_provision

    owner = f"owner-{unique}@firm.test"
    with committed():
        tenant, _ = tenant_provision(slug=f"desk-{unique}", name=f"Desk {unique}", plan="pro", owner_email=owner,
                                     owner_password=PASSWORD)  # fmt: skip
        User.objects.create_user(email=f"ops-{unique}@platform.test", password=PASSWORD, is_staff=True)

    d = new_dashboard()
    d.login(f"ops-{unique}@platform.test", PASSWORD)
    d.goto("/app/staff/revenue/")
    d.nav("Service health (staff)")
    assert d.path == "/app/staff/health/"
    row = d.page.locator(f'[data-health-tenants] tr[data-tenant="desk-{unique}"]')
    assert row.get_attribute("data-status") == "ok" and "✓ ok" in row.inner_text()
    celery = d.page.locator('tr[data-check="celery"]')  # no worker runs for the browser tests' server
    assert celery.get_attribute("data-status") == "down" and "■ down" in celery.inner_text()
    assert "celery -A config worker" in celery.inner_text()
    # the panel refreshes itself in place
    first = d.page.locator("[data-overall-status]").inner_text()
    d.page.wait_for_function(
        "text => document.querySelector('[data-overall-status]').innerText !== text", arg=first, timeout=15_000
    )
    if SHOTS:
        d.screenshot(f"{SHOTS}/staff-health-1280.png")

    # the console: search narrows to the tenant, then its detail
    d.page.locator("[data-staff-nav]").get_by_role("link", name="Tenants").click()
    d.page.wait_for_load_state("networkidle")
    d.submit("filter-tenants", q=f"desk-{unique}", plan="pro")
    d.htmx_settled()
    rows = d.page.locator("[data-tenants] tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-tenant") == f"desk-{unique}"
    assert f"q=desk-{unique}" in d.page.url  # the filtered list is a bookmark
    if SHOTS:
        d.screenshot(f"{SHOTS}/staff-tenants-1280.png")
    rows.first.locator("[data-tenant-link]").click()
    d.page.wait_for_load_state("networkidle")
    assert d.path == f"/app/staff/tenants/desk-{unique}/"
    assert owner in d.page.locator("[data-members]").inner_text()
    assert d.page.locator("main form").count() == 0  # nothing to change here
    if SHOTS:
        d.screenshot(f"{SHOTS}/staff-tenant-1280.png")
    with committed(), schema_context(tenant.schema_name):
        viewed = list(AuditRecord.objects.filter(action="staff.tenant_viewed").values_list("actor", flat=True))
        staff_id = User.objects.get(email=f"ops-{unique}@platform.test").pk
    assert viewed == [f"user:{staff_id}"]

    # at phone width the pages fit
    p = new_dashboard(PHONE)
    p.login(f"ops-{unique}@platform.test", PASSWORD)
    for path in ("/app/staff/health/", "/app/staff/tenants/", f"/app/staff/tenants/desk-{unique}/"):
        p.goto(path)
        assert p.horizontal_overflow() <= 0, path
        if SHOTS:
            name = path.strip("/").replace("/", "-").replace(f"-desk-{unique}", "-detail")
            p.screenshot(f"{SHOTS}/{name}-{PHONE['width']}.png")

    # the tenant's own owner is refused
    o = new_dashboard()
    o.login(owner, PASSWORD)
    for path in ("/app/staff/health/", "/app/staff/tenants/", f"/app/staff/tenants/desk-{unique}/"):
        assert o.goto(path).status == 403, path
    assert o.page.locator("[data-staff-health]").count() == 0
