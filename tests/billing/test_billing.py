"""Billing end to end against a local server speaking Midtrans' protocol: invoices of plan price
plus metered overage (Decimal), checkout, signed notifications applied once and only forward
(forged, replayed, stale and mismatched ones rejected or ignored, all logged), refunds, dunning to
free after the grace period, and the revenue events of plan changes."""

import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from analytics.models import Kind, UsageDaily
from billing import services
from billing.models import Invoice, Payment, PaymentNotification, Subscription, SubscriptionEvent
from compliance.models import AuditRecord
from tenants.models import Plan
from tests.billing.gateway import FakeMidtrans
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
HOOK = "/api/v1/billing/midtrans/notification/"


@pytest.fixture
def gateway():
    fake = FakeMidtrans()
    with override_settings(MIDTRANS_SERVER_KEY=fake.server_key, MIDTRANS_SNAP_URL=fake.url, MIDTRANS_API_URL=fake.url):
        yield fake
    fake.close()


def _period_with_usage(fx, predictions: int):
    """Alpha's subscription for last month, with ``predictions`` metered in it; the invoice issued."""
    now = dt.datetime.now(dt.UTC)
    sub = services.subscription_ensure(tenant=fx.tenant, now=now)
    start = (sub.current_period_start - dt.timedelta(days=1)).replace(day=1)
    Subscription.objects.filter(pk=sub.pk).update(
        current_period_start=start, current_period_end=sub.current_period_start
    )
    with schema_context(fx.tenant.schema_name):
        UsageDaily.objects.create(day=start.date() + dt.timedelta(days=3), kind=Kind.UNIT, name="prediction",
                                  count=predictions)  # fmt: skip
        UsageDaily.objects.create(day=start.date() + dt.timedelta(days=40), kind=Kind.UNIT, name="prediction",
                                  count=999_999)  # next period: not on this invoice  # fmt: skip
    assert services.billing_cycle_run(now=now)["invoices_issued"] == 1
    assert services.billing_cycle_run(now=now)["invoices_issued"] == 0  # once per period
    return Invoice.objects.get(tenant=fx.tenant, period_start=start)


def test_an_invoice_is_the_plan_price_plus_overage_in_decimal(alpha):
    invoice = _period_with_usage(alpha, predictions=600_000)
    pro = Plan.objects.get(code="pro")
    assert invoice.plan == "pro" and invoice.currency == "IDR" and invoice.status == "open"
    # 1,490,000 + (600,000 - 500,000 included) x 2 = 1,690,000
    assert invoice.total == Decimal("1690000") == pro.price + 100_000 * Decimal(pro.overage["prediction"]["unit_price"])
    assert [line["amount"] for line in invoice.lines] == ["1490000", "200000"]
    assert "600,000 used" in invoice.lines[1]["description"]
    sub = Subscription.objects.get(tenant=alpha.tenant)
    assert sub.current_period_start == invoice.period_end  # the next period started
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="invoice.issued").count() == 1


