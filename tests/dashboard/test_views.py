"""Dashboard pages over HTTP: access by role, API keys, members, tenant switching, the JWT for
scripts. Each page: happy path, bad input (field errors, nothing written), wrong role (403),
other tenant (404)."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Invitation
from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import ApiKey, Membership, Role, Tenant

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _client(fx, role, tenant=None) -> Client:
    c = Client()
    c.force_login(fx.users[role])
    s = c.session
    s[SESSION_TENANT_KEY] = (tenant or fx.tenant).pk
    s.save()
    return c


def _html(r) -> str:
    return r.content.decode()


# --- access ------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(alpha):
    r = Client().get("/app/api-keys/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=/app/api-keys/")


def test_first_visit_picks_the_first_tenant(alpha):
    c = Client()
    c.force_login(alpha.users[Role.VIEWER])
    r = c.get("/app/members/")
    assert r.status_code == 302 and r["Location"] == "/app/members/"
    assert c.session[SESSION_TENANT_KEY] == alpha.tenant.pk


def test_person_without_tenant_is_asked_to_create_one(django_user_model):
    c = Client()
    c.force_login(django_user_model.objects.create_user(email="lone@x.test", password="x-long-password-1"))
    r = c.get("/app/")
    assert r["Location"] == "/app/tenants/new/"
    assert "Create your first tenant" in _html(c.get("/app/tenants/new/"))


def test_session_pointing_at_someone_elses_tenant_never_shows_it(alpha, beta):
    c = _client(alpha, Role.OWNER, tenant=beta.tenant)
    r = c.get("/app/members/")
    assert r.status_code == 302 and SESSION_TENANT_KEY not in c.session
    assert "beta.test" not in _html(c.get("/app/members/", follow=True))


def test_every_area_page_renders_with_its_next_step(alpha):
    from dashboard.navigation import AREAS

    c = _client(alpha, Role.VIEWER)
    overview = _html(c.get("/app/"))
    for area in AREAS:
        assert f'data-placeholder="{area.key}"' in overview
        r = c.get(f"/app/area/{area.key}/")
        assert r.status_code == 200 and area.next_step in _html(r)
    assert c.get("/app/area/nope/").status_code == 404


# --- API keys ----------------------------------------------------------------------------------


def test_admin_creates_key_shown_once_and_it_works_with_the_api(alpha):
    c = _client(alpha, Role.ADMIN)
    r = c.post("/app/api-keys/", {"name": "trading bot", "scopes": ["read", "trade"]}, **HX)
    assert r.status_code == 201
    raw = r.content.decode().split("data-raw-key>")[1].split("<")[0]
    key = ApiKey.objects.get(tenant=alpha.tenant, name="trading bot")
    assert (
        raw.startswith(f"ati_{key.prefix}")
        and key.scopes == ["read", "trade"]
        and key.created_by == alpha.users["admin"]
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert api.get("/api/v1/tenant/").json()["slug"] == "alpha"
    page = _html(c.get("/app/api-keys/"))
    assert raw not in page and key.hashed_key not in page and "trading bot" in page


@pytest.mark.parametrize(
    "data, field, text",
    [({"name": "", "scopes": ["read"]}, "name", "required"), ({"name": "x"}, "scopes", "Pick at least one scope")],
)
def test_key_form_errors_write_nothing(alpha, data, field, text):
    c = _client(alpha, Role.ADMIN)
    before = ApiKey.objects.count()
    r = c.post("/app/api-keys/", data, **HX)
    assert r.status_code == 400 and f'data-field-errors="{field}"' in _html(r) and text in _html(r)
    assert ApiKey.objects.count() == before


def test_key_plan_cap_is_shown_on_the_form(beta):
    # beta (free plan: 3 keys) already holds 4 fixture keys
    r = _client(beta, Role.OWNER).post("/app/api-keys/", {"name": "one more", "scopes": ["read"]})
    assert r.status_code == 400 and "allows at most 3 api keys" in _html(r)


def test_viewer_sees_keys_but_no_admin_actions_and_cannot_create(alpha):
    c = _client(alpha, Role.VIEWER)
    page = _html(c.get("/app/api-keys/"))
    assert "data-keys" in page and 'data-form="api-key"' not in page and "data-revoke" not in page
    assert "Ask an admin" in page or "Admins and owners create" in page
    before = ApiKey.objects.count()
    assert c.post("/app/api-keys/", {"name": "sneaky", "scopes": ["admin"]}).status_code == 403
    key = ApiKey.objects.filter(tenant=alpha.tenant).first()
    assert c.post(f"/app/api-keys/{key.pk}/revoke/").status_code == 403
    assert ApiKey.objects.count() == before and ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_revoke_key_and_other_tenants_key_is_404(alpha, beta):
    from tenants.services import api_key_create

    key, raw = api_key_create(tenant=alpha.tenant, name="temp", scopes=["read"], created_by=alpha.users["owner"])
    c = _client(alpha, Role.ADMIN)
    r = c.post(f"/app/api-keys/{key.pk}/revoke/", **HX)
    assert r.status_code == 200 and "revoked" in _html(r)
    key.refresh_from_db()
    assert key.revoked_at is not None
    beta_key = ApiKey.objects.filter(tenant=beta.tenant).first()
    assert c.post(f"/app/api-keys/{beta_key.pk}/revoke/").status_code == 404
    assert ApiKey.objects.get(pk=beta_key.pk).revoked_at is None


# --- members -----------------------------------------------------------------------------------


def test_admin_invites_and_the_link_is_shown_once(alpha, django_capture_on_commit_callbacks):
    c = _client(alpha, Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/app/members/invite/", {"email": "new@ext.test", "role": "analyst"}, **HX)
    assert r.status_code == 201 and "http://testserver/accounts/invite/" in _html(r)
    assert Invitation.objects.get(tenant=alpha.tenant, email="new@ext.test").role == "analyst"
    assert "new@ext.test" in _html(c.get("/app/members/"))
    assert "/accounts/invite/" not in _html(c.get("/app/members/"))


@pytest.mark.parametrize(
    "data, text",
    [
        ({"email": "viewer@alpha.test", "role": "viewer"}, "already a member"),
        ({"email": "bad", "role": "viewer"}, "valid email"),
        ({"email": "x@ext.test", "role": "owner"}, "valid choice"),  # admins aren't offered owner
    ],
)
def test_invite_errors(alpha, data, text):
    r = _client(alpha, Role.ADMIN).post("/app/members/invite/", data, **HX)
    assert r.status_code == 400 and text in _html(r)
    assert not Invitation.objects.filter(tenant=alpha.tenant).exists()


def test_role_change_and_removal_from_the_members_page(alpha):
    c = _client(alpha, Role.OWNER)
    viewer = Membership.objects.get(tenant=alpha.tenant, user=alpha.users["viewer"])
    r = c.post(f"/app/members/{viewer.pk}/role/", {"role": "analyst"}, **HX)
    assert r.status_code == 200 and "viewer@alpha.test is now analyst" in _html(r)
    assert Membership.objects.get(pk=viewer.pk).role == "analyst"
    assert c.post(f"/app/members/{viewer.pk}/role/", {"role": "emperor"}, **HX).status_code == 400
    r = c.post(f"/app/members/{viewer.pk}/remove/", **HX)
    assert r.status_code == 200 and not Membership.objects.filter(pk=viewer.pk).exists()


def test_last_owner_cannot_leave_or_be_demoted_on_the_page(alpha):
    c = _client(alpha, Role.OWNER)
    owner = Membership.objects.get(tenant=alpha.tenant, user=alpha.users["owner"])
    r = c.post(f"/app/members/{owner.pk}/remove/", **HX)
    assert r.status_code == 409 and "last owner" in _html(r)
    r = c.post(f"/app/members/{owner.pk}/role/", {"role": "viewer"}, **HX)
    assert r.status_code == 409 and Membership.objects.get(pk=owner.pk).role == "owner"


def test_viewer_sees_members_without_admin_actions_and_cannot_act(alpha):
    c = _client(alpha, Role.VIEWER)
    page = _html(c.get("/app/members/"))
    assert "analyst@alpha.test" in page
    for hook in ('data-form="invite"', "data-role-select", "data-remove"):
        assert hook not in page
    analyst = Membership.objects.get(tenant=alpha.tenant, user=alpha.users["analyst"])
    assert c.post("/app/members/invite/", {"email": "x@ext.test", "role": "viewer"}).status_code == 403
    assert c.post(f"/app/members/{analyst.pk}/role/", {"role": "viewer"}).status_code == 403
    assert c.post(f"/app/members/{analyst.pk}/remove/").status_code == 403
    assert Membership.objects.get(pk=analyst.pk).role == "analyst"


def test_viewer_leaves_and_loses_the_tenant(alpha):
    c = _client(alpha, Role.VIEWER)
    me = Membership.objects.get(tenant=alpha.tenant, user=alpha.users["viewer"])
    r = c.post(f"/app/members/{me.pk}/remove/")
    assert r.status_code == 302 and r["Location"] == "/accounts/profile/"
    assert SESSION_TENANT_KEY not in c.session and c.get("/app/")["Location"] == "/app/tenants/new/"


def test_members_of_another_tenant_are_404(alpha, beta):
    c = _client(alpha, Role.OWNER)
    other = Membership.objects.get(tenant=beta.tenant, user=beta.users["viewer"])
    assert c.post(f"/app/members/{other.pk}/role/", {"role": "admin"}).status_code == 404
    assert c.post(f"/app/members/{other.pk}/remove/").status_code == 404
    inv = Invitation.objects.create(
        tenant=beta.tenant, email="z@ext.test", token_hash="0" * 64, expires_at="2100-01-01T00:00Z"
    )
    assert c.post(f"/app/invitations/{inv.pk}/revoke/").status_code == 404
    assert Membership.objects.get(pk=other.pk).role == "viewer"
    assert Invitation.objects.get(pk=inv.pk).revoked_at is None


# --- tenants -----------------------------------------------------------------------------------


def test_switch_tenant_only_to_ones_own(alpha, beta):
    Membership.objects.create(tenant=beta.tenant, user=alpha.users["owner"], role=Role.VIEWER)
    c = _client(alpha, Role.OWNER)
    page = _html(c.get("/app/"))
    assert 'id="tenant-switch"' in page and beta.tenant.name in page
    assert c.post("/app/tenants/switch/", {"tenant": beta.tenant.pk}).status_code == 302
    assert c.session[SESSION_TENANT_KEY] == beta.tenant.pk
    c2 = _client(alpha, Role.ADMIN)
    assert c2.post("/app/tenants/switch/", {"tenant": beta.tenant.pk}).status_code == 404
    assert c2.post("/app/tenants/switch/", {"tenant": "x"}).status_code == 404
    assert c2.session[SESSION_TENANT_KEY] == alpha.tenant.pk


def test_logged_in_person_creates_another_tenant(alpha):
    c = _client(alpha, Role.VIEWER)
    r = c.post("/app/tenants/new/", {"name": "Side Desk", "slug": "alpha", "plan": "free"})
    assert r.status_code == 400 and "already exists" in _html(r)
    r = c.post("/app/tenants/new/", {"name": "Side Desk", "slug": "side-desk", "plan": "free"})
    assert r.status_code == 302
    t = Tenant.objects.get(slug="side-desk")
    assert c.session[SESSION_TENANT_KEY] == t.pk
    assert Membership.objects.get(tenant=t).user == alpha.users["viewer"]


def test_dashboard_token_is_a_tenant_scoped_jwt(alpha, beta):
    c = _client(alpha, Role.ANALYST)
    assert c.get("/app/token/").status_code == 405
    body = c.post("/app/token/").json()
    assert body["tenant"] == "alpha" and body["role"] == "analyst"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert api.get("/api/v1/tenant/").json()["slug"] == "alpha"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}", HTTP_HOST="beta.localhost")
    assert api.get("/api/v1/tenant/").status_code == 404
