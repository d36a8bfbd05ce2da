"""The dashboard's billing pages: the tenant's plan, invoices and payment (owners and admins pay
and change plan), and, for platform staff, revenue analytics."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from api.errors import ApplicationError
from tenants.models import Role

from .access import can, forbidden, tenant_page
from .paging import Choice, Dates, ListSpec, Search


def _invoice_statuses():
    from billing.models import Invoice

    return Invoice.Status.choices


INVOICE_LIST = ListSpec(
    "invoices",
    "invoices",
    search=Search(("number", "plan"), "Number or plan"),
    filters=(Choice("status", "Status", _invoice_statuses()), Dates("issued_at", "Issued")),
)


@tenant_page()
def billing(request):
    from billing import services
    from billing.models import Invoice
    from tenants.models import Plan

    sub = services.subscription_ensure(tenant=request.tenant)
    context = {
        "sub": sub,
        "plans": list(Plan.objects.order_by("price")),
        "invoices": INVOICE_LIST.apply(request, Invoice.objects.filter(tenant=request.tenant).order_by("-issued_at")),
        "can_manage": can(request, Role.ADMIN),
    }
    return render(request, "dashboard/billing.html", context)


@require_POST
@tenant_page()
def billing_plan(request):
    from billing import services

    if not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    try:
        sub = services.subscription_change(tenant=request.tenant, plan=request.POST.get("plan", ""), actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Your tenant is on {sub.plan.name} now; its limits apply from the next request.")
    return redirect("dashboard:billing")


@require_POST
@tenant_page()
def billing_pay(request, invoice_id):
    from billing import services
    from billing.models import Invoice

    if not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    invoice = Invoice.objects.filter(tenant=request.tenant, pk=invoice_id).first()
    if invoice is None:
        from django.http import Http404

        raise Http404("No such invoice.")
    try:
        payment = services.payment_start(invoice=invoice, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:billing")
    return redirect(payment.redirect_url)


@staff_member_required
def staff_revenue(request):
    from billing.revenue import revenue_report

    samples = request.GET.get("samples", "1") != "0"
    report = revenue_report(include_samples=samples)
    rows = report["months"][-24:]
    chart = None
    if len(rows) >= 2:
        width, height = 720, 200
        peak = max(float(r["mrr"]) for r in rows) or 1.0
        pts = " ".join(
            f"{round(5 + i / (len(rows) - 1) * (width - 10), 1)},"
            f"{round(height - 5 - float(r['mrr']) / peak * (height - 10), 1)}"
            for i, r in enumerate(rows)
        )
        chart = {"points": pts, "width": width, "height": height, "peak": peak}
    context = {"report": report, "rows": list(reversed(rows)), "chart": chart, "samples": samples,
               "today": dt.date.today()}  # fmt: skip
    return render(request, "dashboard/staff_revenue.html", context)
