"""Members and invitations over REST: what the walk in tests/api can't know (the rules)."""

import pytest
from django.core import mail

from accounts.models import Invitation
from tenants.models import Membership, Role
from tests.conftest import PASSWORD, error_code

pytestmark = pytest.mark.django_db


def _member(fx, role):
    return Membership.objects.get(tenant=fx.tenant, user=fx.users[role])


def test_members_list_shows_roles_of_this_tenant_only(alpha):
    r = alpha.client(scope="read").get("/api/v1/members/")
    assert r.status_code == 200
    emails = {m["email"]: m["role"] for m in r.json()["results"]}
    assert emails == {f"{role}@alpha.test": role for role in ("owner", "admin", "analyst", "viewer")}


def test_role_change_over_the_api(alpha):
    m = _member(alpha, Role.VIEWER)
    r = alpha.client(role=Role.ADMIN).patch(f"/api/v1/members/{m.pk}/", {"role": "analyst"}, format="json")
    assert r.status_code == 200 and r.json()["role"] == "analyst"
    r = alpha.client(role=Role.ADMIN).patch(f"/api/v1/members/{m.pk}/", {"role": "owner"}, format="json")
    assert r.status_code == 403 and error_code(r) == "owner_required"
    r = alpha.client(role=Role.OWNER).patch(f"/api/v1/members/{m.pk}/", {"role": "god"}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    assert Membership.objects.get(pk=m.pk).role == "analyst"


def test_last_owner_is_kept_over_the_api(alpha):
    owner = _member(alpha, Role.OWNER)
    c = alpha.client(role=Role.OWNER)
    r = c.patch(f"/api/v1/members/{owner.pk}/", {"role": "admin"}, format="json")
    assert r.status_code == 409 and error_code(r) == "last_owner"
    r = c.delete(f"/api/v1/members/{owner.pk}/")
    assert r.status_code == 409 and error_code(r) == "last_owner"
    r = alpha.client().delete(f"/api/v1/members/{owner.pk}/")  # an admin-scope key acts as admin
    assert r.status_code == 403 and error_code(r) == "owner_required"
    assert Membership.objects.filter(pk=owner.pk, role="owner").exists()


def test_admin_key_removes_a_member(alpha):
    m = _member(alpha, Role.ANALYST)
    assert alpha.client(scope="admin").delete(f"/api/v1/members/{m.pk}/").status_code == 204
    assert not Membership.objects.filter(pk=m.pk).exists()


def test_invite_over_the_api_returns_the_link_once(alpha, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = alpha.client().post("/api/v1/invitations/", {"email": "Trader@Ext.test", "role": "analyst"}, format="json")
    assert r.status_code == 201 and r["Cache-Control"] == "no-store"
    body = r.json()
    assert body["email"] == "trader@ext.test" and body["role"] == "analyst" and body["invited_by"] is None
    assert body["accept_url"].startswith("http://testserver/accounts/invite/")
    assert body["accept_url"] in mail.outbox[0].body and "An admin of" in mail.outbox[0].body
    listed = alpha.client().get("/api/v1/invitations/").json()["results"]
    assert [i["email"] for i in listed] == ["trader@ext.test"] and "accept_url" not in listed[0]
    r = alpha.client().delete(f"/api/v1/invitations/{body['id']}/")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert alpha.client().get("/api/v1/invitations/").json()["results"] == []


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"email": "viewer@alpha.test"}, 409, "already_member"),
        ({"email": "not-an-email"}, 400, "invalid_input"),
        ({"email": "x@ext.test", "role": "owner"}, 403, "owner_required"),  # a key acts as admin
    ],
)
def test_invite_bad_input_writes_nothing(alpha, body, status, code):
    r = alpha.client().post("/api/v1/invitations/", body, format="json")
    assert r.status_code == status and error_code(r) == code
    assert not Invitation.objects.filter(tenant=alpha.tenant).exists()


def test_invite_beyond_the_plan_cap(beta):
    r = beta.client(role=Role.OWNER).post("/api/v1/invitations/", {"email": "x@ext.test"}, format="json")
    assert r.status_code == 429 and error_code(r) == "plan_limit_exceeded"


def _pair(fx, role=Role.ANALYST):
    from rest_framework.test import APIClient

    r = APIClient().post(
        "/api/v1/auth/token/",
        {"email": fx.users[role].email, "password": PASSWORD, "tenant": fx.slug},
        format="json",
    )
    assert r.status_code == 200
    return r.json()


def test_refresh_gives_a_new_access_token_for_the_same_tenant(alpha):
    from rest_framework.test import APIClient

    pair = _pair(alpha)
    r = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert r.status_code == 200
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['access']}")
    assert c.get("/api/v1/tenant/").json()["slug"] == "alpha"


def test_refresh_stops_when_the_membership_ends_or_the_token_is_bad(alpha):
    from rest_framework.test import APIClient

    pair = _pair(alpha)
    Membership.objects.filter(tenant=alpha.tenant, user=alpha.users[Role.ANALYST]).delete()
    r = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert r.status_code == 401 and error_code(r) == "invalid_token"
    r = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": "garbage"}, format="json")
    assert r.status_code == 401 and error_code(r) == "invalid_token"
    r = APIClient().post("/api/v1/auth/token/refresh/", {}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
