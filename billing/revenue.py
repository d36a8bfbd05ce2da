"""Revenue analytics for platform staff, computed from subscription events (``SubscriptionEvent``):
MRR and ARR, MRR movements (new, expansion, contraction, churned, reactivation), logo and revenue
churn, ARPU, LTV, cohort retention, plan mix and top accounts, per calendar month. Amounts are
Decimal (IDR)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

from .models import SubscriptionEvent

ZERO = Decimal(0)


def _months(first: dt.date, last: dt.date) -> list[dt.date]:
    out, m = [], first.replace(day=1)
    while m <= last:
        out.append(m)
        m = (m + dt.timedelta(days=32)).replace(day=1)
    return out


def _month_end(m: dt.date) -> dt.datetime:
    return dt.datetime.combine((m + dt.timedelta(days=32)).replace(day=1), dt.time(), tzinfo=dt.UTC)


def revenue_report(*, start: dt.date | None = None, end: dt.date | None = None, include_samples: bool = True) -> dict:
    events = list(SubscriptionEvent.objects.order_by("at", "id"))
    if not include_samples:
        events = [e for e in events if not e.sample]
    today = dt.datetime.now(dt.UTC).date()
    if not events:
        return {"months": [], "summary": None, "cohorts": [], "plan_mix": {}, "top_accounts": [], "currency": "IDR"}
    first = start or events[0].at.date()
    last = end or today
    months = _months(first, last)
    # each account's MRR and plan after every event, walked month by month
    mrr: dict[str, Decimal] = defaultdict(lambda: ZERO)
    plan: dict[str, str] = {}
    cohort_of: dict[str, dt.date] = {}
    i = 0
    rows = []
    paying_at_end: dict[dt.date, set[str]] = {}
    mrr_start = ZERO
    paying_start: set[str] = set()
    for m in months:
        bounds = _month_end(m)
        moves = {"new": ZERO, "expansion": ZERO, "contraction": ZERO, "churned": ZERO, "reactivation": ZERO}
        churned_logos = 0
        while i < len(events) and events[i].at < bounds:
            e = events[i]
            i += 1
            if e.kind == SubscriptionEvent.Kind.NEW:
                cohort_of.setdefault(e.account, dt.date(e.at.year, e.at.month, 1))
            in_month = e.at >= dt.datetime.combine(m, dt.time(), tzinfo=dt.UTC)
            if in_month:
                delta = e.mrr_after - e.mrr_before
                if e.kind == SubscriptionEvent.Kind.NEW:
                    moves["new"] += e.mrr_after
                elif e.kind == SubscriptionEvent.Kind.REACTIVATION:
                    moves["reactivation"] += e.mrr_after
                elif e.kind == SubscriptionEvent.Kind.CHURN:
                    moves["churned"] += e.mrr_before
                    churned_logos += 1
                elif delta > 0:
                    moves["expansion"] += delta
                else:
                    moves["contraction"] += -delta
            mrr[e.account] = e.mrr_after
            plan[e.account] = e.to_plan
        total = sum(mrr.values(), ZERO)
        paying = {a for a, v in mrr.items() if v > 0}
        paying_at_end[m] = paying
        logo_churn = churned_logos / len(paying_start) if paying_start else None
        revenue_churn = (moves["churned"] + moves["contraction"]) / mrr_start if mrr_start else None
        rows.append({
            "month": f"{m:%Y-%m}", "mrr": total, "arr": total * 12, "paying_accounts": len(paying),
            **moves, "net_new_mrr": moves["new"] + moves["expansion"] + moves["reactivation"] - moves["contraction"]
            - moves["churned"],
            "logo_churn_rate": None if logo_churn is None else round(logo_churn, 4),
            "revenue_churn_rate": None if revenue_churn is None else round(float(revenue_churn), 4),
            "arpu": (total / len(paying)).quantize(Decimal("1")) if paying else ZERO,
        })  # fmt: skip
        mrr_start, paying_start = total, paying
    if start:
        rows = [r for r in rows if r["month"] >= f"{start:%Y-%m}"]
    churns = [r["revenue_churn_rate"] for r in rows if r["revenue_churn_rate"] is not None]
    avg_churn = round(sum(churns) / len(churns), 4) if churns else None
    current = rows[-1] if rows else None
    ltv = (current["arpu"] / Decimal(str(avg_churn))).quantize(Decimal("1")) if current and avg_churn else None
    cohorts = []
    for c in sorted(set(cohort_of.values())):
        members = {a for a, when in cohort_of.items() if when == c}
        retention = []
        for m in months:
            if m < c:
                continue
            retention.append(round(len(members & paying_at_end[m]) / len(members), 4))
        cohorts.append({"cohort": f"{c:%Y-%m}", "accounts": len(members), "retention": retention[:13]})
    final = {a: v for a, v in mrr.items() if v > 0}
    mix: dict[str, int] = defaultdict(int)
    for a in final:
        mix[plan[a]] += 1
    top = sorted(final.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "currency": "IDR",
        "months": rows,
        "summary": None if current is None else {
            "mrr": current["mrr"], "arr": current["arr"], "paying_accounts": current["paying_accounts"],
            "arpu": current["arpu"], "ltv": ltv,
            "average_monthly_revenue_churn": avg_churn,
        },
        "cohorts": cohorts,
        "plan_mix": dict(sorted(mix.items())),
        "top_accounts": [{"account": a, "plan": plan[a], "mrr": v} for a, v in top],
        "samples_included": include_samples and any(e.sample for e in events),
    }  # fmt: skip


CSV_COLUMNS = ("month", "mrr", "arr", "paying_accounts", "new", "expansion", "contraction", "churned", "reactivation",
               "net_new_mrr", "logo_churn_rate", "revenue_churn_rate", "arpu")  # fmt: skip


def revenue_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in report["months"]:
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return out.getvalue()


def sample_history_seed(*, accounts: int = 60, months: int = 18, seed: int = 7) -> int:
    """Sample subscription history for the demo's revenue pages (``sample=True``, no tenant):
    accounts arriving month by month on pro or enterprise, some upgrading, downgrading, churning,
    a few coming back. Deterministic; a second call adds nothing."""
    import random

    from tenants.models import Plan

    if SubscriptionEvent.objects.filter(sample=True).exists():
        return 0
    rng = random.Random(seed)
    prices = {p.code: p.price for p in Plan.objects.all()}
    today = dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (today - dt.timedelta(days=31 * months)).replace(day=1)
    created = []
    for n in range(accounts):
        name = f"sample-{n + 1:03d}"
        at = start + dt.timedelta(days=rng.randrange(0, 31 * months - 5), hours=rng.randrange(24))
        current = "enterprise" if rng.random() < 0.15 else "pro"
        created.append(SubscriptionEvent(account=name, at=at, kind="new", to_plan=current, mrr_before=ZERO,
                                         mrr_after=prices[current], sample=True))  # fmt: skip
        while True:
            at += dt.timedelta(days=rng.randrange(25, 200))
            if at >= today:
                break
            roll = rng.random()
            if current != "free" and roll < 0.25:
                kind, new = "churn", "free"
            elif current == "pro" and roll < 0.40:
                kind, new = "upgrade", "enterprise"
            elif current == "enterprise" and roll < 0.45:
                kind, new = "downgrade", "pro"
            elif current == "free" and roll < 0.5:
                kind, new = "reactivation", "pro"
            else:
                continue
            created.append(SubscriptionEvent(
                account=name, at=at, kind=kind, from_plan=current, to_plan=new, mrr_before=prices[current],
                mrr_after=prices[new], sample=True,
            ))  # fmt: skip
            current = new
    SubscriptionEvent.objects.bulk_create(created)
    return len(created)
