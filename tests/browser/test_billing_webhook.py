"""The payment path end to end over HTTP: an owner pays an invoice from the Billing page in a real
browser (our server creates the checkout on the local Midtrans), the gateway then POSTs its signed
notification to our running server, and the page shows the invoice paid; a forged one is refused."""

from __future__ import annotations

import datetime as dt

from django_tenants.utils import schema_context

from tests.conftest import PASSWORD


def test_pay_from_the_page_and_the_gateway_notifies_our_server(dashboard, web, midtrans, committed, unique):
    from billing import services
    from billing.models import Invoice, Payment, PaymentNotification, Subscription
    from tenants.services import tenant_provision

    with committed():
        tenant, _ = tenant_provision(slug=f"pay-{unique}", plan="pro", owner_email=f"pay-{unique}@firm.test",
                                     owner_password=PASSWORD)  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        sub = services.subscription_ensure(tenant=tenant, now=now)
        Subscription.objects.filter(pk=sub.pk).update(current_period_end=now - dt.timedelta(minutes=1))
        with schema_context("public"):
            services.billing_cycle_run(now=now)
        invoice = Invoice.objects.get(tenant=tenant)
    d = dashboard
    d.login(f"pay-{unique}@firm.test", PASSWORD)
    d.goto("/app/billing/")
    row = d.page.locator(f'[data-invoice="{invoice.number}"]')
    assert "open" in row.inner_text()
    row.get_by_role("button", name="Pay").click()
    d.page.wait_for_url(f"{midtrans.url}/**")  # the browser is at the gateway's checkout
    with committed():
        payment = Payment.objects.get(invoice=invoice)
    assert midtrans.orders[payment.order_id]["gross_amount"] == "1490000.00"

    hook = f"{web.base_url}/api/v1/billing/midtrans/notification/"
    status, body = midtrans.deliver(hook, midtrans.notification(payment.order_id, "settlement", key="forged"))
    assert status == 401
    status, body = midtrans.deliver(hook, midtrans.notification(payment.order_id, "settlement"))
    assert status == 200 and body["outcome"] == "applied"
    status, body = midtrans.deliver(hook, midtrans.notification(payment.order_id))  # the gateway retries
    assert status == 200 and body["outcome"] == "duplicate"
    with committed():
        assert Invoice.objects.get(pk=invoice.pk).status == "paid"
        assert list(
            PaymentNotification.objects.filter(order_id=payment.order_id)
            .order_by("id")
            .values_list("outcome", flat=True)
        ) == ["rejected", "applied", "duplicate"]
    d.goto("/app/billing/")
    assert "paid" in d.page.locator(f'[data-invoice="{invoice.number}"]').inner_text()
