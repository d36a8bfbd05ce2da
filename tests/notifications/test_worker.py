"""The delivery engine on a real Celery worker and broker, with committed data (as in production):
one event reaches a good webhook once, the in-app centre once, and a failing webhook is retried with
backoff until it is dead -- in parallel, the failing one holding up neither."""

import time

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from notifications.delivery import emit
from notifications.models import Delivery, InAppNotification
from notifications.services import subscription_create, webhook_create
from tenants.models import Role

from .receivers import WebhookReceiver


def _wait(check, seconds=60):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the worker did not get there"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def scenario(own_tenant, worker_thread, django_db_blocker):
    """Committed before any test transaction (the worker must see it): two webhook endpoints (one
    failing) and the owner's in-app centre subscribed to model.deployed, then one such event."""
    from tenants.models import Membership

    settings = override_settings(NOTIFY_MAX_ATTEMPTS=3, NOTIFY_BACKOFF_BASE_S=0.2, NOTIFY_WEBHOOK_RATE=1000)
    settings.enable()
    good, bad = WebhookReceiver(), WebhookReceiver()
    bad.mode = "fail"
    with django_db_blocker.unblock(), schema_context(own_tenant.schema_name):
        owner = Membership.objects.get(tenant=own_tenant, role=Role.OWNER).user
        for name, receiver in (("good", good), ("bad", bad)):
            endpoint, receiver.secret = webhook_create(name=name, url=receiver.url, actor=owner)
            subscription_create(data={"events": ["model.deployed"], "channel": "webhook", "webhook": endpoint.pk},
                                user_id=owner.pk, tenant_wide=True, is_admin=True, actor=owner)  # fmt: skip
        subscription_create(data={"events": ["model.deployed"], "channel": "inapp"}, user_id=owner.pk,
                            tenant_wide=False, is_admin=False, actor=owner)  # fmt: skip
        event = emit("model.deployed", {"name": "btc", "version": 7})  # autocommit: fan-out queued at once
    yield event, owner, good, bad
    settings.disable()
    good.close()
    bad.close()


@pytest.mark.django_db
def test_the_worker_delivers_each_target_once_and_dead_letters_a_failing_one(own_tenant, scenario):
    event, owner, good, bad = scenario
    with schema_context(own_tenant.schema_name):

        def settled():
            states = list(Delivery.objects.filter(event=event).values_list("status", flat=True))
            return len(states) == 3 and set(states) <= {"sent", "dead"}

        _wait(settled)
        by_channel = set(Delivery.objects.filter(event=event).values_list("channel", "status"))
        assert by_channel == {("webhook", "sent"), ("webhook", "dead"), ("inapp", "sent")}
        dead = Delivery.objects.get(event=event, status="dead")
        assert dead.attempts == 3 and "HTTP 500" in dead.last_error
        assert InAppNotification.objects.filter(user_id=owner.pk).count() == 1
    assert len(good.received) == 1 and good.refused == [] and bad.hits == 3
