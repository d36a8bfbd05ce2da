"""Billing: subscriptions (and the revenue events analytics reads), monthly invoices of the plan
price plus metered overage, payments through a provider (Midtrans), its notifications applied
idempotently, and dunning that moves unpaid tenants to free after a grace period.

Money is ``Decimal`` throughout, rounded to the currency's minor unit (IDR has none)."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from compliance.services import audit_record
from tenants.models import Plan, Tenant

from .models import Invoice, Payment, PaymentNotification, Subscription, SubscriptionEvent
from .providers import PaymentProvider, midtrans_status, payment_provider

log = logging.getLogger(__name__)
MINOR_UNITS = {"IDR": Decimal("1"), "USD": Decimal("0.01")}


def money(amount: Decimal, currency: str) -> Decimal:
    return Decimal(amount).quantize(MINOR_UNITS.get(currency, Decimal("0.01")), rounding=ROUND_HALF_UP)


def _month(when: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = when.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


# --- subscriptions ---------------------------------------------------------------------------------


def subscription_ensure(*, tenant: Tenant, now: dt.datetime | None = None) -> Subscription:
    """The tenant's subscription, started on its current plan (this calendar month) when it has none."""
    found = Subscription.objects.filter(tenant=tenant).select_related("plan").first()
    if found is not None:
        return found
    start, end = _month(now or timezone.now())
    with transaction.atomic():
        sub, created = Subscription.objects.get_or_create(
            tenant=tenant, defaults={"plan": tenant.plan, "current_period_start": start, "current_period_end": end}
        )
        if created and tenant.plan.price > 0:
            _event(tenant, SubscriptionEvent.Kind.NEW, None, tenant.plan, now or timezone.now())
    return sub


def _event(tenant, kind, old: Plan | None, new: Plan, at) -> SubscriptionEvent:
    return SubscriptionEvent.objects.create(
        tenant=tenant, account=tenant.slug, at=at, kind=kind, from_plan=old.code if old else "",
        to_plan=new.code, mrr_before=old.price if old else Decimal(0), mrr_after=new.price, currency=new.currency,
    )  # fmt: skip


def subscription_change(*, tenant: Tenant, plan: str, actor, reason: str = "", now=None) -> Subscription:
    """Move the tenant to ``plan`` now (limits apply to its next request) and record the revenue
    movement: new, upgrade, downgrade, churn (to no revenue) or reactivation."""
    from tenants.services import tenant_plan_change

    now = now or timezone.now()
    sub = subscription_ensure(tenant=tenant, now=now)
    old = sub.plan
    new = Plan.objects.filter(code=plan).first()
    if new is None:
        raise ApplicationError("unknown_plan", f"There is no plan '{plan}'.", {"plan": plan})
    if new.pk == old.pk:
        return sub
    with transaction.atomic():
        tenant_plan_change(tenant=tenant, plan=plan, actor=actor, reason=reason)
        sub.plan = new
        sub.status = Subscription.Status.ACTIVE
        sub.save(update_fields=["plan", "status", "updated_at"])
        if old.price == 0 and new.price > 0:
            churned = SubscriptionEvent.objects.filter(account=tenant.slug, kind=SubscriptionEvent.Kind.CHURN).exists()
            kind = SubscriptionEvent.Kind.REACTIVATION if churned else SubscriptionEvent.Kind.NEW
        elif new.price == 0 and old.price > 0:
            kind = SubscriptionEvent.Kind.CHURN
        elif new.price > old.price:
            kind = SubscriptionEvent.Kind.UPGRADE
        else:
            kind = SubscriptionEvent.Kind.DOWNGRADE
        if old.price != new.price:
            _event(tenant, kind, old, new, now)
    return sub


# --- invoices --------------------------------------------------------------------------------------


