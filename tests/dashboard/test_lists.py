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
    url: str | Callable  # a callable gets the needle (or what ``clear`` returns): a page of one object
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
    base: dict = field(default_factory=dict)  # query every request carries (the page's own state)

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


def _backtests(fx):
    from backtesting.models import BacktestRun

    def run(symbol, state):
        return BacktestRun(strategy="sma_cross", symbol=symbol, timeframe="1d", state=state)

    needle = BacktestRun.objects.bulk_create([run("NEEDLE", "succeeded")])[0]
    return needle, BacktestRun.objects.bulk_create([run(f"HAY{i}", "failed") for i in range(HAY)])


def _feature_set():
    from features.models import FeatureSet

    return FeatureSet.objects.create(name="list-fs", version=1, spec={}, spec_hash="1" * 64, columns=["f"], warmup=1)


def _version(model, number, *, fs, symbol="NEEDLE", no_edge=False):
    from models_registry.models import ModelVersion

    return ModelVersion(model=model, version=number, status="ready", task="binary", target={}, feature_set=fs,
                        symbol=symbol, timeframe="1d", no_edge=no_edge)  # fmt: skip


def _models(fx):
    from models_registry.models import ModelAlias, ModelVersion, RegisteredModel

    needle = RegisteredModel.objects.create(name="needle")
    version = ModelVersion.objects.bulk_create([_version(needle, 1, fs=_feature_set())])[0]
    ModelAlias.objects.create(model=needle, name="production", version=version)
    return needle, RegisteredModel.objects.bulk_create([RegisteredModel(name=f"hay-{i}") for i in range(HAY)])


def _jobs(fx):
    from models_registry.models import TrainingJob

    needle = TrainingJob.objects.bulk_create([TrainingJob(model_name="needle", params={}, state="succeeded")])[0]
    return needle, TrainingJob.objects.bulk_create(
        [TrainingJob(model_name=f"hay-{i}", params={}, state="failed") for i in range(HAY)]
    )


def _list_model(fx):
    from models_registry.models import RegisteredModel

    return RegisteredModel.objects.create(name="list-model")


def _versions(fx):
    from models_registry.models import ModelVersion

    model, fs = _list_model(fx), _feature_set()
    needle = ModelVersion.objects.bulk_create([_version(model, 1, fs=fs)])[0]
    hay = [_version(model, n, fs=fs, symbol="HAY", no_edge=True) for n in range(2, HAY + 2)]
    return needle, ModelVersion.objects.bulk_create(hay)


def _events(n):
    from notifications.models import Event

    return Event.objects.bulk_create([Event(type="model.deployed", data={}) for _ in range(n)])


def _inbox(fx):
    from notifications.models import Delivery, InAppNotification

    uid = fx.users["owner"].pk
    deliveries = Delivery.objects.bulk_create(
        [Delivery(event=e, channel="inapp", target=f"inapp:{uid}", idempotency_key=f"list:{e.pk}", status="sent")
         for e in _events(HAY + 1)]
    )  # fmt: skip
    notes = [
        InAppNotification(user_id=uid, delivery=d, title="needle note" if i == 0 else f"hay note {i}",
                          severity="critical" if i == 0 else "info", read_at=None if i == 0 else timezone.now())
        for i, d in enumerate(deliveries)
    ]  # fmt: skip
    rows = InAppNotification.objects.bulk_create(notes)
    return rows[0], rows[1:]


def _deliveries(fx):
    from notifications.models import Delivery

    rows = Delivery.objects.bulk_create(
        [Delivery(event=e, channel="email" if i == 0 else "inapp", status="sent" if i == 0 else "dead",
                  target="email:needle@list.test" if i == 0 else f"inapp:{900000 + i}", idempotency_key=f"list:{e.pk}")
         for i, e in enumerate(_events(HAY + 1))]
    )  # fmt: skip
    return rows[0], rows[1:]


