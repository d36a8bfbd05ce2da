"""Billing pages: the tenant's plan and invoices (admins change plan and pay), staff revenue."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from billing import services
from billing.models import Invoice, Subscription
from billing.revenue import sample_history_seed
from tests.billing.gateway import FakeMidtrans
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db


def test_plans_invoices_plan_change_and_pay(alpha, beta):
    now = dt.datetime.now(dt.UTC)
    sub = services.subscription_ensure(tenant=alpha.tenant, now=now)
    Subscription.objects.filter(pk=sub.pk).update(current_period_end=now - dt.timedelta(hours=1))
    services.billing_cycle_run(now=now)
    invoice = Invoice.objects.get(tenant=alpha.tenant)
    viewer = dashboard_client(alpha, "viewer")
    html = viewer.get("/app/billing/").content.decode()
    assert f'data-invoice="{invoice.number}"' in html and "Owners and admins change the plan" in html
    assert 'data-form="plan-enterprise"' not in html
    assert viewer.post("/app/billing/plan/", {"plan": "enterprise"}).status_code == 403
    admin = dashboard_client(alpha, "admin")
    assert 'data-form="plan-enterprise"' in admin.get("/app/billing/").content.decode()
    gateway = FakeMidtrans()
    try:
        with override_settings(MIDTRANS_SERVER_KEY=gateway.server_key, MIDTRANS_SNAP_URL=gateway.url):
            r = admin.post(f"/app/billing/invoices/{invoice.pk}/pay/")
        assert r.status_code == 302 and r["Location"].startswith(gateway.url)  # off to the checkout
    finally:
        gateway.close()
    r = admin.post("/app/billing/plan/", {"plan": "enterprise"})
    assert r.status_code == 302
    assert Subscription.objects.get(tenant=alpha.tenant).plan.code == "enterprise"
    # another tenant's invoice: 404
    assert dashboard_client(beta, "admin").post(f"/app/billing/invoices/{invoice.pk}/pay/").status_code == 404


def test_staff_see_revenue_others_do_not(alpha, client):
    sample_history_seed(accounts=15, months=8, seed=2)
    staff = get_user_model().objects.create_user(email="ops@platform.test", password="x" * 12, is_staff=True)
    client.force_login(staff)
    html = client.get("/app/staff/revenue/").content.decode()
    assert "data-revenue-summary" in html and "data-mrr-chart" in html and "sample history" in html
    member = dashboard_client(alpha, "owner").get("/app/staff/revenue/")
    assert member.status_code == 302 and "/admin/login" in member["Location"]
