"""Dashboard path: a logged-in person's active tenant lives in the session on the main host."""

import pytest
from django.test import Client

from accounts.models import User
from tenants.middleware import SESSION_TENANT_KEY

pytestmark = pytest.mark.django_db


def _session_client(user, tenant_id):
    c = Client(enforce_csrf_checks=True)
    c.force_login(user)
    session = c.session
    session[SESSION_TENANT_KEY] = tenant_id
    session.save()
    return c


def test_member_reads_active_tenant_through_session(alpha):
    r = _session_client(alpha.users["viewer"], alpha.tenant.pk).get("/api/v1/tenant/")
    assert r.status_code == 200 and r.json()["slug"] == "alpha"


def test_session_pointing_at_a_tenant_the_user_is_not_in_is_404(alpha, beta):
    r = _session_client(alpha.users["owner"], beta.tenant.pk).get("/api/v1/tenant/")
    assert r.status_code == 404 and "beta" not in r.content.decode()


def test_session_write_without_csrf_token_is_403(alpha):
    r = _session_client(alpha.users["owner"], alpha.tenant.pk).post(
        "/api/v1/api-keys/", {"name": "x", "scopes": ["read"]}, content_type="application/json"
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in r.json()["error"]["message"]


def test_user_without_any_membership_gets_404(alpha):
    loner = User.objects.create_user(email="loner@nowhere.test", password="x-very-long-pass")
    assert _session_client(loner, alpha.tenant.pk).get("/api/v1/tenant/").status_code == 404
