"""Account pages over HTTP (Django's test client): sign-up, log in/out, throttling, password reset,
invitation links, profile, CSRF failures."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import Invitation, User
from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import Membership, Role, Tenant
from tests.conftest import PASSWORD, tenant_schema_exists

pytestmark = pytest.mark.django_db

SIGNUP = {
    "full_name": "Ada Lovelace",
    "email": "ada@engine.test",
    "password1": PASSWORD,
    "password2": PASSWORD,
    "name": "Analytical Engine",
    "slug": "engine",
    "plan": "pro",
}


def _html(r) -> str:
    return r.content.decode()


def test_signup_page_lists_plans():
    r = Client().get("/accounts/signup/")
    assert r.status_code == 200
    for plan in ("free", "pro", "enterprise"):
        assert f'value="{plan}"' in _html(r)


def test_signup_creates_tenant_logs_in_and_selects_it():
    c = Client()
    r = c.post("/accounts/signup/", SIGNUP)
    assert r.status_code == 302 and r["Location"] == "/app/"
    tenant = Tenant.objects.get(slug="engine")
    assert c.session[SESSION_TENANT_KEY] == tenant.pk
    page = c.get("/app/")
    assert page.status_code == 200 and "Analytical Engine" in _html(page) and "Welcome!" in _html(page)


@pytest.mark.parametrize(
    "change, field, text",
    [
        ({"password2": "something-else-entirely"}, "password2", "don't match"),
        ({"password1": "short", "password2": "short"}, "password1", "too short"),
        ({"password1": "password1234", "password2": "password1234"}, "password1", "too common"),
        ({"email": "owner@alpha.test"}, "email", "already exists"),
        ({"slug": "alpha"}, "slug", "already exists"),
        ({"slug": "admin"}, "slug", "reserved"),
        ({"email": "nope"}, "email", "valid email"),
        ({"plan": "platinum"}, "plan", "valid choice"),
    ],
)
def test_signup_bad_input_shows_field_errors_and_creates_nothing(alpha, change, field, text):
    before = (User.objects.count(), Tenant.objects.count())
    r = Client().post("/accounts/signup/", {**SIGNUP, **change})
    assert r.status_code == 400
    errors = re.search(rf'data-field-errors="{field}">(.*?)</ul>', _html(r), re.S)
    assert errors and text in errors.group(1).replace("&#x27;", "'")
    assert (User.objects.count(), Tenant.objects.count()) == before
    assert not tenant_schema_exists("t_engine")


def test_login_logout_and_next(alpha):
    c = Client()
    r = c.post("/accounts/login/", {"email": "Viewer@Alpha.test", "password": PASSWORD, "next": "/app/members/"})
    assert r.status_code == 302 and r["Location"] == "/app/members/"
    assert c.session[SESSION_TENANT_KEY] == alpha.tenant.pk
    assert c.get("/accounts/logout/").status_code == 405  # logging out is a POST
    r = c.post("/accounts/logout/")
    assert r.status_code == 302 and c.get("/app/").status_code == 302


def test_login_ignores_an_offsite_next(alpha):
    r = Client().post(
        "/accounts/login/", {"email": "viewer@alpha.test", "password": PASSWORD, "next": "https://evil.test/"}
    )
    assert r["Location"] == "/app/"


def test_password_reset_round_trip(alpha):
    c = Client()
    r = c.post("/accounts/password-reset/", {"email": "analyst@alpha.test"})
    assert r.status_code == 302 and len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    r = c.get(link, follow=True)  # Django swaps the token into the session and redirects
    assert r.status_code == 200 and "new_password1" in _html(r)
    form_url = r.redirect_chain[-1][0]
    r = c.post(form_url, {"new_password1": "brand-new-pass-42", "new_password2": "different-pass-42"})
    assert r.status_code == 200 and "match" in _html(r).replace("’", "'")
    assert User.objects.get(email="analyst@alpha.test").check_password(PASSWORD)
    r = c.post(form_url, {"new_password1": "brand-new-pass-42", "new_password2": "brand-new-pass-42"})
    assert r.status_code == 302
    assert User.objects.get(email="analyst@alpha.test").check_password("brand-new-pass-42")
    assert "no longer valid" in _html(Client().get(link, follow=True))  # the link works once


def test_password_reset_for_unknown_email_looks_the_same():
    r = Client().post("/accounts/password-reset/", {"email": "nobody@nowhere.test"})
    assert r.status_code == 302 and len(mail.outbox) == 0


def _invite(fx, email="colleague@ext.test", role=Role.ANALYST):
    _, token = services.invitation_create(tenant=fx.tenant, email=email, role=role, invited_by=fx.users[Role.OWNER])
    return f"/accounts/invite/{token}/"


def test_invitation_link_creates_account_and_joins(alpha):
    url = _invite(alpha)
    c = Client()
    page = c.get(url)
    assert page.status_code == 200 and "Create account and join" in _html(page)
    r = c.post(url, {"full_name": "Col League", "password1": PASSWORD, "password2": "mismatch-pass-99"})
    assert r.status_code == 400 and not User.objects.filter(email="colleague@ext.test").exists()
    r = c.post(url, {"full_name": "Col League", "password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 302 and c.session[SESSION_TENANT_KEY] == alpha.tenant.pk
    assert Membership.objects.get(user__email="colleague@ext.test").role == Role.ANALYST
    assert Client().get(url).status_code == 410  # used


def test_invitation_for_existing_account_asks_to_log_in_then_accepts(alpha, beta):
    url = _invite(alpha, email="viewer@beta.test", role=Role.VIEWER)
    anon = Client().get(url)
    assert "Log in to accept" in _html(anon)
    c = Client()
    c.force_login(beta.users[Role.VIEWER])
    assert "Accept and join" in _html(c.get(url))
    r = c.post(url)
    assert r.status_code == 302 and Membership.objects.filter(tenant=alpha.tenant, user=beta.users["viewer"]).exists()


def test_invitation_opened_by_another_logged_in_user_is_refused(alpha, beta):
    url = _invite(alpha, email="someone@ext.test")
    c = Client()
    c.force_login(beta.users[Role.OWNER])
    assert "Log out, then open the invitation link again" in _html(c.get(url))
    assert c.post(url).status_code == 403
    assert not Membership.objects.filter(tenant=alpha.tenant, user=beta.users[Role.OWNER]).exists()


def test_expired_invitation_link_says_what_to_do(alpha):
    url = _invite(alpha)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(days=1))
    r = Client().post(url, {"password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 410 and "Ask an admin" in _html(r)
    assert not User.objects.filter(email="colleague@ext.test").exists()


def test_profile_updates_name_and_password(alpha):
    c = Client()
    user = alpha.users[Role.ANALYST]
    c.force_login(user)
    assert c.post("/accounts/profile/", {"action": "profile", "full_name": "Ana Lyst"}).status_code == 302
    user.refresh_from_db()
    assert user.get_full_name() == "Ana Lyst"
    r = c.post(
        "/accounts/profile/",
        {"action": "password", "old_password": "wrong", "new_password1": "x", "new_password2": "x"},
    )
    assert r.status_code == 400 and "old password was entered incorrectly" in _html(r)
    r = c.post(
        "/accounts/profile/",
        {
            "action": "password",
            "old_password": PASSWORD,
            "new_password1": "another-good-pass-7",
            "new_password2": "another-good-pass-7",
        },
    )
    assert r.status_code == 302 and c.get("/accounts/profile/").status_code == 200  # still logged in


def test_csrf_failure_shows_a_page_that_says_what_to_do():
    r = Client(enforce_csrf_checks=True).post("/accounts/login/", {"email": "a@b.test", "password": "x"})
    assert r.status_code == 403 and "This form expired" in _html(r) and "reload the page" in _html(r)


def test_unknown_dashboard_page_is_an_html_404_and_api_stays_json():
    r = Client().get("/app/nowhere/", HTTP_ACCEPT="text/html")
    assert r.status_code == 404 and "Page not found" in _html(r)
    r = Client().get("/api/v1/nowhere/", HTTP_ACCEPT="text/html")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