def test_pay_settle_replay_forge_and_refund(alpha, beta, gateway, client):
    invoice = _period_with_usage(alpha, predictions=0)
    assert alpha.client(role="viewer").post(f"/api/v1/billing/invoices/{invoice.pk}/pay/").status_code == 403
    assert beta.client().post(f"/api/v1/billing/invoices/{invoice.pk}/pay/").status_code == 404
    r = alpha.client(role="owner").post(f"/api/v1/billing/invoices/{invoice.pk}/pay/")
    assert r.status_code == 201, r.content
    body = r.json()
    order = body["order_id"]
    assert body["redirect_url"].startswith(gateway.url) and body["amount"] == "1490000.00"
    assert gateway.orders[order]["gross_amount"] == "1490000.00"

    # a forged notification (signed with another key) is refused and logged
    forged = gateway.notification(order, "settlement", key="not-our-key")
    r = client.post(HOOK, forged, content_type="application/json")
    assert r.status_code == 401 and error_code(r) == "invalid_signature"
    assert Payment.objects.get(order_id=order).status == "pending"
    # the real one: applied once; the invoice is paid
    settled = gateway.notification(order)
    r = client.post(HOOK, settled, content_type="application/json")
    assert r.status_code == 200 and r.json()["outcome"] == "applied"
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.paid_at is not None
    # replayed: nothing changes; a stale "pending" (validly signed) cannot move it back: the gateway says settled
    assert client.post(HOOK, settled, content_type="application/json").json()["outcome"] == "duplicate"
    gateway.orders[order]["transaction_status"] = "pending"
    stale = gateway.notification(order)
    gateway.orders[order]["transaction_status"] = "settlement"
    assert client.post(HOOK, stale, content_type="application/json").json()["outcome"] == "duplicate"
    # an unknown order, and a record whose amount does not match ours
    other = {**settled, "order_id": "INV-nope-1"}
    other["signature_key"] = gateway.notification(order)["signature_key"]  # signed for another order: forged
    assert client.post(HOOK, other, content_type="application/json").status_code == 401
    text = f"INV-nope-1{settled['status_code']}{settled['gross_amount']}{gateway.server_key}"
    unknown = {**other, "signature_key": hashlib.sha512(text.encode()).hexdigest()}  # well signed, never ordered
    r = client.post(HOOK, unknown, content_type="application/json")
    assert r.status_code == 404 and "INV-nope" not in r.content.decode()
    # refund
    r = client.post(HOOK, gateway.notification(order, "refund"), content_type="application/json")
    assert r.json()["outcome"] == "applied" and Payment.objects.get(order_id=order).status == "refunded"
    outcomes = list(PaymentNotification.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["rejected", "applied", "duplicate", "duplicate", "rejected", "rejected", "applied"]
    assert PaymentNotification.objects.filter(detail="unknown order").count() == 1
    with schema_context(alpha.tenant.schema_name):
        actions = set(AuditRecord.objects.values_list("action", flat=True))
        assert {"payment.started", "payment.paid", "payment.refunded"} <= actions
    # nothing left to pay
    r = alpha.client(role="owner").post(f"/api/v1/billing/invoices/{invoice.pk}/pay/")
    assert r.status_code == 409 and error_code(r) == "invoice_not_open"


def test_a_denied_payment_leaves_the_invoice_open_and_a_mismatch_is_refused(alpha, gateway, client):
    invoice = _period_with_usage(alpha, predictions=0)
    first = services.payment_start(invoice=invoice, actor="t")
    assert (
        client.post(HOOK, gateway.notification(first.order_id, "deny"), content_type="application/json").json()[
            "outcome"
        ]
        == "applied"
    )
    invoice.refresh_from_db()
    assert invoice.status == "open" and Payment.objects.get(pk=first.pk).status == "failed"
    second = services.payment_start(invoice=invoice, actor="t")
    assert second.order_id.endswith("-2")
    gateway.orders[second.order_id]["gross_amount"] = "1.00"  # the gateway's record disagrees with ours
    r = client.post(HOOK, gateway.notification(second.order_id, "settlement"), content_type="application/json")
    assert r.status_code == 409 and error_code(r) == "notification_mismatch"
    assert Invoice.objects.get(pk=invoice.pk).status == "open"


def test_the_gateway_unreachable_or_unconfigured_says_so(alpha):
    invoice = _period_with_usage(alpha, predictions=0)
    with override_settings(MIDTRANS_SERVER_KEY="k", MIDTRANS_SNAP_URL="http://127.0.0.1:9", MIDTRANS_API_URL="x"):
        r = alpha.client(role="owner").post(f"/api/v1/billing/invoices/{invoice.pk}/pay/")
        assert r.status_code == 502 and error_code(r) == "payment_gateway_unreachable"
    with override_settings(MIDTRANS_SERVER_KEY=""):
        r = alpha.client(role="owner").post(f"/api/v1/billing/invoices/{invoice.pk}/pay/")
        assert r.status_code == 503 and error_code(r) == "payments_not_configured"
    assert not Payment.objects.exists()
    from billing.providers import payment_provider

    with override_settings(MIDTRANS_SERVER_KEY="SB-secret-123"):
        assert "SB-secret-123" not in repr(payment_provider())


def test_dunning_moves_an_unpaid_tenant_to_free_after_the_grace_period(alpha, settings):
    settings.BILLING_DUE_DAYS, settings.BILLING_GRACE_DAYS = 7, 7
    invoice = _period_with_usage(alpha, predictions=0)
    services.billing_cycle_run(now=invoice.due_at + dt.timedelta(days=1))
    assert Subscription.objects.get(tenant=alpha.tenant).status == "past_due"
    assert alpha.tenant.plan.code == "pro"
    services.billing_cycle_run(now=invoice.due_at + dt.timedelta(days=8))
    alpha.tenant.refresh_from_db()
    assert alpha.tenant.plan.code == "free" and Subscription.objects.get(tenant=alpha.tenant).status == "canceled"
    assert Invoice.objects.get(pk=invoice.pk).status == "uncollectible"
    churn = SubscriptionEvent.objects.get(account=alpha.slug, kind="churn")
    assert churn.mrr_before == Decimal("1490000") and churn.mrr_after == 0
    with schema_context(alpha.tenant.schema_name):
        change = AuditRecord.objects.get(action="tenant.plan_changed")
        assert change.details["to"] == "free" and "unpaid" in change.details["reason"]


def test_plan_changes_record_revenue_movements(beta):
    now = dt.datetime.now(dt.UTC)
    steps = [
        ("pro", "new"),
        ("enterprise", "upgrade"),
        ("pro", "downgrade"),
        ("free", "churn"),
        ("pro", "reactivation"),
    ]
    for plan, _ in steps:
        services.subscription_change(tenant=beta.tenant, plan=plan, actor="t", now=now)
    events = list(SubscriptionEvent.objects.filter(account=beta.slug).values_list("kind", "mrr_after"))
    assert [k for k, _ in events] == [k for _, k in steps]
    assert events[1][1] == Decimal("14900000")


def test_the_billing_api_shows_the_subscription_and_changes_plan(alpha, beta):
    body = alpha.client(role="viewer").get("/api/v1/billing/").json()
    assert body["plan"] == "pro" and body["price"] == "1490000.00" and body["currency"] == "IDR"
    assert alpha.client(role="viewer").post("/api/v1/billing/plan/", {"plan": "enterprise"}).status_code == 403
    r = alpha.client(role="owner").post("/api/v1/billing/plan/", {"plan": "gold"}, format="json")
    assert r.status_code == 400 and error_code(r) == "unknown_plan"
    r = alpha.client(role="owner").post("/api/v1/billing/plan/", {"plan": "enterprise"}, format="json")
    assert r.status_code == 200 and r.json()["plan"] == "enterprise"
    assert beta.client().get("/api/v1/billing/").json()["plan"] == "free"  # its own, never alpha's