def invoice_lines(*, tenant: Tenant, plan: Plan, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """The plan's price for the period, and each metered unit beyond what the plan includes."""
    from analytics.selectors import unit_total

    cur = plan.currency
    lines = [
        {"description": f"{plan.name} plan, {start:%Y-%m-%d} to {end:%Y-%m-%d}", "unit": "month", "quantity": 1,
         "unit_price": str(money(plan.price, cur)), "amount": str(money(plan.price, cur))}
    ]  # fmt: skip
    with schema_context(tenant.schema_name):
        for unit, terms in sorted((plan.overage or {}).items()):
            used = unit_total(unit=unit, since=start.date(), until=end.date())
            over = max(0, used - int(terms.get("included", 0)))
            if over:
                price = Decimal(str(terms["unit_price"]))
                lines.append(
                    {"description": f"{unit.replace('_', ' ')}s beyond the {int(terms['included']):,} included "
                     f"({used:,} used)", "unit": unit, "quantity": over, "unit_price": str(price),
                     "amount": str(money(price * over, cur))}
                )  # fmt: skip
    return lines


def invoice_issue(*, sub: Subscription, now: dt.datetime | None = None) -> Invoice:
    """The invoice of ``sub``'s current period (once: a second call returns it)."""
    now = now or timezone.now()
    existing = Invoice.objects.filter(tenant=sub.tenant, period_start=sub.current_period_start).first()
    if existing is not None:
        return existing
    plan = sub.plan
    lines = invoice_lines(tenant=sub.tenant, plan=plan, start=sub.current_period_start, end=sub.current_period_end)
    total = money(sum((Decimal(line["amount"]) for line in lines), Decimal(0)), plan.currency)
    number = f"INV-{sub.current_period_start:%Y%m}-{sub.tenant_id:05d}"
    with transaction.atomic():
        invoice, created = Invoice.objects.get_or_create(
            tenant=sub.tenant, period_start=sub.current_period_start,
            defaults={
                "number": number, "plan": plan.code, "period_end": sub.current_period_end, "currency": plan.currency,
                "lines": lines, "total": total, "due_at": now + dt.timedelta(days=settings.BILLING_DUE_DAYS),
                "status": Invoice.Status.PAID if total == 0 else Invoice.Status.OPEN,
                "paid_at": now if total == 0 else None,
            },
        )  # fmt: skip
        if created:
            with schema_context(sub.tenant.schema_name):
                audit_record("system:billing", "invoice.issued", invoice, {"number": number, "total": str(total)})
                if total > 0:
                    from notifications.services import emit

                    data = {"number": number, "amount": str(total), "currency": plan.currency,
                            "due_at": invoice.due_at.isoformat()}  # fmt: skip
                    emit("invoice.issued", data, dedupe_key=f"invoice:{number}")
    return invoice


def billing_cycle_run(*, now: dt.datetime | None = None) -> dict:
    """Beat (hourly): invoice every subscription whose period ended and start its next period; then
    dunning — an open invoice past due makes the subscription past due, and past the grace period
    the invoice is written off and the tenant moved to the free plan (audited, with a churn event)."""
    now = now or timezone.now()
    issued = downgraded = 0
    for tenant in Tenant.objects.filter(status=Tenant.Status.ACTIVE, subscription__isnull=True):
        subscription_ensure(tenant=tenant, now=now)
    for sub in Subscription.objects.filter(current_period_end__lte=now).select_related("tenant", "plan"):
        while sub.current_period_end <= now:
            invoice_issue(sub=sub, now=now)
            issued += 1
            sub.current_period_start, sub.current_period_end = _month(sub.current_period_end)
        sub.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
    grace = dt.timedelta(days=settings.BILLING_GRACE_DAYS)
    for invoice in Invoice.objects.filter(status=Invoice.Status.OPEN, due_at__lt=now).select_related("tenant"):
        sub = subscription_ensure(tenant=invoice.tenant, now=now)
        if invoice.due_at + grace < now:
            with transaction.atomic():
                Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.UNCOLLECTIBLE)
                subscription_change(
                    tenant=invoice.tenant, plan="free", actor="system:dunning", now=now,
                    reason=f"invoice {invoice.number} unpaid {settings.BILLING_GRACE_DAYS} days after it was due",
                )  # fmt: skip
                Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.CANCELED)
            downgraded += 1
        elif sub.status != Subscription.Status.PAST_DUE:
            Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.PAST_DUE)
    return {"invoices_issued": issued, "downgraded": downgraded}


# --- payments --------------------------------------------------------------------------------------


def payment_start(*, invoice: Invoice, actor, provider: PaymentProvider | None = None) -> Payment:
    """A checkout for an open invoice: the provider's page to pay it (``redirect_url``)."""
    if invoice.status != Invoice.Status.OPEN:
        raise ApplicationError("invoice_not_open", f"Invoice {invoice.number} is {invoice.status}; nothing to pay.",
                               status=409)  # fmt: skip
    provider = provider or payment_provider()
    attempt = invoice.payments.count() + 1
    order_id = f"{invoice.number}-{attempt}"
    owner = invoice.tenant.memberships.filter(role="owner").select_related("user").first()
    checkout = provider.create_transaction(
        order_id=order_id, gross_amount=invoice.total,
        items=[{"id": (line.get("unit") or "line")[:50], "price": int(Decimal(line["amount"])), "quantity": 1,
                "name": line["description"][:50]} for line in invoice.lines if Decimal(line["amount"]) > 0],
        customer={"email": owner.user.email} if owner else {},
    )  # fmt: skip
    with transaction.atomic():
        payment = Payment.objects.create(
            invoice=invoice, provider=provider.name, order_id=order_id, gross_amount=invoice.total,
            token=checkout["token"], redirect_url=checkout["redirect_url"],
        )  # fmt: skip
        with schema_context(invoice.tenant.schema_name):
            audit_record(actor, "payment.started", payment, {"order_id": order_id, "amount": str(invoice.total)})
    return payment


