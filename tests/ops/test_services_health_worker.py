"""GET /api/v1/services-health/ with a real Celery worker (threads pool) consuming both queues."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from ops import health

pytestmark = pytest.mark.django_db


def test_workers_and_the_queues_they_consume(worker_thread, alpha):
    health.reset_cache()
    staff = get_user_model().objects.create_user(email="ops@platform.test", password="x" * 12, is_staff=True)
    c = APIClient()
    c.force_login(staff)
    body = c.get("/api/v1/services-health/", {"fresh": "1"}).json()
    celery = body["checks"]["celery"]
    assert celery["status"] == "ok" and celery["detail"].startswith("1 worker(s) answered")
    assert celery["figures"]["workers"]["value"] == 1 and celery["figures"]["consumers_notify"]["value"] == 1
    assert [w["queues"] for w in body["workers"]] == [["celery", "notify"]]
    worker = body["workers"][0]["name"]
    assert {q["queue"]: q["consumers"] for q in body["queues"]} == {"celery": [worker], "notify": [worker]}
    # a second report asks only until the known worker answered
    health._cache.update(at=0.0)
    again = c.get("/api/v1/services-health/").json()
    assert again["checks"]["celery"]["status"] == "ok" and again["cached"] is False
    health.reset_cache()
