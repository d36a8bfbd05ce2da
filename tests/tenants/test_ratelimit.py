"""API rate limits per tenant, API key and user (GCRA in one Redis script): headers on every
response, 429 with Retry-After naming the bucket, a refused request consumes nothing, buckets are
shared by processes, and a plan change applies to the next request."""

import json
import os
import subprocess
import sys

import pytest

from tenants import ratelimit, resolution
from tenants.models import Plan
from tenants.services import tenant_plan_change
from tests.conftest import error_code, service_env

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenant/"


def _limits(fx, **caps):
    plan = Plan.objects.get(pk=fx.tenant.plan_id)
    plan.limits = {**plan.limits, **caps}
    plan.save()
    fx.tenant.plan = plan
    resolution.reset_local()


def _client_with(key):
    from rest_framework.test import APIClient

    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return c


def test_every_response_says_the_limit_and_the_key_bucket_refuses_past_it(beta):
    _limits(beta, api_requests_per_minute=100, api_requests_per_minute_per_key=5)
    client = beta.client()
    remaining = []
    for _ in range(5):
        r = client.get(URL)
        assert r.status_code == 200
        assert r["X-RateLimit-Limit"] == "5" and 0 < int(r["X-RateLimit-Reset"]) <= 60
        remaining.append(int(r["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    r = client.get(URL)
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    body = r.json()["error"]
    assert body["details"]["scope"] == "key" and body["details"]["limit"] == 5
    assert 1 <= int(r["Retry-After"]) <= 12 and r["X-RateLimit-Remaining"] == "0"
    assert "Retry in" in body["message"] and "per minute" in body["message"]
    # another key of the same tenant has its own bucket (the tenant's still has room)
    other = _client_with(beta.scoped_keys["read"])
    assert other.get(URL).status_code == 200


def test_the_tenant_bucket_spans_keys_and_a_refused_request_consumes_nothing(alpha, beta):
    _limits(beta, api_requests_per_minute=3, api_requests_per_minute_per_key=100)
    first, second = beta.client(), _client_with(beta.scoped_keys["read"])
    assert [first.get(URL).status_code, second.get(URL).status_code, first.get(URL).status_code] == [200] * 3
    refused = second.get(URL)
    assert refused.status_code == 429 and refused.json()["error"]["details"]["scope"] == "tenant"
    # the refused request took nothing from the key bucket it passed: the tenant bucket is the one empty
    assert ratelimit.rate_check(beta.tenant, key_id=None).allowed is False
    # another tenant is not affected
    assert alpha.client().get(URL).status_code == 200


def test_a_user_bucket_applies_to_a_persons_token(alpha):
    _limits(alpha, api_requests_per_minute_per_user=2)
    viewer = alpha.client(role="viewer")
    assert [viewer.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    r = viewer.get(URL)
    assert r.json()["error"]["details"]["scope"] == "user"
    assert alpha.client(role="owner").get(URL).status_code == 200  # another person


def test_buckets_are_shared_by_processes(beta):
    _limits(beta, api_requests_per_minute=100, api_requests_per_minute_per_key=4)
    assert beta.client().get(URL).status_code == 200  # one request here
    key_id = resolution.api_key_resolve(beta.key).id
    code = (
        "import django, json; django.setup()\n"
        "from tenants.models import Tenant; from tenants import ratelimit\n"
        f"t = Tenant.objects.select_related('plan').get(pk={beta.tenant.pk})\n"
        "t.plan.limits = dict(t.plan.limits, api_requests_per_minute=100, api_requests_per_minute_per_key=4)\n"
        f"print(json.dumps([ratelimit.rate_check(t, key_id={key_id}).allowed for _ in range(2)]))\n"
    )
    env = {**os.environ, **service_env(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, True]  # 2 more: 3 of 4 used
    r = beta.client().get(URL)
    assert r.status_code == 200 and r["X-RateLimit-Remaining"] == "0"
    assert beta.client().get(URL).status_code == 429


def test_a_plan_change_applies_to_the_next_request(beta):
    before = beta.client().get(URL)
    free = Plan.objects.get(code="free").limits["api_requests_per_minute_per_key"]
    assert before["X-RateLimit-Limit"] == str(free)
    tenant_plan_change(tenant=beta.tenant, plan="pro", actor=None, reason="upgrade")
    resolution.reset_local()  # what the commit's invalidation does (the test's transaction never commits)
    after = beta.client().get(URL)
    pro = Plan.objects.get(code="pro").limits["api_requests_per_minute_per_key"]
    assert after.json()["plan"] == "pro" and after["X-RateLimit-Limit"] == str(pro)


def test_pages_and_public_endpoints_are_not_rate_limited(beta):
    _limits(beta, api_requests_per_minute=1, api_requests_per_minute_per_key=1)
    assert "X-RateLimit-Limit" not in beta.client().get("/health")
