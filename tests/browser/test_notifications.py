"""The notification centre in a real browser: the bell counts an in-app notification the moment the
engine delivers it (daphne's ws/notifications/, the page's one-use ticket) and shows a toast, and
an admin puts a dead delivery back in the queue from the delivery log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django_tenants.utils import schema_context

from tests.conftest import PASSWORD

from .support import PHONE


def test_the_bell_counts_a_delivered_notification_live_and_a_dead_delivery_is_retried(
    dashboard, new_dashboard, channels_server, committed, unique
):
    from notifications.delivery import deliver, emit, fanout
    from notifications.models import Delivery, Event
    from notifications.services import subscription_create
    from tenants.models import Membership
    from tenants.services import tenant_provision

    email = f"bell-{unique}@firm.test"
    with committed():
        tenant, _ = tenant_provision(slug=f"bell-{unique}", owner_email=email, owner_password=PASSWORD)
        owner = Membership.objects.get(tenant=tenant).user
        with schema_context(tenant.schema_name):
            subscription_create(
                data={"events": ["model.deployed"], "channel": "inapp"}, user_id=owner.pk, tenant_wide=False,
                is_admin=True, actor=owner,
            )  # fmt: skip
    d = dashboard
    d.login(email, PASSWORD)
    d.goto("/app/notifications/")
    assert d.page.locator('[data-empty="notifications"]').is_visible()
    d.page.locator('[data-bell][data-live="1"][data-unread="0"]').wait_for()  # the socket is open

    # when the engine delivers an in-app notification (emit, fan out, deliver: what the workers do,
    # and like them on a thread without the browser driver's event loop)
    def engine() -> str:
        try:
            with schema_context(tenant.schema_name):
                event = emit("model.deployed", {"name": f"churn-{unique}", "version": 7})
                fanout(event.pk)
                (delivery,) = Delivery.objects.filter(event=event)
                deliver(delivery.pk)  # (sent here, or by the fan-out already: then skipped)
                return Delivery.objects.get(pk=delivery.pk).status
        finally:
            connection.close()

    with committed(), ThreadPoolExecutor(1) as pool:
        assert pool.submit(engine).result(timeout=30) == "sent"

    # then the bell counts it, a toast tells it, and the open centre lists it, without a reload
    d.page.locator('[data-bell][data-unread="1"]').wait_for()
    assert d.page.locator("[data-bell-count]").inner_text() == "1"
    toast = d.page.locator("[data-toast]")
    toast.wait_for()
    assert f"Model churn-{unique} v7 deployed" in toast.inner_text()
    assert f"Model churn-{unique} v7 deployed" in d.page.locator("[data-inbox] tr").first.inner_text()

    # a dead delivery in the log: the admin retries it and it is pending (queued) again
    with committed(), schema_context(tenant.schema_name):
        failed = Event.objects.create(type="model.deployed", data={"name": "m", "version": 1})
        dead = Delivery.objects.create(
            event=failed, channel="email", target="email:ops@firm.test", idempotency_key=f"{failed.pk}:dead",
            status=Delivery.Status.DEAD, attempts=6, last_error="E-mail not accepted: SMTPServerDisconnected",
        )  # fmt: skip
    d.nav("Deliveries")
    d.page.locator('[data-view="dead"]').click()
    d.page.wait_for_load_state("networkidle")
    row = d.page.locator(f'[data-delivery="{dead.pk}"]')
    assert row.get_attribute("data-status") == "dead" and "SMTPServerDisconnected" in row.inner_text()
    row.locator("[data-retry]").click()
    d.page.wait_for_load_state("networkidle")
    assert f"Delivery #{dead.pk} is pending again" in d.messages()
    assert d.page.locator(f'[data-delivery="{dead.pk}"]').count() == 0  # no longer a dead letter
    d.page.locator('[data-view="all"]').click()
    d.page.wait_for_load_state("networkidle")
    assert d.page.locator(f'[data-delivery="{dead.pk}"]').get_attribute("data-status") == "pending"
    with committed(), schema_context(tenant.schema_name):
        assert Delivery.objects.get(pk=dead.pk).manual_retries == 1

    # the pages and the header with its unread count fit a phone
    phone = new_dashboard(PHONE)
    phone.page.context.add_cookies(d.page.context.cookies())
    for path in ("/app/", "/app/notifications/", "/app/notifications/subscriptions/", "/app/notifications/deliveries/",
                 "/app/notifications/webhooks/"):  # fmt: skip
        phone.goto(path)
        assert phone.page.locator('[data-bell][data-unread="1"]').is_visible()
        assert phone.horizontal_overflow() <= 0, path