def _subscriptions(fx):
    from notifications.models import Subscription

    uid = fx.users["owner"].pk
    needle = Subscription.objects.bulk_create(
        [Subscription(name="needle sub", user_id=uid, events=["decision"], channel="email", email="n@list.test")]
    )[0]
    hay = [Subscription(name=f"hay sub {i}", user_id=uid, events=["decision"], channel="inapp", enabled=False)
           for i in range(HAY)]  # fmt: skip
    return needle, Subscription.objects.bulk_create(hay)


def _webhooks(fx):
    from compliance.models import Credential
    from notifications.models import WebhookEndpoint

    cred = Credential.objects.create(name="list-hooks", kind="webhook", ciphertext=b"x", created_by="test")

    def hook(name, enabled):
        return WebhookEndpoint(name=name, url=f"https://{name}.test/h", credential=cred, enabled=enabled)

    needle = WebhookEndpoint.objects.bulk_create([hook("needle", True)])[0]
    return needle, WebhookEndpoint.objects.bulk_create([hook(f"hay-{i}", False) for i in range(HAY)])


def _alerts(fx):
    from analytics.models import Alert

    def alert(rule, severity):
        return Alert(rule=rule, severity=severity, state="resolved", value=1.0, threshold=2.0, message=f"{rule} gone",
                     last_seen_at=timezone.now(), resolved_at=timezone.now())  # fmt: skip

    needle = Alert.objects.bulk_create([alert("needle", "critical")])[0]
    return needle, Alert.objects.bulk_create([alert(f"hay-{i}", "info") for i in range(HAY)])


def _alert_rules(fx):
    from analytics.models import AlertRule

    def rule(name, severity, enabled):
        return AlertRule(name=name, label=name, metric="accuracy", comparator="below", threshold=0.5,
                         severity=severity, enabled=enabled, created_by="test")  # fmt: skip

    needle = AlertRule.objects.bulk_create([rule("needle", "critical", True)])[0]
    return needle, AlertRule.objects.bulk_create([rule(f"hay-{i}", "info", False) for i in range(HAY)])


def _endpoints(fx):
    from analytics.models import UsageDaily

    today = timezone.now().date()

    def usage(name, status):
        return UsageDaily(day=today, kind="request", name=name, status=status, count=3)

    needle = UsageDaily.objects.bulk_create([usage("GET /api/v1/needle/", "5xx")])[0]
    return needle, UsageDaily.objects.bulk_create([usage(f"GET /api/v1/hay-{i}/", "429") for i in range(HAY)])


def _endpoints_clear(fx):
    from analytics.models import UsageDaily
    from tenants import limits

    UsageDaily.objects.all().delete()
    limits._redis().flushdb()  # counts not yet rolled up


def _invoices(fx):
    from billing.models import Invoice

    def invoice(i, number, status):
        start = OLD + dt.timedelta(days=31 * i)
        return Invoice(number=number, tenant=fx.tenant, plan="pro", period_start=start,
                       period_end=start + dt.timedelta(days=30), total=10, status=status, due_at=start)  # fmt: skip

    needle = Invoice.objects.bulk_create([invoice(0, "INV-NEEDLE", "paid")])[0]
    return needle, Invoice.objects.bulk_create([invoice(i + 1, f"INV-HAY-{i}", "open") for i in range(HAY)])


def _invoices_clear(fx):
    from billing.models import Invoice

    Invoice.objects.filter(tenant=fx.tenant).delete()


def _config_versions(fx):
    from configuration.models import ConfigVersion

    def version(n, comment, source):
        return ConfigVersion(environment="dev", version=n, values={}, comment=comment, source=source)

    needle = ConfigVersion.objects.bulk_create([version(1, "needle change", "rollback")])[0]
    return needle, ConfigVersion.objects.bulk_create([version(n, f"hay {n}", "edit") for n in range(2, HAY + 2)])


