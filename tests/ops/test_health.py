import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_liveness_and_version(db):
    c = APIClient()
    assert c.get("/health").json() == {"status": "ok"}
    body = c.get("/version").json()
    assert body["api"] == "v1" and body["version"]


def test_readiness_reports_each_dependency_with_latency(db):
    r = APIClient().get("/health/ready")
    checks = r.json()["checks"]
    assert set(checks) == {"postgres", "redis", "celery"}
    assert checks["postgres"]["status"] == "ok" and checks["redis"]["status"] == "ok"
    assert all(isinstance(c["latency_ms"], float) for c in checks.values())
    # no worker runs in this test: readiness must say so, not pretend
    assert checks["celery"]["status"] == "down" and "worker" in checks["celery"]["detail"]
    assert r.status_code == 503 and r.json()["status"] == "degraded"


def test_readiness_is_ok_with_a_worker(worker_thread, db):
    r = APIClient().get("/health/ready")
    assert r.status_code == 200, r.json()
    assert r.json()["checks"]["celery"]["status"] == "ok"


def test_swagger_ui_and_schema_are_served_locally(db):
    c = APIClient()
    html = c.get("/api/docs/").content.decode()
    assert "swagger" in html.lower() and "cdn" not in html.lower() and "unpkg" not in html.lower()
    schema = c.get("/api/schema/?format=json").json()
    assert "/api/v1/tenant/" in schema["paths"] and "/api/v1/api-keys/" in schema["paths"]


def test_unknown_public_url_is_json_404(db):
    r = APIClient().get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
