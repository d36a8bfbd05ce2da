"""Tenant endpoint and API keys: happy path, bad input, wrong role/scope (403), other tenant (404)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from compliance.models import AuditRecord
from tenants.models import ApiKey
from tests.conftest import error_code

pytestmark = pytest.mark.django_db


class TestTenantDetail:
    def test_given_alpha_key_when_get_tenant_then_alpha_with_plan_and_usage(self, alpha):
        r = alpha.client().get("/api/v1/tenant/")
        assert r.status_code == 200
        body = r.json()
        assert body["slug"] == "alpha" and body["plan"] == "pro" and body["schema_name"] == "t_alpha"
        assert body["limits"]["decisions_per_day"] == 20000
        assert set(body["usage"]) == {"decisions_per_day", "training_jobs_per_month", "backtest_bars_per_month"}
        assert body["usage"]["decisions_per_day"]["used"] == 0 and body["usage"]["decisions_per_day"]["limit"]

    def test_each_tenant_sees_only_itself(self, alpha, beta):
        assert alpha.client().get("/api/v1/tenant/").json()["slug"] == "alpha"
        assert beta.client().get("/api/v1/tenant/").json()["slug"] == "beta"

    def test_without_credentials_on_main_host_tenant_url_is_404(self, alpha):
        r = APIClient().get("/api/v1/tenant/")
        assert r.status_code == 404 and error_code(r) == "not_found"

    def test_on_tenant_host_without_credentials_is_401(self, alpha):
        r = APIClient().get("/api/v1/tenant/", HTTP_HOST="alpha.localhost")
        assert r.status_code == 401 and error_code(r) == "not_authenticated"

    def test_alpha_key_on_beta_host_is_404_never_beta_data(self, alpha, beta):
        r = alpha.client().get("/api/v1/tenant/", HTTP_HOST="beta.localhost")
        assert r.status_code == 404 and "beta" not in r.content.decode()

    def test_unknown_malformed_and_revoked_keys_are_401(self, alpha):
        for bad in ("nope", "ati_000000000000_secret", alpha.key[:-2] + "xx"):
            c = APIClient()
            c.credentials(HTTP_AUTHORIZATION=f"Api-Key {bad}")
            r = c.get("/api/v1/tenant/")
            assert r.status_code == 401 and error_code(r) == "invalid_api_key", bad

    def test_malformed_jwt_is_401(self, alpha):
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
        r = c.get("/api/v1/tenant/")
        assert r.status_code == 401 and error_code(r) == "invalid_token"

    def test_jwt_of_each_role_can_read(self, alpha):
        for role in ("owner", "admin", "analyst", "viewer"):
            assert alpha.client(role=role).get("/api/v1/tenant/").status_code == 200

    def test_jwt_for_alpha_user_claiming_beta_is_404(self, alpha, beta):
        from rest_framework_simplejwt.tokens import RefreshToken

        token = RefreshToken.for_user(alpha.users["owner"]).access_token
        token["tenant_id"] = beta.tenant.pk
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        r = c.get("/api/v1/tenant/")
        assert r.status_code == 404 and "beta" not in r.content.decode()

    def test_request_id_is_echoed_or_minted(self, alpha):
        r = alpha.client().get("/api/v1/tenant/", HTTP_X_REQUEST_ID="abc12345-req")
        assert r["X-Request-ID"] == "abc12345-req"
        assert len(alpha.client().get("/api/v1/tenant/")["X-Request-ID"]) == 32


class TestApiKeys:
    def test_admin_creates_key_shown_once_then_lists_without_secret(self, alpha):
        c = alpha.client(role="admin")
        r = c.post("/api/v1/api-keys/", {"name": "bot", "scopes": ["read", "trade"]}, format="json")
        assert r.status_code == 201 and r["Cache-Control"] == "no-store", r.content
        raw = r.json()["key"]
        assert raw.startswith("ati_") and r.json()["scopes"] == ["read", "trade"]
        stored = ApiKey.objects.get(pk=r.json()["id"])
        assert raw not in stored.hashed_key and stored.hashed_key != raw
        listing = c.get("/api/v1/api-keys/").json()["results"]
        assert any(k["id"] == stored.pk for k in listing)
        assert all("key" not in k and "hashed_key" not in k for k in listing)
        # the new key works and is scoped to alpha
        c2 = APIClient()
        c2.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        assert c2.get("/api/v1/tenant/").json()["slug"] == "alpha"
        with schema_context("t_alpha"):
            assert AuditRecord.objects.filter(action="api_key.created", object_id=str(stored.pk)).exists()

    @pytest.mark.parametrize(
        "payload,field",
        [
            ({"name": "", "scopes": ["read"]}, "name"),
            ({"name": "x", "scopes": []}, "scopes"),
            ({"name": "x", "scopes": ["root"]}, "scopes"),
            ({"scopes": ["read"]}, "name"),
        ],
    )
    def test_bad_input_is_400_and_writes_nothing(self, alpha, payload, field):
        before = ApiKey.objects.count()
        r = alpha.client(role="owner").post("/api/v1/api-keys/", payload, format="json")
        assert r.status_code == 400 and error_code(r) == "invalid_input"
        assert field in r.json()["error"]["details"]
        assert ApiKey.objects.count() == before

    def test_malformed_json_is_400(self, alpha):
        r = alpha.client().post("/api/v1/api-keys/", "{not json", content_type="application/json")
        assert r.status_code == 400 and error_code(r) == "malformed_request"

    @pytest.mark.parametrize("role", ["analyst", "viewer"])
    def test_roles_below_admin_get_403(self, alpha, role):
        c = alpha.client(role=role)
        r = c.post("/api/v1/api-keys/", {"name": "x", "scopes": ["read"]}, format="json")
        assert r.status_code == 403 and error_code(r) == "insufficient_role"
        assert c.get("/api/v1/api-keys/").status_code == 403

    def test_read_scope_key_cannot_manage_keys(self, alpha):
        r = alpha.client(scope="read").get("/api/v1/api-keys/")
        assert r.status_code == 403 and error_code(r) == "insufficient_scope"
        assert r.json()["error"]["details"]["required_scope"] == "admin"

    def test_revoke_stops_the_key_at_once(self, alpha):
        c = alpha.client(role="owner")
        created = c.post("/api/v1/api-keys/", {"name": "temp", "scopes": ["read"]}, format="json").json()
        user = APIClient()
        user.credentials(HTTP_AUTHORIZATION=f"Api-Key {created['key']}")
        assert user.get("/api/v1/tenant/").status_code == 200
        r = c.delete(f"/api/v1/api-keys/{created['id']}/")
        assert r.status_code == 200 and r.json()["is_active"] is False
        # on_commit does not fire inside the test transaction; the revoking process drops its cache
        from tenants import resolution

        resolution.invalidate()
        r = user.get("/api/v1/tenant/")
        assert r.status_code == 401 and error_code(r) == "invalid_api_key"

    def test_other_tenants_key_id_is_404(self, alpha, beta):
        beta_key = ApiKey.objects.filter(tenant=beta.tenant).first()
        c = alpha.client(role="owner")
        assert c.get(f"/api/v1/api-keys/{beta_key.pk}/").status_code == 404
        r = c.delete(f"/api/v1/api-keys/{beta_key.pk}/")
        assert r.status_code == 404 and error_code(r) == "not_found"
        beta_key.refresh_from_db()
        assert beta_key.revoked_at is None

    def test_list_is_paginated_with_constant_queries(self, alpha):
        c = alpha.client(role="owner")
        for i in range(3):
            c.post("/api/v1/api-keys/", {"name": f"k{i}", "scopes": ["read"]}, format="json")
        with CaptureQueriesContext(connection) as few:
            c.get("/api/v1/api-keys/?page_size=2")
        for i in range(3, 6):
            c.post("/api/v1/api-keys/", {"name": f"k{i}", "scopes": ["read"]}, format="json")
        with CaptureQueriesContext(connection) as more:
            r = c.get("/api/v1/api-keys/?page_size=50")
        assert len(more) == len(few)
        assert r.json()["results"][0]["name"] == "k5"  # newest first

    def test_plan_caps_active_keys(self, beta):
        # beta is on the free plan: 3 active keys; the fixture made 4 (provisioning + 3 scoped)
        r = beta.client(role="owner").post("/api/v1/api-keys/", {"name": "x", "scopes": ["read"]}, format="json")
        assert r.status_code == 429 and error_code(r) == "plan_limit_exceeded"
        assert r.json()["error"]["details"]["limit"] == 3


class TestJwtToken:
    def test_login_returns_tenant_scoped_token(self, alpha):
        from tests.conftest import PASSWORD

        r = APIClient().post(
            "/api/v1/auth/token/",
            {"email": "analyst@alpha.test", "password": PASSWORD, "tenant": "alpha"},
            format="json",
        )
        assert r.status_code == 200 and r.json()["role"] == "analyst"
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['access']}")
        assert c.get("/api/v1/tenant/").json()["slug"] == "alpha"

    def test_wrong_password_or_foreign_tenant_is_401(self, alpha, beta):
        from tests.conftest import PASSWORD

        for body in (
            {"email": "analyst@alpha.test", "password": "wrong-pass", "tenant": "alpha"},
            {"email": "analyst@alpha.test", "password": PASSWORD, "tenant": "beta"},
        ):
            r = APIClient().post("/api/v1/auth/token/", body, format="json")
            assert r.status_code == 401 and error_code(r) == "invalid_credentials"

    def test_missing_fields_is_400(self, db):
        r = APIClient().post("/api/v1/auth/token/", {"email": "x"}, format="json")
        assert r.status_code == 400 and set(r.json()["error"]["details"]) >= {"email", "password", "tenant"}