def _trades(fx):
    from backtesting.models import BacktestRun, BacktestTrade

    run = BacktestRun.objects.create(strategy="sma_cross", symbol="LIST", timeframe="1d", state="succeeded")

    def trade(n, pnl, reason):
        return BacktestTrade(run=run, n=n, entry_time=OLD, exit_time=OLD, entry_price=1, exit_price=1, size=1,
                             pnl=pnl, return_pct=pnl, commission=0, reason=reason)  # fmt: skip

    needle = BacktestTrade.objects.bulk_create([trade(1, 5.0, "stop_loss")])[0]
    return needle, BacktestTrade.objects.bulk_create([trade(n, -1.0, "signal") for n in range(2, HAY + 2)])


def _trades_clear(fx):
    from backtesting.models import BacktestRun, BacktestTrade

    run = BacktestRun.objects.create(strategy="sma_cross", symbol="LIST", timeframe="1d", state="succeeded")
    return BacktestTrade(run=run)  # where the page is: a run without trades


def _chats(fx):
    from compliance.models import Credential
    from notifications.models import TelegramBot, TelegramChat

    cred = Credential.objects.create(name="list-bot", kind="telegram", ciphertext=b"x", created_by="test")
    bot = TelegramBot.objects.create(name="list-bot", credential=cred, bot_id=1, username="list_bot", created_by="t")

    def chat(chat_id, title, verified):
        return TelegramChat(bot=bot, chat_id=chat_id, title=title, created_by="t",
                            verified_at=timezone.now() if verified else None)  # fmt: skip

    needle = TelegramChat.objects.bulk_create([chat("-100777", "needle group", True)])[0]
    return needle, TelegramChat.objects.bulk_create([chat(f"-200{i}", f"hay group {i}", False) for i in range(HAY)])


