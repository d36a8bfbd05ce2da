"""The admins' notification pages: webhook endpoints (signing secret shown once, a verification
snippet that really verifies, enable/disable, rotate, delete) and the delivery log (filters, pages,
the dead letters and retrying them). Members read their own deliveries only and may not retry;
other roles get 403 on admin pages; another tenant's objects are not found."""

from __future__ import annotations

import html
import json
import re

import pytest
from django_tenants.utils import schema_context

from notifications import signing
from notifications.models import Channel, Delivery, Event, Subscription, WebhookEndpoint
from tenants.models import Role
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db

HOOKS = "/app/notifications/webhooks/"
LOG = "/app/notifications/deliveries/"


def _hooks(fx) -> list[WebhookEndpoint]:
    with schema_context(fx.tenant.schema_name):
        return list(WebhookEndpoint.objects.order_by("id"))


def _secret(page: str) -> str:
    return html.unescape(re.search(r"data-secret>([^<]+)<", page).group(1))


# --- webhooks -----------------------------------------------------------------------------------------


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once_with_a_snippet_that_verifies(alpha):
    c = dashboard_client(alpha, Role.ADMIN)
    assert 'data-empty="webhooks"' in c.get(HOOKS).content.decode()
    r = c.post(HOOKS, {"name": "crm", "url": "http://127.0.0.1:9/hooks/ati"})
    page = r.content.decode()
    assert r.status_code == 201 and "data-new-secret" in page and "no-store" in r["Cache-Control"]
    secret = _secret(page)
    assert secret.startswith("whsec_")
    (endpoint,) = _hooks(alpha)
    assert endpoint.name == "crm" and endpoint.enabled
    # the secret is never shown again
    assert secret not in c.get(HOOKS).content.decode()
    # the page's snippet verifies what the engine signs, and refuses a tampered body or an old one
    snippet = html.unescape(re.search(r"<pre data-verify-snippet>(.*?)</pre>", page, re.S).group(1))
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the page's own example, run as a customer would
    body = json.dumps({"id": 1, "type": "test"}).encode()
    header = signing.sign(secret, body)
    assert scope["verify"](secret, header, body) is True
    assert scope["verify"](secret, header, body + b" ") is False
    assert scope["verify"](secret, signing.sign(secret, body, timestamp=1_000_000), body) is False
    assert "5 minutes" in page and "X-ATI-Signature" in page


@pytest.mark.parametrize(
    "form,status,message",
    [
        ({"name": "Bad Name!", "url": "http://127.0.0.1:9/h"}, 400, "name: 1-64 of a-z"),
        ({"name": "ok", "url": "ftp://example.test/h"}, 400, "The URL must be"),
        ({"name": "ok", "url": "http://user:pw@127.0.0.1:9/h"}, 400, "Put no credentials in the URL"),
        ({"name": "ok", "url": ""}, 400, "The URL must be"),
    ],
)
def test_bad_endpoints_are_refused_on_the_form_and_nothing_is_written(alpha, form, status, message):
    r = dashboard_client(alpha, Role.OWNER).post(HOOKS, form)
    page = r.content.decode()
    assert r.status_code == status and message in html.unescape(page) and "data-form-errors" in page
    assert "data-new-secret" not in page and _hooks(alpha) == []


def test_a_taken_name_is_refused(alpha):
    c = dashboard_client(alpha, Role.OWNER)
    c.post(HOOKS, {"name": "crm", "url": "http://127.0.0.1:9/a"})
    r = c.post(HOOKS, {"name": "crm", "url": "http://127.0.0.1:9/b"})
    assert r.status_code == 409 and 'data-error-code="name_taken"' in r.content.decode()
    assert [h.url for h in _hooks(alpha)] == ["http://127.0.0.1:9/a"]


def test_an_admin_disables_rotates_and_deletes_an_endpoint(alpha):
    c = dashboard_client(alpha, Role.ADMIN)
    first = _secret(c.post(HOOKS, {"name": "crm", "url": "http://127.0.0.1:9/h"}).content.decode())
    (endpoint,) = _hooks(alpha)
    r = c.post(f"{HOOKS}{endpoint.pk}/toggle/", follow=True)
    assert "Webhook &#x27;crm&#x27; disabled." in r.content.decode() and not _hooks(alpha)[0].enabled
    c.post(f"{HOOKS}{endpoint.pk}/toggle/")
    assert _hooks(alpha)[0].enabled
    r = c.post(f"{HOOKS}{endpoint.pk}/rotate/")
    page = r.content.decode()
    second = _secret(page)
    assert second != first and second.startswith("whsec_") and "The old secret no longer signs" in page
    # the engine signs with the new secret from now on
    from notifications.channels import forget_secrets, secret_of

    forget_secrets()
    with schema_context(alpha.tenant.schema_name):
        assert secret_of(WebhookEndpoint.objects.get().credential, "test") == second
    # subscribed, then deleted: the subscription goes with it
    from notifications.services import subscription_create

    with schema_context(alpha.tenant.schema_name):
        subscription_create(
            data={"events": ["model.deployed"], "channel": "webhook", "webhook": endpoint.pk}, user_id=None,
            tenant_wide=True, is_admin=True, actor=alpha.users[Role.ADMIN],
        )  # fmt: skip
    r = c.post(f"{HOOKS}{endpoint.pk}/delete/", follow=True)
    assert "deleted" in r.content.decode() and _hooks(alpha) == []
    with schema_context(alpha.tenant.schema_name):
        assert not Subscription.objects.exists()
    assert c.post(f"{HOOKS}{endpoint.pk}/delete/").status_code == 404
    assert c.post(f"{HOOKS}{endpoint.pk}/explode/").status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANALYST])
