"""The compliance review index in Django admin: filters across tenants, the decision read live and
the opening audited in its tenant, review with a comment, export, and who may see any of it."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from accounts.models import User
from compliance.models import AuditRecord
from review.models import FlagRule, ReviewItem
from tests.conftest import PASSWORD
from tests.review.conftest import decide, index, risk_vote, trend_vote

pytestmark = pytest.mark.django_db

URL = "/admin/review/reviewitem/"


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def _staff(email: str, *codenames: str, groups=()) -> User:
    user = User.objects.create_user(email=email, password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="review", codename__in=codenames))
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def officer(db) -> User:
    return _staff("officer@review.test", groups=["compliance"])


@pytest.fixture
def c(officer) -> Client:
    return _client(officer)


@pytest.fixture
def items(a, b):
    """alpha: a flagged BUY on BTCUSDT and a plain HOLD on ETHUSDT; beta: a control block on SOLUSDT."""
    (buy,) = decide(a, action="BUY", confidence=0.5, size=0.05, symbol="BTCUSDT",
                    votes=[trend_vote("BUY", 0.81), risk_vote(veto=True)],
                    weights={"trend": 0.625, "risk": 0.375}, explanation="BUY: trend strong; risk veto ignored",
                    flow="swing@4", model_version="xgb-btc@7")  # fmt: skip
    (hold,) = decide(a, action="HOLD", confidence=0.7, symbol="ETHUSDT", offset=60 * 24 * 40)
    (blocked,) = decide(b, action="HOLD", vetoed_by="control:max_position", symbol="SOLUSDT")
    index(a)
    index(b)
    get = ReviewItem.objects.get
    return {"buy": get(tenant=a, decision_id=buy.pk), "hold": get(tenant=a, decision_id=hold.pk),
            "blocked": get(tenant=b, decision_id=blocked.pk)}  # fmt: skip


def _listed(client, **params) -> set[str]:
    r = client.get(URL, params)
    assert r.status_code == 200, r.status_code
    return {i.symbol for i in r.context["cl"].result_list}


def _audit(tenant, action: str):
    with schema_context(tenant.schema_name):
        return list(AuditRecord.objects.filter(action=action).order_by("id"))


def _act(client, action: str, *items, follow: bool = False, **extra):
    data = {"action": action, "_selected_action": [str(i.pk) for i in items], **extra}
    return client.post(URL, data, follow=follow)


# --- the index ---------------------------------------------------------------------------------


def test_changelist_queries_do_not_grow_with_rows_or_tenants(c, items, a, b):
    c.get(URL)  # warm: session and permissions

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert c.get(URL).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    few = queries()
    decide(a, 30, action="BUY", size=0.05, offset=100)
    decide(b, 30, action="SELL", size=0.05, offset=100)
    index(a)
    index(b)
    c.get(URL)  # (the schema switch back to public is one query of its own)
    more = queries()
    assert len(more) == len(few) <= 15, [q[:150] for q in more if q not in few]


def test_changelist_filters_across_tenants(c, items, a, b):
    assert _listed(c) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert _listed(c, tenant=a.pk) == {"BTCUSDT", "ETHUSDT"}
    assert _listed(c, tenant=b.pk) == {"SOLUSDT"}
    assert _listed(c, symbol="btcusdt") == {"BTCUSDT"}
    assert _listed(c, action="HOLD") == {"ETHUSDT", "SOLUSDT"}
    assert _listed(c, flagged="yes") == {"BTCUSDT", "SOLUSDT"}
    assert _listed(c, flagged="no") == {"ETHUSDT"}
    assert _listed(c, flag="control_block") == {"SOLUSDT"}
    assert _listed(c, flag="low_confidence", tenant=a.pk) == {"BTCUSDT"}
    ts = items["hold"].ts
    assert _listed(c, ts__year=ts.year, ts__month=ts.month, ts__day=ts.day) == {"ETHUSDT"}
    assert _listed(c, q=str(items["blocked"].decision_id)) >= {"SOLUSDT"}
    assert _listed(c, q="ethusdt") == {"ETHUSDT"}
    ReviewItem.objects.filter(pk=items["buy"].pk).update(reviewed_at=items["buy"].indexed_at)
    assert _listed(c, reviewed="yes") == {"BTCUSDT"}
    assert _listed(c, reviewed="no") == {"ETHUSDT", "SOLUSDT"}
    # the page offers the filters by name
    html = c.get(URL).content.decode()
    for text in ("By tenant", "By symbol", "By action", "By flagged", "By flag", "By reviewed", "against_risk"):
        assert text in html, text


def test_the_change_page_shows_the_stored_decision_and_the_opening_is_audited_in_its_tenant(c, officer, items, a, b):
    item = items["buy"]
    r = c.get(f"{URL}{item.pk}/change/")
    html = r.content.decode()
    assert r.status_code == 200
    # the decision as stored: votes per agent with confidence and weight, explanation, model, flow
    for text in ("trend", "0.810", "0.625", "0.375", "risk", "BUY: trend strong; risk veto ignored",
                 "xgb-btc@7", "swing@4", "low_confidence", 'id="review-form"'):  # fmt: skip
        assert text in html, text
    assert 'name="_save"' not in html  # read only
    # audited in alpha's trail by the staff pseudonym, nothing in beta's
    (rec,) = _audit(a, "staff.decision_viewed")
    assert rec.actor == f"user:{officer.pk}" and rec.object_type == "Decision"
    assert rec.object_id == str(item.decision_id)
    assert _audit(b, "staff.decision_viewed") == []
    # the changelist is not an opening of any decision
    c.get(URL)
    assert len(_audit(a, "staff.decision_viewed")) == 1


def test_mark_reviewed_from_the_change_page_needs_a_comment_and_is_audited(c, officer, items, a):
    item = items["buy"]
    url = f"{URL}{item.pk}/review/"
    # when: posted without a comment -> nothing written, the page says what to do
    r = c.post(url, {"comment": "   "}, follow=True)
    assert "Not marked reviewed" in r.content.decode()
    item.refresh_from_db()
    assert item.reviewed_at is None and _audit(a, "decision.reviewed") == []
    # when: with a comment
    r = c.post(url, {"comment": "Checked the veto: override approved by desk head."})
    assert r.status_code == 302 and r["Location"] == f"{URL}{item.pk}/change/"
    item.refresh_from_db()
    assert item.reviewed_at is not None and item.reviewed_by == officer
    assert item.review_comment == "Checked the veto: override approved by desk head."
    (rec,) = _audit(a, "decision.reviewed")
    assert rec.actor == f"user:{officer.pk}" and rec.object_id == str(item.decision_id)
    assert rec.details["comment"] == item.review_comment and "officer@" not in json.dumps(rec.details)
    # a second review keeps the first
    c.post(url, {"comment": "again"})
    item.refresh_from_db()
    assert item.review_comment.startswith("Checked") and len(_audit(a, "decision.reviewed")) == 1


def test_bulk_mark_reviewed_asks_for_a_comment_on_an_intermediate_page(c, officer, items, a, b):
    chosen = (items["buy"], items["blocked"])
    # first post: the intermediate page, nothing written
    r = _act(c, "mark_reviewed", *chosen)
    assert r.status_code == 200 and 'name="comment"' in r.content.decode() and "2 selected" in r.content.decode()
    # a blank comment: refused, nothing written
    r = _act(c, "mark_reviewed", *chosen, apply="1", comment="")
    assert r.status_code == 400 and "required" in r.content.decode()
    assert not ReviewItem.objects.exclude(reviewed_at=None).exists()
    # with a comment: both reviewed, each audited in its own tenant
    r = _act(c, "mark_reviewed", *chosen, apply="1", comment="Weekly sample review.")
    assert r.status_code == 302
    assert set(ReviewItem.objects.exclude(reviewed_at=None).values_list("pk", flat=True)) == {i.pk for i in chosen}
    assert [r.object_id for r in _audit(a, "decision.reviewed")] == [str(items["buy"].decision_id)]
    assert [r.object_id for r in _audit(b, "decision.reviewed")] == [str(items["blocked"].decision_id)]


def test_export_csv_and_json_hold_the_selected_items_and_each_tenant_records_it(c, officer, items, a, b):
    r = _act(c, "export_csv", items["buy"], items["blocked"])
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    assert r["Content-Disposition"].startswith('attachment; filename="decisions-review-')
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert {(row["tenant"], row["symbol"], row["action"], row["flags"]) for row in rows} == {
        ("alpha", "BTCUSDT", "BUY", "against_risk low_confidence"),
        ("beta", "SOLUSDT", "HOLD", "control_block"),
    }
    r = _act(c, "export_json", items["buy"])
    (row,) = json.loads(r.content)
    assert r["Content-Type"] == "application/json"
    assert (row["decision_id"], row["flow"], row["model_version"], row["confidence"]) == (
        items["buy"].decision_id, "swing@4", "xgb-btc@7", 0.5)  # fmt: skip
    # audited per tenant: which decisions, in which format, by whom
    exports = _audit(a, "review.exported")
    assert [(e.details["format"], e.details["decision_ids"]) for e in exports] == [
        ("csv", [items["buy"].decision_id]), ("json", [items["buy"].decision_id])]  # fmt: skip
    assert all(e.actor == f"user:{officer.pk}" for e in exports)
    assert [e.details["decision_ids"] for e in _audit(b, "review.exported")] == [[items["blocked"].decision_id]]


def test_reflag_action_applies_the_current_rules(c, items):
    FlagRule.objects.filter(code="low_confidence").update(min_confidence=0.4)
    r = _act(c, "reflag", items["buy"])
    assert r.status_code == 302
    items["buy"].refresh_from_db()
    assert items["buy"].flags == ["against_risk"]


def test_staff_edit_a_flag_rule_and_a_bad_value_is_refused(c):
    rule = FlagRule.objects.get(code="low_confidence")
    url = f"/admin/review/flagrule/{rule.pk}/change/"
    r = c.post(url, {"enabled": "on", "min_confidence": "1.7", "description": rule.description})
    assert r.status_code == 200 and "between 0 and 1" in r.content.decode()
    r = c.post(url, {"enabled": "on", "min_confidence": "0.6", "description": rule.description})
    assert r.status_code == 302
    rule.refresh_from_db()
    assert rule.min_confidence == 0.6
    assert c.get(f"/admin/review/flagrule/{rule.pk}/delete/").status_code == 403


# --- who may see it ----------------------------------------------------------------------------


def test_non_staff_are_sent_to_the_login_page(alpha, items):
    client = _client(alpha.users["owner"])
    for url in (URL, f"{URL}{items['buy'].pk}/change/", f"{URL}{items['buy'].pk}/review/", "/admin/review/flagrule/"):
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith("/admin/login/"), url
    assert _audit(alpha.tenant, "staff.decision_viewed") == []


def test_staff_without_the_permission_get_403_and_nothing_is_audited(a, items):
    client = _client(_staff("ops@review.test"))
    item = items["buy"]
    assert client.get(URL).status_code == 403
    assert client.get(f"{URL}{item.pk}/change/").status_code == 403
    assert client.post(f"{URL}{item.pk}/review/", {"comment": "x"}).status_code == 403
    assert _act(client, "export_csv", item).status_code == 403
    assert URL not in client.get("/admin/").content.decode()
    assert _audit(a, "staff.decision_viewed") == [] and _audit(a, "review.exported") == []
    item.refresh_from_db()
    assert item.reviewed_at is None


def test_view_only_staff_see_but_cannot_review_or_export(a, items):
    client = _client(_staff("viewer@review.test", "view_reviewitem"))
    item = items["buy"]
    r = client.get(f"{URL}{item.pk}/change/")
    assert r.status_code == 200 and 'id="review-form"' not in r.content.decode()
    assert client.post(f"{URL}{item.pk}/review/", {"comment": "x"}).status_code == 403
    changelist = client.get(URL).content.decode()
    assert "export_csv" not in changelist and "mark_reviewed" not in changelist
    r = _act(client, "export_csv", item)  # not an action they have: no file, nothing recorded
    assert "Content-Disposition" not in r and _audit(a, "review.exported") == []
    item.refresh_from_db()
    assert item.reviewed_at is None


def test_an_export_above_the_limit_is_refused_with_what_to_do_and_records_nothing(c, items, a, monkeypatch):
    from review import services

    monkeypatch.setattr(services, "EXPORT_MAX", 1)
    r = _act(c, "export_json", items["buy"], items["hold"], follow=True)
    html = r.content.decode()
    assert "Content-Disposition" not in r and "narrow the filters and export in parts" in html
    assert _audit(a, "review.exported") == []
