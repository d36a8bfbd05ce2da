"""Pages that carry their own scripts and styles work under the Content-Security-Policy: Swagger
UI (sidecar assets, start-up script from a URL), Django admin (nonce'd styles) and the profile's
confirm-before-leaving form. The ``new_dashboard`` fixture fails a test on any CSP violation the
browser reports."""

from __future__ import annotations

from tests.conftest import PASSWORD


def test_swagger_ui_renders_the_operations(dashboard):
    d = dashboard
    d.goto("/api/docs/")
    d.page.locator(".swagger-ui .opblock").first.wait_for()
    # a spec this size is rendered as a virtual list (only what is in view is in the DOM): the UI
    # holds every operation, grouped by area (one tag each)
    operations = d.page.evaluate("() => ui.specSelectors.operations().size")
    tags = d.page.evaluate("() => ui.specSelectors.taggedOperations().size")
    assert operations > 100 and tags > 20
    assert d.page.evaluate("() => ui.specSelectors.paths().has('/api/v1/auth/token/')")


def test_admin_login_and_a_change_list_work(dashboard, committed, unique):
    from accounts.models import User

    with committed():
        User.objects.create_superuser(email=f"staff-{unique}@firm.test", password=PASSWORD)
    d = dashboard
    d.goto("/admin/login/")
    d.page.fill("#id_username", f"staff-{unique}@firm.test")
    d.page.fill("#id_password", PASSWORD)
    d.page.locator("input[type=submit]").click()
    d.page.wait_for_load_state("networkidle")
    assert d.path == "/admin/"
    d.goto("/admin/accounts/user/")
    # the change list's select-all checkbox is admin JavaScript (actions.js)
    d.page.locator("#action-toggle").check()
    assert d.page.locator("input.action-select:checked").count() >= 1
    # every model's change list (the new-dashboard fixture fails on any CSP violation)
    d.goto("/admin/")
    links = sorted(set(d.page.locator("#content-main th[scope=row] a").evaluate_all("els => els.map(e => e.pathname)")))
    assert "/admin/accounts/user/" in links
    for path in links:
        response = d.goto(path)
        assert response.status == 200, path


def test_leaving_from_the_profile_asks_first(dashboard, committed, unique):
    from tenants.models import Membership, Role
    from tenants.services import tenant_provision

    with committed():
        tenant, _ = tenant_provision(slug=f"leave-{unique}", owner_email=f"own-{unique}@firm.test",
                                     owner_password=PASSWORD)  # fmt: skip
        from accounts.models import User

        user = User.objects.create_user(email=f"member-{unique}@firm.test", password=PASSWORD)
        Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
    d = dashboard
    d.login(f"member-{unique}@firm.test", PASSWORD)
    d.goto("/accounts/profile/")
    asked = []
    d.page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    d.page.get_by_role("button", name="Leave").click()
    d.page.wait_for_load_state("networkidle")
    assert len(asked) == 1 and asked[0].startswith("Leave ")
    with committed():
        assert Membership.objects.filter(user=user, tenant=tenant).exists()  # dismissed: still a member
    d.page.once("dialog", lambda dialog: dialog.accept())
    d.page.get_by_role("button", name="Leave").click()
    d.page.wait_for_load_state("networkidle")
    with committed():
        assert not Membership.objects.filter(user=user, tenant=tenant).exists()
