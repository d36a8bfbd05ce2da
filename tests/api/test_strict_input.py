"""What the API refuses instead of guessing (found by negative fuzzing): a body that is not a JSON
object, a number where a string is documented, a page size that is not a whole number in range, a
flag that is neither true nor false. An optional query parameter sent empty is left out."""

import pytest

from tenants.models import KillSwitch
from tests.conftest import error_code

pytestmark = pytest.mark.django_db


def test_a_body_must_be_a_json_object(alpha):
    c = alpha.client(role="admin")
    for raw in ("null", "[]", "3", '"stop"'):
        r = c.post("/api/v1/kill-switch/", raw, content_type="application/json")
        assert r.status_code == 400 and error_code(r) == "malformed_request", raw
        assert "JSON object" in r.json()["error"]["message"]
    assert not KillSwitch.objects.filter(tenant=alpha.tenant, lifted_at=None).exists()


def test_a_number_is_not_a_string(alpha):
    c = alpha.client(role="admin")
    r = c.post("/api/v1/kill-switch/", {"reason": -7318002152206827.0}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    assert "reason" in r.json()["error"]["details"]
    assert not KillSwitch.objects.filter(tenant=alpha.tenant, lifted_at=None).exists()
    assert c.post("/api/v1/kill-switch/", {"reason": "drill"}, format="json").status_code == 201


@pytest.mark.parametrize("size", ["false", "-3", "0", "2.5", "501", "abc"])
def test_page_size_is_a_whole_number_in_range(alpha, size):
    r = alpha.client().get(f"/api/v1/training-jobs/?page_size={size}")
    assert r.status_code == 400 and error_code(r) == "invalid_page_size"
    assert r.json()["error"]["details"]["max"] == 500


def test_page_size_in_range_or_empty_is_read(alpha):
    assert alpha.client().get("/api/v1/training-jobs/?page_size=500").status_code == 200
    assert alpha.client().get("/api/v1/training-jobs/?page_size=").status_code == 200


def test_flags_are_true_or_false_and_empty_is_left_out(alpha):
    c = alpha.client()
    for value in ("true", "FALSE", "1", "0", "yes", "off", ""):
        assert c.get(f"/api/v1/feature-sets/?latest={value}").status_code == 200, value
        assert c.get(f"/api/v1/model-alerts/?open={value}").status_code == 200, value
    for url in ("/api/v1/feature-sets/?latest=27130", "/api/v1/model-alerts/?open=maybe"):
        r = c.get(url)
        assert r.status_code == 400 and error_code(r) == "invalid_input", url


def test_the_document_says_empty_optional_query_parameters_are_allowed(client):
    doc = client.get("/api/schema/?format=json").json()
    params = [p for item in doc["paths"].values() for op in item.values() if isinstance(op, dict)
              for p in op.get("parameters", [])]  # fmt: skip
    optional = [p for p in params if p["in"] == "query" and not p.get("required")]
    assert optional and all(p.get("allowEmptyValue") is True for p in optional)
    assert all("allowEmptyValue" not in p for p in params if p["in"] == "path")


def test_max_length_holds_for_what_was_sent_before_trimming(alpha):
    r = alpha.client(role="admin").post("/api/v1/kill-switch/", {"reason": "\x1d" * 301}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    r = alpha.client(role="admin").post("/api/v1/kill-switch/", {"reason": "x" * 301}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    assert not KillSwitch.objects.filter(tenant=alpha.tenant, lifted_at=None).exists()


def test_a_whitespace_only_value_over_max_length_is_refused_where_blank_is_allowed():
    from orchestration.api.views import DecisionInput

    assert not DecisionInput(data={"comment": "\x1d" * 501}).is_valid()
    assert DecisionInput(data={"comment": "\x1d" * 500}).is_valid()
    assert DecisionInput(data={"comment": ""}).is_valid()