def test_members_below_admin_get_403_on_webhooks(alpha, role):
    c = dashboard_client(alpha, Role.ADMIN)
    c.post(HOOKS, {"name": "crm", "url": "http://127.0.0.1:9/h"})
    (endpoint,) = _hooks(alpha)
    member = dashboard_client(alpha, role)
    assert member.get(HOOKS).status_code == 403
    assert member.post(HOOKS, {"name": "mine", "url": "http://127.0.0.1:9/m"}).status_code == 403
    for action in ("toggle", "rotate", "delete"):
        r = member.post(f"{HOOKS}{endpoint.pk}/{action}/")
        assert r.status_code == 403 and "data-secret" not in r.content.decode()
    assert [(h.name, h.enabled) for h in _hooks(alpha)] == [("crm", True)]
    tabs = re.search(
        r'<nav class="tabs small" aria-label="Notifications">(.*?)</nav>', member.get(LOG).content.decode(), re.S
    )
    assert "Webhooks" not in tabs.group(1)  # the page's own tabs offer it to admins only


def test_another_tenants_webhook_is_not_found(alpha, beta):
    dashboard_client(beta, Role.OWNER).post(HOOKS, {"name": "beta-hook", "url": "http://127.0.0.1:9/b"})
    (theirs,) = _hooks(beta)
    c = dashboard_client(alpha, Role.OWNER)
    assert "beta-hook" not in c.get(HOOKS).content.decode()
    for action in ("toggle", "rotate", "delete"):
        assert c.post(f"{HOOKS}{theirs.pk}/{action}/").status_code == 404
    assert _hooks(beta)[0].enabled


# --- the delivery log -----------------------------------------------------------------------------------


def delivery(fx, *, status="sent", channel=Channel.INAPP, target=None, event_type="model.deployed", user=None,
             error="", subscription=None) -> Delivery:  # fmt: skip
    with schema_context(fx.tenant.schema_name):
        event = Event.objects.create(type=event_type, data={"name": "m", "version": 1})
        target = target or f"inapp:{(user or fx.users[Role.ADMIN]).pk}"
        return Delivery.objects.create(
            event=event, channel=channel, target=target, idempotency_key=f"{event.pk}:{target}", status=status,
            attempts=6 if status == "dead" else 1, last_error=error, latency_ms=12.5 if status == "sent" else None,
            subscription=subscription,
        )  # fmt: skip


def _status(fx, pk) -> str:
    with schema_context(fx.tenant.schema_name):
        return Delivery.objects.get(pk=pk).status


