"""The review index is filled per tenant from its decisions: idempotent, watermarked, batched,
one indexer per tenant at a time, retained five years."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from intelligence.models import Decision
from review.models import IndexState, ReviewItem
from review.services import RETENTION, review_index, review_retention_apply
from tests.review.conftest import T0, decide, index

pytestmark = pytest.mark.django_db


def _watermark(tenant) -> int:
    return IndexState.objects.get(tenant=tenant).last_decision_id


def test_indexes_each_decision_once_and_moves_the_watermark(a):
    # given: three decisions in alpha
    ds = decide(a, 3, action="BUY", confidence=0.8, size=0.05)
    # when: indexed twice
    assert index(a) == 3
    assert index(a) == 0
    # then: one row each, fields copied, the watermark at the highest id
    items = list(ReviewItem.objects.filter(tenant=a).order_by("decision_id"))
    assert [i.decision_id for i in items] == [d.pk for d in ds]
    first = items[0]
    assert (first.symbol, first.timeframe, first.action, first.confidence, first.size) == (
        "BTCUSDT",
        "1m",
        "BUY",
        0.8,
        0.05,
    )
    assert (first.ts, first.flow, first.model_version) == (T0, "default@1", "xgb@3")
    assert _watermark(a) == ds[-1].pk
    # when: a new decision arrives, only it is indexed
    (new,) = decide(a, 1, offset=10)
    assert index(a) == 1
    assert ReviewItem.objects.filter(tenant=a).count() == 4 and _watermark(a) == new.pk


def test_batches_until_done_or_the_tick_budget(a):
    ds = decide(a, 7)
    # a tick with a budget of one batch indexes one batch, the next run the rest
    assert index(a, batch_size=3, max_batches=1) == 3
    assert _watermark(a) == ds[2].pk
    assert index(a, batch_size=3) == 4
    assert ReviewItem.objects.filter(tenant=a).count() == 7 and _watermark(a) == ds[-1].pk


def test_decisions_younger_than_the_lag_wait_for_the_next_run(a):
    decide(a, 2)
    with schema_context(a.schema_name):
        assert review_index(tenant=a) == 0  # just written: an earlier id may still be uncommitted
    assert not IndexState.objects.filter(tenant=a, last_decision_id__gt=0).exists()
    assert index(a) == 2


def test_a_rescan_below_the_watermark_adds_nothing_twice_and_keeps_reviews(a, root_user):
    ds = decide(a, 3)
    index(a)
    ReviewItem.objects.filter(decision_id=ds[0].pk).update(reviewed_at=timezone.now(), review_comment="ok")
    # when: the watermark is reset (e.g. a full rescan) and the indexer runs again
    IndexState.objects.filter(tenant=a).update(last_decision_id=0)
    assert index(a) == 3  # scanned; conflicts are skipped
    # then: still one row per decision, the review untouched
    assert ReviewItem.objects.filter(tenant=a).count() == 3
    assert ReviewItem.objects.get(decision_id=ds[0].pk, tenant=a).review_comment == "ok"


def test_a_second_indexer_skips_the_tenant_while_one_holds_it(a):
    decide(a, 2)
    s = connection.settings_dict
    other = psycopg.connect(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"] or None, host=s["HOST"] or None,
        port=s["PORT"] or None, autocommit=True,
    )  # fmt: skip
    try:
        # given: another session holds alpha's indexer lock
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{a.schema_name}:review-index"])
        # when/then: this indexer does nothing
        assert index(a) == 0
        assert not ReviewItem.objects.filter(tenant=a).exists()
        other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"{a.schema_name}:review-index"])
    finally:
        other.close()
    assert index(a) == 2


def test_each_tenant_is_indexed_from_its_own_schema_only(a, b):
    da = decide(a, 2, symbol="ETHUSDT")
    db_ = decide(b, 1, symbol="SOLUSDT")
    index(a)
    assert set(ReviewItem.objects.values_list("tenant_id", "symbol")) == {(a.pk, "ETHUSDT")}
    index(b)
    assert ReviewItem.objects.filter(tenant=b).get().decision_id == db_[0].pk
    assert ReviewItem.objects.filter(tenant=a).count() == len(da)


def test_the_indexer_refuses_to_run_in_another_tenants_schema(a, b):
    with schema_context(b.schema_name), pytest.raises(RuntimeError, match="must run in schema"):
        review_index(tenant=a)


def test_tenant_tick_indexes_settled_decisions(a):
    from analytics.tasks import tenant_tick

    decide(a, 2)
    with schema_context(a.schema_name):
        Decision.objects.update(created_at=timezone.now() - dt.timedelta(minutes=2))
        out = tenant_tick()
    assert out["review_indexed"] == 2
    assert ReviewItem.objects.filter(tenant=a).count() == 2


def test_items_are_kept_five_years_then_expire(a):
    now = timezone.now()
    decide(a, 1, ts=now - RETENTION - dt.timedelta(days=1))
    decide(a, 1, ts=now - dt.timedelta(days=4 * 365))
    index(a)
    assert review_retention_apply(tenant=a, now=now) == 1
    assert list(ReviewItem.objects.filter(tenant=a).values_list("ts", flat=True)) == [now - dt.timedelta(days=4 * 365)]
    assert RETENTION >= dt.timedelta(days=5 * 365)


@pytest.fixture
def root_user(db):
    from accounts.models import User

    return User.objects.create_superuser(email="root@review.test", password="correct-horse-battery-9")