def _alias_history(fx):
    from models_registry.models import AliasEvent

    model = _list_model(fx)

    def event(alias, action, reason):
        return AliasEvent(model=model, alias=alias, action=action, reason=reason, to_version=1, actor="t")

    needle = AliasEvent.objects.bulk_create([event("production", "deploy", "needle reason")])[0]
    return needle, AliasEvent.objects.bulk_create([event("challenger", "assign", f"hay {i}") for i in range(HAY)])


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
    Case("backtests", "/app/backtests/", _backtests, lambda r: f'data-backtest="{r.pk}"', "needle",
         {"state": "succeeded"}, {"state": "failed"}, "No backtests yet", _delete("backtesting.models.BacktestRun"),
         {**BAD, "state": "won", "strategy": "magic"}),
    Case("models", "/app/models/", _models, lambda m: f'data-model="{m.name}"', "needle",
         {"deployed": "production"}, {"deployed": "none"}, "No models yet",
         _delete("models_registry.models.RegisteredModel"), {**BAD, "deployed": "moon"}),
    Case("jobs", "/app/models/", _jobs, lambda j: f'data-job="{j.pk}"', "needle",
         {"job_state": "succeeded"}, {"job_state": "failed"}, "No training jobs yet",
         _delete("models_registry.models.TrainingJob"), {"job_state": "x", "job_to": "soon"}, prefix="job_"),
    Case("versions", "/app/models/list-model/", _versions, lambda v: f'data-version="{v.version}"', "needle",
         {"verdict": "edge"}, {"verdict": "no-edge"}, "No versions yet", _list_model,
         {**BAD, "verdict": "?", "status": "?"}),
    Case("notifications", "/app/notifications/", _inbox, lambda n: f'data-notification="{n.pk}"', "needle",
         {"state": "unread", "severity": "critical"}, {"state": "read"}, "No notifications yet",
         _delete("notifications.models.InAppNotification"), {**BAD, "state": "new", "severity": "loud"}),
    Case("deliveries", "/app/notifications/deliveries/", _deliveries, lambda d: f'data-delivery="{d.pk}"', "needle",
         {"channel": "email"}, {"status": "dead"}, "Nothing delivered yet", _delete("notifications.models.Delivery"),
         {**BAD, "channel": "pigeon", "event_type": "made.up"}),
    Case("subscriptions", "/app/notifications/subscriptions/", _subscriptions, lambda s: f'data-subscription="{s.pk}"',
         "needle", {"channel": "email"}, {"state": "disabled"}, "No subscriptions yet",
         _delete("notifications.models.Subscription"), {**BAD, "channel": "x", "whose": "x", "event": "x"}),
    Case("webhooks", "/app/notifications/webhooks/", _webhooks, lambda w: f'data-webhook="{w.name}"', "needle",
         {"state": "enabled"}, {"state": "disabled"}, "No webhook endpoints yet",
         _delete("notifications.models.WebhookEndpoint"), {**BAD, "state": "x"}),
    Case("alerts", "/app/notifications/alerts/", _alerts, lambda a: f'data-alert="{a.pk}"', "needle",
         {"severity": "critical"}, {"severity": "info"}, "No resolved alerts yet", _delete("analytics.models.Alert"),
         {**BAD, "severity": "x", "acknowledged": "x"}),
    Case("alert-rules", "/app/notifications/alert-rules/", _alert_rules, lambda r: f'data-rule="{r.name}"', "needle",
         {"severity": "critical", "kind": "custom"}, {"enabled": "no"}, None, bad={**BAD, "kind": "x", "enabled": "x"}),
    Case("endpoints", "/app/usage/", _endpoints, lambda u: f'data-endpoint="{u.name}"', "needle",
         {"errors": "server"}, {"errors": "limited"}, "No API requests in the last 30 days", _endpoints_clear,
         {**BAD, "errors": "x"}),
    Case("invoices", "/app/billing/", _invoices, lambda i: f'data-invoice="{i.number}"', "needle",
         {"status": "paid"}, {"status": "open"}, "No invoices yet", _invoices_clear, {**BAD, "status": "x"}),
    Case("config-history", "/app/config/", _config_versions, lambda v: f'data-config-version="{v.version}"', "needle",
         {"source": "rollback"}, {"source": "edit"}, "Nothing stored yet",
         _delete("configuration.models.ConfigVersion"), {**BAD, "source": "x"}, base={"env": "dev"}),
    Case("trades", lambda t: f"/app/backtests/{t.run_id}/", _trades, lambda t: f'data-trade="{t.n}"', "stop",
         {"result": "won"}, {"result": "lost"}, "No trade closed", _trades_clear,
         {**BAD, "result": "x", "reason": "x"}),
    Case("chats", "/app/notifications/telegram/", _chats, lambda c: f'data-chat="{c.chat_id}"', "needle",
         {"verified": "yes"}, {"verified": "no"}, "No chats yet", _delete("notifications.models.TelegramChat"),
         {**BAD, "bot": "0", "verified": "x"}),
    Case("alias-history", "/app/models/list-model/", _alias_history, lambda e: f'data-alias-event="{e.pk}"', "needle",
         {"h_alias": "production"}, {"h_action": "assign"}, "No alias has moved yet", _list_model,
         {"h_alias": "x", "h_from": "x"}, prefix="h_"),
]  # fmt: skip


def _get(fx, case: Case, params: dict | str, on=None):
    url = case.url(on) if callable(case.url) else case.url
    client = dashboard_client(fx, case.role)
    r = client.get(url, {**case.base, **params}) if isinstance(params, dict) else client.get(url + params)
    assert r.status_code == 200, (r.status_code, url, params)
    return r.content.decode()


def _seed(fx, case: Case):
    with schema_context(fx.tenant.schema_name):
        return case.seed(fx)