def _rows(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-delivery="(\d+)"', page)]


def test_admins_read_the_whole_log_with_filters(alpha):
    viewer = alpha.users[Role.VIEWER]
    sent = delivery(alpha, user=viewer)
    mail = delivery(
        alpha, status="pending", channel=Channel.EMAIL, target="email:ops@alpha.test", event_type="quota.80"
    )
    dead = delivery(
        alpha, status="dead", channel=Channel.WEBHOOK, target="webhook:77", error="HTTP 500 from the endpoint"
    )
    c = dashboard_client(alpha, Role.ADMIN)
    page = c.get(LOG).content.decode()
    assert _rows(page) == [dead.pk, mail.pk, sent.pk]
    assert f"in-app: {viewer.email}" in page and "ops@alpha.test" in page and "webhook: #77" in page
    assert "HTTP 500 from the endpoint" in page and "13 ms" in page
    assert "data-dead-count>1<" in page
    assert _rows(c.get(LOG + "?status=sent").content.decode()) == [sent.pk]
    assert _rows(c.get(LOG + "?channel=email").content.decode()) == [mail.pk]
    assert _rows(c.get(LOG + "?event_type=quota.80").content.decode()) == [mail.pk]
    assert _rows(c.get(LOG + "?status=dead&channel=email").content.decode()) == []


@pytest.mark.parametrize("query", ["status=lost", "channel=pigeon", "event_type=made.up"])
def test_a_bad_filter_says_what_is_allowed(alpha, query):
    d = delivery(alpha)
    r = dashboard_client(alpha, Role.ADMIN).get(f"{LOG}?{query}")
    page = r.content.decode()
    # ignored, said so, and the log shown unfiltered
    assert r.status_code == 200 and "data-list-problems" in page and "it is one of" in page
    assert _rows(page) == [d.pk]


def test_the_log_is_paginated(alpha, django_assert_max_num_queries):
    with schema_context(alpha.tenant.schema_name):
        event = Event.objects.create(type="model.deployed", data={})
        Delivery.objects.bulk_create(
            Delivery(event=event, channel="email", target=f"email:u{i}@alpha.test", idempotency_key=f"{event.pk}:{i}")
            for i in range(55)
        )
    c = dashboard_client(alpha, Role.ADMIN)
    c.get(LOG)  # warm the per-process caches (tenant, session)
    with django_assert_max_num_queries(20):
        page = c.get(LOG + "?channel=email").content.decode()
    assert len(_rows(page)) == 50 and "Page 1 of 2" in page and "?channel=email&amp;page=2" in page
    assert len(_rows(c.get(LOG + "?channel=email&page=2").content.decode())) == 5


def test_members_read_only_their_own_deliveries_and_cannot_retry(alpha):
    viewer = alpha.users[Role.VIEWER]
    with schema_context(alpha.tenant.schema_name):
        own_sub = Subscription.objects.create(
            user_id=viewer.pk, events=["model.deployed"], channel="email", email="viewer@alpha.test", created_by="x"
        )
    mine = delivery(alpha, user=viewer)
    mine_mail = delivery(alpha, status="dead", channel="email", target="email:viewer@alpha.test", subscription=own_sub)
    others = delivery(alpha, status="dead")  # the admin's centre
    c = dashboard_client(alpha, Role.VIEWER)
    page = c.get(LOG).content.decode()
    assert _rows(page) == [mine_mail.pk, mine.pk] and "data-retry" not in page
    assert _rows(c.get(LOG + "?status=dead").content.decode()) == [mine_mail.pk]
    for pk in (mine_mail.pk, others.pk):
        assert c.post(f"{LOG}{pk}/retry/").status_code == 403
    assert c.post(f"{LOG}retry-dead/").status_code == 403
    assert _status(alpha, mine_mail.pk) == _status(alpha, others.pk) == "dead"


def test_an_admin_retries_a_dead_delivery_and_it_is_pending_and_queued(alpha, django_capture_on_commit_callbacks):
    dead = delivery(alpha, status="dead", error="HTTP 500")
    c = dashboard_client(alpha, Role.ADMIN)
    page = c.get(LOG + "?status=dead").content.decode()
    assert _rows(page) == [dead.pk] and "data-retry" in page and "Retry all dead" in page
    with django_capture_on_commit_callbacks() as queued:
        r = c.post(f"{LOG}{dead.pk}/retry/", {"next": LOG + "?status=dead"})
    assert r.status_code == 302 and r["Location"] == LOG + "?status=dead"
    assert len(queued) == 1  # the deliver task, sent after commit
    with schema_context(alpha.tenant.schema_name):
        d = Delivery.objects.get(pk=dead.pk)
        assert d.status == "pending" and d.attempts == 0 and d.manual_retries == 1
    page = c.get(LOG + "?status=dead").content.decode()
    assert _rows(page) == [] and 'data-empty="deliveries"' in page
    # retrying what is not dead says so and changes nothing
    r = c.post(f"{LOG}{dead.pk}/retry/", follow=True)
    assert "Only dead deliveries are retried by hand; this one is pending." in r.content.decode()
    # an outside "next" is not followed
    assert c.post(f"{LOG}{dead.pk}/retry/", {"next": "https://evil.test/"})["Location"] == LOG


def test_an_admin_retries_all_dead_deliveries(alpha, django_capture_on_commit_callbacks):
    first, second = (
        delivery(alpha, status="dead"),
        delivery(alpha, status="dead", channel="email", target="email:a@b.test"),
    )
    sent = delivery(alpha)
    c = dashboard_client(alpha, Role.OWNER)
    with django_capture_on_commit_callbacks() as queued:
        r = c.post(f"{LOG}retry-dead/", {"next": LOG + "?status=dead"}, follow=True)
    assert "2 dead deliveries are pending again." in r.content.decode() and len(queued) == 2
    assert [_status(alpha, d.pk) for d in (first, second, sent)] == ["pending", "pending", "sent"]
    r = c.post(f"{LOG}retry-dead/", follow=True)
    assert "No dead deliveries." in r.content.decode()
    assert c.post(f"{LOG}retry-dead/", {"channel": "pigeon"}, follow=True).status_code == 200


def test_another_tenants_delivery_is_not_found(alpha, beta):
    theirs = delivery(beta, status="dead", user=beta.users[Role.OWNER])
    c = dashboard_client(alpha, Role.OWNER)
    assert theirs.pk not in _rows(c.get(LOG).content.decode())
    with schema_context(alpha.tenant.schema_name):
        assert not Delivery.objects.filter(pk=theirs.pk).exists()
    assert c.post(f"{LOG}{theirs.pk}/retry/").status_code == 404
    assert _status(beta, theirs.pk) == "dead"
