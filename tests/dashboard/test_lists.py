"""Every list in the dashboard searches, filters and pages the same way (dashboard/paging.py).

For each list: the search narrows the rows, a filter narrows them, page 2 exists past the page size
and its links keep the filters, an empty list says what to do next, a search that matches nothing
says so and offers to clear the filters, and nonsense in the query string is ignored with a
message (never a 500). Rows are bulk-created: a ``needle`` that the search and the filter find, and
twelve ``hay`` rows that the page-2 filter finds.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db

HAY = 12  # rows past a page of 10
OLD = dt.datetime(2020, 1, 15, 12, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Case:
    """One list: ``seed(fx)`` writes the needle and the hay and returns them; ``marker(row)`` is
    the HTML that shows a row is listed; ``clear(fx)`` removes every row (the empty state)."""

    id: str
    url: str
    seed: Callable
    marker: Callable
    search: str
    filter: dict  # finds the needle, not the hay
    hay_filter: dict  # finds the hay (and maybe fixture rows), not the needle
    empty: str | None  # the empty state's text; None: the list is never empty (members)
    clear: Callable | None = None
    bad: dict = field(default_factory=dict)  # nonsense values the page ignores
    prefix: str = ""
    role: str = "owner"

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def _later(model, rows, **fields):
    """Set auto_now_add fields after a bulk_create (it stamps them with now)."""
    model.objects.filter(pk__in=[r.pk for r in rows]).update(**fields)
    for r in rows:
        for k, v in fields.items():
            setattr(r, k, v)


# --- seeds ------------------------------------------------------------------------------------------


def _keys(fx):
    from tenants.models import ApiKey

    def key(name, prefix, revoked):
        return ApiKey(tenant=fx.tenant, name=name, prefix=prefix, hashed_key="0" * 64, scopes=["read"],
                      revoked_at=timezone.now() if revoked else None)  # fmt: skip

    needle = ApiKey.objects.bulk_create([key("needle key", "lneedle01", False)])[0]
    hay = ApiKey.objects.bulk_create([key(f"hay key {i}", f"lhay{i:05d}", True) for i in range(HAY)])
    return needle, hay


def _keys_clear(fx):
    from tenants.models import ApiKey

    ApiKey.objects.filter(tenant=fx.tenant).delete()


def _members(fx):
    from accounts.models import User
    from tenants.models import Membership

    users = User.objects.bulk_create(
        [User(email="needle@list.test", password="!")]
        + [User(email=f"hay{i}@list.test", password="!") for i in range(HAY)]
    )
    rows = Membership.objects.bulk_create(
        [
            Membership(tenant=fx.tenant, user=u, role="analyst" if u.email.startswith("needle") else "viewer")
            for u in users
        ]
    )
    for m, u in zip(rows, users, strict=True):
        m.user = u
    return rows[0], rows[1:]


def _instruments(fx):
    from marketdata.models import Instrument

    needle = Instrument.objects.bulk_create([Instrument(symbol="NEEDLE", asset_class="crypto")])[0]
    hay = Instrument.objects.bulk_create([Instrument(symbol=f"HAY{i}", asset_class="equity") for i in range(HAY)])
    return needle, hay


def _feature_sets(fx):
    from features.models import FeatureSet

    def fs(name, locked):
        return FeatureSet(name=name, version=1, spec={}, spec_hash="0" * 64, columns=["rsi_14"], warmup=14,
                          locked_at=timezone.now() if locked else None)  # fmt: skip

    needle = FeatureSet.objects.bulk_create([fs("needle", True)])[0]
    return needle, FeatureSet.objects.bulk_create([fs(f"hay-{i}", False) for i in range(HAY)])


def _decisions(fx):
    from intelligence.models import Decision

    def d(symbol, action):
        return Decision(source="api", symbol=symbol, timeframe="1d", ts=OLD, action=action, confidence=0.6)

    needle = Decision.objects.bulk_create([d("NEEDLE", "BUY")])[0]
    return needle, Decision.objects.bulk_create([d(f"HAY{i}", "HOLD") for i in range(HAY)])


def _positions(fx):
    from intelligence.models import Position

    needle = Position.objects.bulk_create([Position(symbol="NEEDLE", qty=2.0, avg_price=10, last_price=11)])[0]
    hay = Position.objects.bulk_create(
        [Position(symbol=f"HAY{i}", qty=-1.0, avg_price=10, last_price=9) for i in range(HAY)]
    )
    return needle, hay


def _fills(fx):
    from intelligence.models import Fill

    needle_d, hay_d = _decisions(fx)
    needle = Fill.objects.bulk_create([Fill(decision=needle_d, symbol="NEEDLE", qty=1.0, price=10)])[0]
    hay = Fill.objects.bulk_create([Fill(decision=d, symbol=d.symbol, qty=-1.0, price=10) for d in hay_d])
    return needle, hay


def _flows(fx):
    from intelligence.models import Flow

    needle = Flow.objects.bulk_create([Flow(name="needle", version=1, config={}, active=True)])[0]
    return needle, Flow.objects.bulk_create([Flow(name=f"hay-{i}", version=1, config={}) for i in range(HAY)])


def _kill_switches(fx):
    from tenants.models import KillSwitch

    # lifted ones only: an engaged switch would halt the tenant (mirrored in Redis) beyond the test
    def ks(reason):
        return KillSwitch(tenant=fx.tenant, reason=reason, engaged_by="ops@x.test", lifted_at=timezone.now(),
                          lifted_by="staff@x.test")  # fmt: skip

    needle = KillSwitch.objects.bulk_create([ks("needle halted")])[0]
    _later(KillSwitch, [needle], engaged_at=OLD)
    return needle, KillSwitch.objects.bulk_create([ks(f"hay halted {i}") for i in range(HAY)])


def _delete(model_path: str) -> Callable:
    def clear(fx):
        module, name = model_path.rsplit(".", 1)
        model = getattr(__import__(module, fromlist=[name]), name)
        model.objects.all().delete()

    return clear


BAD = {"from": "yesterday", "to": "2020-13-45", "per_page": "7", "page": "x"}

CASES = [
    Case("api-keys", "/app/api-keys/", _keys, lambda k: f'data-key="{k.prefix}"', "needle",
         {"state": "active"}, {"state": "revoked"}, "No API keys yet", _keys_clear,
         {**BAD, "state": "lost", "scope": "x"}),
    Case("members", "/app/members/", _members, lambda m: f'data-member="{m.user.email}"', "needle",
         {"role": "analyst"}, {"role": "viewer"}, None, bad={**BAD, "role": "boss"}),
    Case("instruments", "/app/data/", _instruments, lambda i: f'data-instrument="{i.symbol}"', "needle",
         {"asset_class": "crypto"}, {"asset_class": "equity"}, "No market data yet",
         _delete("marketdata.models.Instrument"), {"asset_class": "gold", "per_page": "0"}),
    Case("feature-sets", "/app/features/", _feature_sets, lambda f: f'data-feature-set="{f.ref}"', "needle",
         {"locked": "yes"}, {"locked": "no"}, "No feature sets yet", _delete("features.models.FeatureSet"),
         {**BAD, "locked": "maybe"}),
    Case("decisions", "/app/decisions/", _decisions, lambda d: f'data-decision="{d.pk}"', "needle",
         {"action": "BUY"}, {"action": "HOLD"}, "No decisions yet", _delete("intelligence.models.Decision"),
         {**BAD, "action": "SHORT", "outcome": "?"}),
    Case("positions", "/app/positions/", _positions, lambda p: f'data-position="{p.symbol}"', "needle",
         {"side": "long"}, {"side": "short"}, "No positions yet", _delete("intelligence.models.Position"),
         {"side": "sideways", "per_page": "1000"}),
    Case("fills", "/app/positions/", _fills, lambda f: f'data-fill="{f.pk}"', "needle",
         {"fill_side": "buy"}, {"fill_side": "sell"}, "No fills yet", _delete("intelligence.models.Fill"),
         {"fill_side": "x", "fill_from": "1/2/2020", "fill_page": "-3"}, prefix="fill_"),
    Case("flows", "/app/flows/", _flows, lambda f: f'data-flow="{f.ref}"', "needle",
         {"state": "active"}, {"state": "inactive"}, "No flows stored", _delete("intelligence.models.Flow"),
         {**BAD, "state": "on"}),
    Case("kill-switches", "/app/kill-switch/", _kill_switches, lambda k: f'data-kill-switch-row="{k.pk}"', "needle",
         {"from": "2020-01-01", "to": "2020-01-31"}, {"state": "lifted", "from": "2021-01-01"}, "Never engaged",
         _delete("tenants.models.KillSwitch"), {**BAD, "state": "off", "from": "2021-01-01", "to": "2020-01-01"}),
]  # fmt: skip


def _get(fx, case: Case, params: dict | str):
    client = dashboard_client(fx, case.role)
    r = client.get(case.url, params) if isinstance(params, dict) else client.get(case.url + params)
    assert r.status_code == 200, (r.status_code, case.url, params)
    return r.content.decode()


def _seed(fx, case: Case):
    with schema_context(fx.tenant.schema_name):
        return case.seed(fx)


def _listed(page: str, case: Case, rows) -> list:
    return [r for r in rows if case.marker(r) in page]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_search_narrows_the_list(alpha, case):
    needle, hay = _seed(alpha, case)
    page = _get(alpha, case, {case.key("q"): case.search})
    assert case.marker(needle) in page and _listed(page, case, hay) == []
    assert f'value="{case.search}"' in page and "data-clear-filters" in page  # the box keeps it; one link clears it


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_filter_narrows_the_list(alpha, case):
    needle, hay = _seed(alpha, case)
    page = _get(alpha, case, case.filter)
    assert case.marker(needle) in page and _listed(page, case, hay) == []
    page = _get(alpha, case, case.hay_filter)
    assert case.marker(needle) not in page and _listed(page, case, hay)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_page_two_exists_and_its_links_keep_the_filters(alpha, case):
    needle, hay = _seed(alpha, case)
    first = _get(alpha, case, {**case.hay_filter, case.key("per_page"): "10"})
    assert "Page 1 of 2" in first
    nxt = html_lib.unescape(re.search(r'href="([^"]*)"[^>]*data-page-next', first).group(1))
    assert f"{case.key('page')}=2" in nxt and f"{case.key('per_page')}=10" in nxt
    assert all(f"{k}={v}" in nxt for k, v in case.hay_filter.items())
    second = _get(alpha, case, nxt)
    assert "Page 2 of 2" in second and "data-page-prev" in second and "data-page-next" not in second
    on_first, on_second = _listed(first, case, hay), _listed(second, case, hay)
    assert len(on_first) + len(on_second) == HAY and not set(on_first) & set(on_second)
    assert case.marker(needle) not in first + second


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_search_without_match_says_so_and_offers_to_clear(alpha, case):
    _seed(alpha, case)
    page = _get(alpha, case, {case.key("q"): "zz-nothing-like-this", **case.filter})
    assert "match these filters" in page and "data-clear-filters" in page
    assert f'data-no-match="{case.id}"' in page
    if case.empty:
        assert case.empty not in page  # not the "nothing here yet" text: there is something, filtered out


@pytest.mark.parametrize("case", [c for c in CASES if c.empty], ids=lambda c: c.id)
def test_an_empty_list_says_what_to_do_next(alpha, case):
    with schema_context(alpha.tenant.schema_name):
        case.clear(alpha)
    page = _get(alpha, case, {})
    assert case.empty in page and "match these filters" not in page
    assert f'data-form="filter-{case.id}"' not in page  # nothing to search yet


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_nonsense_filter_values_are_ignored_with_a_message(alpha, case):
    needle, hay = _seed(alpha, case)
    page = _get(alpha, case, case.bad)
    assert "data-list-problems" in page and "Ignored" in page
    assert case.marker(needle) in page  # the list as if unfiltered