def _listed(page: str, case: Case, rows) -> list:
    return [r for r in rows if case.marker(r) in page]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_search_narrows_the_list(alpha, case):
    needle, hay = _seed(alpha, case)
    page = _get(alpha, case, {case.key("q"): case.search}, needle)
    assert case.marker(needle) in page and _listed(page, case, hay) == []
    assert f'value="{case.search}"' in page and "data-clear-filters" in page  # the box keeps it; one link clears it


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_filter_narrows_the_list(alpha, case):
    needle, hay = _seed(alpha, case)
    page = _get(alpha, case, case.filter, needle)
    assert case.marker(needle) in page and _listed(page, case, hay) == []
    page = _get(alpha, case, case.hay_filter, needle)
    assert case.marker(needle) not in page and _listed(page, case, hay)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_page_two_exists_and_its_links_keep_the_filters(alpha, case):
    needle, hay = _seed(alpha, case)
    first = _get(alpha, case, {**case.hay_filter, case.key("per_page"): "10"}, needle)
    assert "Page 1 of 2" in first
    nxt = html_lib.unescape(re.search(r'href="([^"]*)"[^>]*data-page-next', first).group(1))
    assert f"{case.key('page')}=2" in nxt and f"{case.key('per_page')}=10" in nxt
    assert all(f"{k}={v}" in nxt for k, v in case.hay_filter.items())
    second = _get(alpha, case, nxt, needle)
    assert "Page 2 of 2" in second and "data-page-prev" in second and "data-page-next" not in second
    on_first, on_second = _listed(first, case, hay), _listed(second, case, hay)
    assert len(on_first) + len(on_second) == HAY and not set(on_first) & set(on_second)
    assert case.marker(needle) not in first + second


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_search_without_match_says_so_and_offers_to_clear(alpha, case):
    needle, _ = _seed(alpha, case)
    page = _get(alpha, case, {case.key("q"): "zz-nothing-like-this", **case.filter}, needle)
    assert "match these filters" in page and "data-clear-filters" in page
    assert f'data-no-match="{case.id}"' in page
    if case.empty:
        assert case.empty not in page  # not the "nothing here yet" text: there is something, filtered out


@pytest.mark.parametrize("case", [c for c in CASES if c.empty], ids=lambda c: c.id)
def test_an_empty_list_says_what_to_do_next(alpha, case):
    with schema_context(alpha.tenant.schema_name):
        where = case.clear(alpha)
    page = _get(alpha, case, {}, where)
    assert case.empty in page and "match these filters" not in page
    assert f'data-form="filter-{case.id}"' not in page  # nothing to search yet


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_nonsense_filter_values_are_ignored_with_a_message(alpha, case):
    needle, hay = _seed(alpha, case)
    page = _get(alpha, case, case.bad, needle)
    assert "data-list-problems" in page and "Ignored" in page
    assert case.marker(needle) in page  # the list as if unfiltered


def test_the_menu_marks_the_page_and_its_area_and_every_page_skips_to_content(alpha):
    with schema_context(alpha.tenant.schema_name):
        _list_model(alpha)
    c = dashboard_client(alpha, "owner")
    home = c.get("/app/models/").content.decode()
    assert re.search(r'<a href="/app/models/" data-area="models" aria-current="page">', home)
    detail = c.get("/app/models/list-model/").content.decode()
    assert re.search(r'<a href="/app/models/" data-area="models" aria-current="true">', detail)
    sidebar = detail.split("</nav>")[0]
    assert 'aria-current="page"' not in sidebar  # a model's page is in Models, not one of the menu's pages
    for page in (home, detail):
        assert (
            '<a class="skip-link" href="#content">Skip to content</a>' in page and 'id="content" tabindex="-1"' in page
        )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_longer_page_costs_no_more_queries(alpha, case):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    needle, _ = _seed(alpha, case)
    _get(alpha, case, {case.key("per_page"): "10"}, needle)  # warm the per-process caches
    counts = []
    for size in ("10", "25"):
        with CaptureQueriesContext(connection) as queries:
            _get(alpha, case, {case.key("per_page"): size}, needle)
        counts.append(len(queries))
    assert counts[0] == counts[1], f"{counts[1] - counts[0]} more queries for 15 more rows: one a row"


def test_dates_and_page_size_fold_away_unless_set(alpha):
    case = next(c for c in CASES if c.id == "kill-switches")
    _seed(alpha, case)
    assert '<details class="list-more">' in _get(alpha, case, {})
    assert '<details class="list-more" open>' in _get(alpha, case, {"from": "2020-01-01"})
    assert '<details class="list-more" open>' in _get(alpha, case, {"per_page": "50"})
    page = _get(alpha, case, {"state": "off"})  # a refused value names what is allowed
    assert "Ignored state “off”: it is one of engaged (Engaged)" not in page and "engaged, lifted" in page
