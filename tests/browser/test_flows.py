"""What a newcomer does from the browser, in Debian's chromium against the real server."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from django.core.management import call_command
from django.test import override_settings

from tests.conftest import PASSWORD

from .support import DESKTOP, PHONE, mail_texts


def _api_get(base_url: str, path: str, key: str) -> tuple[int, dict]:
    req = urllib.request.Request(base_url + path, headers={"Authorization": f"Api-Key {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _signup(d, unique: str, email: str | None = None) -> dict:
    data = {
        "full_name": "Nina Newcomer",
        "email": email or f"nina-{unique}@firm.test",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "name": f"Firm {unique}",
        "slug": f"firm-{unique}",
        "plan": "pro",
    }
    d.goto("/accounts/signup/")
    d.submit("signup", **data)
    return data


def test_signup_login_create_key_and_call_the_api(dashboard, web, unique):
    d = dashboard
    data = _signup(d, unique)
    assert d.path == "/app/" and "is ready" in d.messages()
    d.logout()
    assert d.path.startswith("/accounts/login/")

    d.login(data["email"], PASSWORD)
    assert d.path == "/app/"
    assert d.page.locator("h1").inner_text() == data["name"]

    d.nav("API keys")
    assert d.page.locator('[data-empty="keys"]').is_visible()  # empty state says what to do
    d.submit("api-key", name="trading bot", scopes=["read", "trade"])
    raw = d.page.locator("[data-raw-key]").inner_text().strip()
    assert raw.startswith("ati_")
    assert d.page.locator("[data-keys] tbody tr").count() == 1

    status, body = _api_get(web.base_url, "/api/v1/tenant/", raw)
    assert status == 200 and body["slug"] == data["slug"]

    d.goto("/app/api-keys/")  # shown once: gone after a reload, but the key now shows its last use
    assert d.page.locator("[data-raw-key]").count() == 0
    assert "never" not in d.page.locator("[data-last-used]").inner_text()

    d.page.once("dialog", lambda dialog: dialog.accept())
    d.page.locator("[data-revoke]").click()
    d.page.locator("tr.revoked").wait_for()
    status, body = _api_get(web.base_url, "/api/v1/tenant/", raw)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_signup_bad_input_is_explained_on_the_form(dashboard, unique, committed):
    d = dashboard
    d.goto("/accounts/signup/")
    d.submit(
        "signup",
        email=f"x-{unique}@firm.test",
        password1=PASSWORD,
        password2=PASSWORD + "x",
        name="X",
        slug=f"x-{unique}",
        plan="free",
    )
    assert "don't match" in " ".join(d.field_errors("password2"))
    d.submit("signup", password1="abc", password2="abc")
    assert any("too short" in e for e in d.field_errors("password1"))
    d.submit("signup", password1=PASSWORD, password2=PASSWORD, slug="demo-taken-" + unique)
    assert d.path == "/app/"  # now valid: the form kept the other fields
    with committed():
        from tenants.models import Tenant

        assert Tenant.objects.filter(slug="demo-taken-" + unique).exists()
        assert not Tenant.objects.filter(slug=f"x-{unique}").exists()


def test_invite_a_colleague_who_joins_and_gets_a_new_role(new_dashboard, mail_dir, unique):
    owner = new_dashboard()
    _signup(owner, unique)
    owner.nav("Members")
    colleague_email = f"col-{unique}@firm.test"
    owner.submit("invite", email=colleague_email, role="viewer")
    assert f"Invitation e-mailed to {colleague_email}" in owner.messages()
    link = owner.page.locator("#invite-link-value").inner_text().strip()
    assert "/accounts/invite/" in link
    assert any(link in text for text in mail_texts(mail_dir))  # the same link was e-mailed
    assert owner.page.locator(f'[data-invitation="{colleague_email}"]').is_visible()

    colleague = new_dashboard()
    colleague.page.goto(link)
    colleague.submit("invitation", full_name="Col League", password1=PASSWORD, password2=PASSWORD)
    assert colleague.path == "/app/" and "joined as viewer" in colleague.messages()
    assert colleague.page.locator("[data-role]").inner_text() == "viewer"

    owner.goto("/app/members/")
    row = owner.page.locator(f'[data-member="{colleague_email}"]')
    row.locator("[data-role-select]").select_option("analyst")
    owner.page.get_by_text(f"{colleague_email} is now analyst").wait_for()

    colleague.goto("/app/members/")
    assert colleague.page.locator("[data-role]").inner_text() == "analyst"

    expired = new_dashboard()  # the link works once
    expired.page.goto(link)
    assert expired.page.locator('[data-invitation-error="invitation_used"]').is_visible()


def test_viewer_sees_no_admin_actions(new_dashboard, committed, unique):
    with committed():
        from accounts.models import User
        from tenants.models import Membership, Role
        from tenants.services import tenant_provision

        tenant, _ = tenant_provision(
            slug=f"view-{unique}", owner_email=f"own-{unique}@firm.test", owner_password=PASSWORD
        )
        viewer = User.objects.create_user(email=f"viewer-{unique}@firm.test", password=PASSWORD)
        Membership.objects.create(user=viewer, tenant=tenant, role=Role.VIEWER)

    d = new_dashboard()
    d.login(viewer.email, PASSWORD)
    assert d.page.get_by_role("link", name="Create an API key").count() == 0
    d.nav("API keys")
    assert d.page.locator('form[data-form="api-key"]').count() == 0
    assert d.page.locator("[data-revoke]").count() == 0
    assert "Ask an admin" in d.page.content() or "Admins and owners" in d.page.content()
    d.nav("Members")
    for hook in ('form[data-form="invite"]', "[data-role-select]", "[data-remove]"):
        assert d.page.locator(hook).count() == 0, hook
    assert d.page.locator("[data-leave]").count() == 1  # one may always leave


def test_demo_owner_from_demo_json_logs_in(dashboard, committed, tmp_path):
    with committed(), override_settings(DATA_DIR=tmp_path):
        call_command("demo_setup")
    demo = json.loads((tmp_path / "demo.json").read_text())
    dashboard.login(demo["email"], demo["password"])
    assert dashboard.path == "/app/"
    assert dashboard.page.locator("h1").inner_text() == "Demo Trading"


def test_main_pages_fit_desktop_and_phone_widths(new_dashboard, unique):
    owner = new_dashboard()
    _signup(owner, unique)
    cookies = owner.page.context.cookies()
    pages = [
        "/app/",
        "/app/api-keys/",
        "/app/members/",
        "/accounts/profile/",
        "/app/tenants/new/",
        "/app/area/models/",
        "/app/data/",
        "/app/features/",
        "/app/decisions/weights/",
        "/app/positions/",
        "/app/flows/",
    ]
    for viewport in (DESKTOP, PHONE):
        d = new_dashboard(viewport)
        d.page.context.add_cookies(cookies)
        for path in pages:
            d.goto(path)
            assert d.horizontal_overflow() <= 0, (viewport, path)
        anon = new_dashboard(viewport)
        for path in ("/accounts/login/", "/accounts/signup/", "/accounts/password-reset/"):
            anon.goto(path)
            assert anon.horizontal_overflow() <= 0, (viewport, path)
    # at phone width the sidebar is behind the menu button and still navigates
    phone = new_dashboard(PHONE)
    phone.page.context.add_cookies(cookies)
    phone.goto("/app/")
    assert not phone.page.locator("nav.sidebar").get_by_role("link", name="Members").is_visible()
    phone.nav("Members")
    assert phone.path == "/app/members/"


def test_login_throttle_and_csrf_failure_say_what_to_do(dashboard, committed, unique):
    d = dashboard
    d.goto("/accounts/login/")
    for _ in range(5):
        d.submit("login", email=f"nobody-{unique}@firm.test", password="wrong-password")
        assert d.form_errors() == "E-mail or password is wrong."
    d.submit("login", email=f"nobody-{unique}@firm.test", password="wrong-password")
    assert "Too many failed log-ins" in d.form_errors()
    d.page.context.clear_cookies()  # the CSRF cookie is gone: the form is stale
    d.submit("login", email=f"nobody-{unique}@firm.test", password="wrong-password")
    assert d.page.locator("[data-csrf-failure]").is_visible()
    assert re.search(r"reload the page", d.page.content())