# what may follow what: anything else is a replay or out of order, and changes nothing
TRANSITIONS = {
    Payment.Status.PENDING: {
        Payment.Status.PAID,
        Payment.Status.FAILED,
        Payment.Status.CANCELED,
        Payment.Status.EXPIRED,
    },
    Payment.Status.PAID: {Payment.Status.REFUNDED},
}


def notification_receive(*, payload: dict, remote_addr: str | None = None,
                         provider: PaymentProvider | None = None) -> PaymentNotification:  # fmt: skip
    """Apply a provider's HTTP notification. Its signature must verify; its content is then not
    trusted further: the gateway's own record of the order (status API) decides, and must match
    the order and amount. Transitions only move forward, once; every notification is logged."""
    provider = provider or payment_provider()
    note = PaymentNotification(
        provider=provider.name, order_id=str(payload.get("order_id", ""))[:64],
        transaction_status=str(payload.get("transaction_status", ""))[:32],
        status_code=str(payload.get("status_code", ""))[:8], gross_amount=str(payload.get("gross_amount", ""))[:32],
        remote_addr=remote_addr,
    )  # fmt: skip

    def refuse(code: str, message: str, status: int, detail: str):
        note.outcome, note.detail = PaymentNotification.Outcome.REJECTED, detail[:300]
        note.save()
        log.warning("payment notification rejected (%s): order %s from %s", detail, note.order_id, remote_addr)
        raise ApplicationError(code, message, status=status)

    if not provider.signature_valid(payload):
        refuse("invalid_signature", "The notification's signature does not verify.", 401, "bad signature")
    note.signature_valid = True
    payment = Payment.objects.filter(order_id=note.order_id).select_related("invoice", "invoice__tenant").first()
    if payment is None:
        refuse("not_found", "Not found.", 404, "unknown order")
    record = provider.transaction_status(payment.order_id)
    try:
        amount_ok = Decimal(str(record.get("gross_amount"))) == payment.gross_amount
    except ArithmeticError:
        amount_ok = False
    new = midtrans_status(record)
    if record.get("order_id") != payment.order_id or not amount_ok or new is None:
        refuse("notification_mismatch", "The gateway's record does not match this order.", 409,
               f"gateway record: {record.get('transaction_status')} {record.get('gross_amount')}")  # fmt: skip
    with transaction.atomic():
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        if new == current.status:
            note.outcome, note.detail = PaymentNotification.Outcome.DUPLICATE, f"already {new}"
        elif new not in TRANSITIONS.get(current.status, ()):
            note.outcome, note.detail = PaymentNotification.Outcome.IGNORED, f"{current.status} does not become {new}"
        else:
            note.outcome, note.detail = PaymentNotification.Outcome.APPLIED, f"{current.status} -> {new}"
            current.status = new
            current.transaction_id = str(record.get("transaction_id", ""))[:64]
            current.payment_type = str(record.get("payment_type", ""))[:32]
            current.save()
            invoice = current.invoice
            if new == Payment.Status.PAID and invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
                Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID, paid_at=timezone.now())
                Subscription.objects.filter(tenant=invoice.tenant, status=Subscription.Status.PAST_DUE).update(
                    status=Subscription.Status.ACTIVE
                )
            with schema_context(invoice.tenant.schema_name):
                audit_record(f"system:{provider.name}", f"payment.{new}", current, {"order_id": current.order_id})
                kind = {Payment.Status.PAID: "payment.succeeded", Payment.Status.FAILED: "payment.failed",
                        Payment.Status.EXPIRED: "payment.failed"}.get(new)  # fmt: skip
                if kind:
                    from notifications.services import emit

                    emit(kind, {"invoice": invoice.number, "order_id": current.order_id, "status": new,
                                "amount": str(current.gross_amount), "currency": invoice.currency},
                         dedupe_key=f"payment:{current.order_id}:{new}")  # fmt: skip
        note.save()
    return note
