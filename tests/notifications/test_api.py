"""``/api/v1/notifications/``: subscriptions (a member's own, or the tenant's by admins), webhook
endpoints (admins; the signing secret shown once), the delivery log and the in-app inbox."""

import pytest
from django_tenants.utils import schema_context

from compliance.models import AuditRecord, Credential
from notifications import delivery
from notifications.delivery import emit, fanout
from notifications.models import Delivery, InAppNotification, Subscription, WebhookEndpoint
from tenants.models import Role

from .receivers import WebhookReceiver

pytestmark = pytest.mark.django_db
SUBS = "/api/v1/notifications/subscriptions/"
HOOKS = "/api/v1/notifications/webhooks/"


def _code(response):
    return response.json()["error"]["code"]


def _count(alpha, model):
    with schema_context(alpha.tenant.schema_name):
        return model.objects.count()


def test_a_member_subscribes_their_own_centre_and_address(alpha):
    analyst = alpha.users[Role.ANALYST]
    c = alpha.client(role=Role.ANALYST)
    body = {"events": ["decision"], "channel": "inapp", "min_confidence": 0.8, "symbols": ["btc-usd"],
            "quiet_start": "22:00", "quiet_end": "07:00", "timezone": "Europe/Berlin"}  # fmt: skip
    r = c.post(SUBS, body, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["user_id"] == analyst.pk and body["tenant_wide"] is False and body["target"] == f"inapp:{analyst.pk}"
    assert body["symbols"] == ["BTC-USD"] and body["quiet_start"] == "22:00:00" and body["digest"] == "off"
    r = c.post(SUBS, {"events": ["training.failed"], "channel": "email"}, format="json")
    assert r.status_code == 201 and r.json()["email"] == analyst.email
    listed = c.get(SUBS).json()["results"]
    assert len(listed) == 2
    sub_id = body["id"]
    r = c.patch(f"{SUBS}{sub_id}/", {"digest": "daily", "enabled": False}, format="json")
    assert r.status_code == 200 and r.json()["digest"] == "daily" and r.json()["enabled"] is False
    assert c.delete(f"{SUBS}{sub_id}/").status_code == 204
    with schema_context(alpha.tenant.schema_name):
        assert not Subscription.objects.filter(pk=sub_id).exists()
        actions = set(AuditRecord.objects.values_list("action", flat=True))
    assert {"notification.subscribed", "notification.subscription_changed", "notification.unsubscribed"} <= actions


@pytest.mark.parametrize(
    "body, code",
    [
        ({"events": ["nope"], "channel": "inapp"}, "unknown_event"),
        ({"events": [], "channel": "inapp"}, "invalid_input"),
        ({"events": ["decision"], "channel": "pigeon"}, "invalid_input"),
        ({"events": ["decision"], "channel": "inapp", "min_confidence": 2}, "invalid_input"),
        ({"events": ["decision"], "channel": "inapp", "actions": ["SHORT"]}, "invalid_input"),
        ({"events": ["decision"], "channel": "inapp", "quiet_start": "25:00"}, "invalid_input"),
        ({"events": ["decision"], "channel": "inapp", "timezone": "Mars/Olympus"}, "invalid_input"),
        ({"events": ["decision"], "channel": "inapp", "digest": "weekly"}, "invalid_input"),
        ({"events": ["decision"], "channel": "telegram", "telegram_chat": 999999}, "invalid_input"),
        ({"events": ["decision"], "channel": "email", "email": "not-an-address"}, "invalid_input"),
        ({"events": ["test"], "channel": "inapp"}, "unknown_event"),  # internal types are not subscribable
    ],
)
def test_bad_subscriptions_are_refused_and_nothing_is_stored(alpha, body, code):
    r = alpha.client(role=Role.ANALYST).post(SUBS, body, format="json")
    assert r.status_code == 400 and _code(r) == code, r.content
    assert _count(alpha, Subscription) == 0


def test_what_members_may_not_do(alpha):
    c = alpha.client(role=Role.ANALYST)
    r = c.post(SUBS, {"events": ["decision"], "channel": "inapp", "tenant_wide": True}, format="json")
    assert r.status_code == 403 and _code(r) == "insufficient_role"
    r = c.post(SUBS, {"events": ["decision"], "channel": "email", "email": "boss@elsewhere.test"}, format="json")
    assert r.status_code == 403 and _code(r) == "not_your_address"
    r = c.post(SUBS, {"events": ["decision"], "channel": "webhook", "webhook": 1}, format="json")
    assert r.status_code == 403
    assert c.get(HOOKS).status_code == 403
    assert c.post(HOOKS, {"name": "x", "url": "http://127.0.0.1:9/x"}, format="json").status_code == 403
    assert _count(alpha, Subscription) == 0 and _count(alpha, WebhookEndpoint) == 0
    # a read-only API key has no say; an admin-scope key manages the tenant's subscriptions
    assert (
        alpha.client(scope="read").post(SUBS, {"events": ["decision"], "channel": "inapp"}, format="json").status_code
        == 403
    )
    r = alpha.client(scope="admin").post(SUBS, {"events": ["alert.fired"], "channel": "inapp"}, format="json")
    assert r.status_code == 201 and r.json()["tenant_wide"] is True


def test_members_see_their_own_and_the_tenants_subscriptions_only(alpha, beta):
    viewer, analyst = alpha.client(role=Role.VIEWER), alpha.client(role=Role.ANALYST)
    mine = analyst.post(SUBS, {"events": ["decision"], "channel": "inapp"}, format="json").json()["id"]
    shared = (
        alpha.client(role=Role.ADMIN)
        .post(SUBS, {"events": ["alert.fired"], "channel": "inapp", "tenant_wide": True}, format="json")
        .json()["id"]
    )
    assert {s["id"] for s in viewer.get(SUBS).json()["results"]} == {shared}
    assert viewer.get(f"{SUBS}{mine}/").status_code == 404  # another member's: not there for you
    r = viewer.patch(f"{SUBS}{shared}/", {"enabled": False}, format="json")
    assert r.status_code == 403 and _code(r) == "insufficient_role"
    assert {s["id"] for s in alpha.client(role=Role.ADMIN).get(SUBS).json()["results"]} == {mine, shared}
    assert beta.client(role=Role.OWNER).get(f"{SUBS}{mine}/").status_code == 404
    assert beta.client(role=Role.OWNER).delete(f"{SUBS}{mine}/").status_code == 404


def test_webhook_endpoints_secret_shown_once_then_only_signatures(alpha, beta):
    receiver = WebhookReceiver()
    try:
        admin = alpha.client(role=Role.ADMIN)
        r = admin.post(HOOKS, {"name": "ops-desk", "url": receiver.url}, format="json")
        assert r.status_code == 201 and r.json()["secret"].startswith("whsec_") and r["Cache-Control"] == "no-store"
        secret, hook = r.json()["secret"], r.json()["id"]
        assert "secret" not in admin.get(f"{HOOKS}{hook}/").json()
        assert secret not in admin.get(HOOKS).content.decode()
        r = admin.post(HOOKS, {"name": "ops-desk", "url": receiver.url}, format="json")
        assert r.status_code == 409 and _code(r) == "name_taken"
        body = {"events": ["payment.failed"], "channel": "webhook", "webhook": hook, "tenant_wide": True}
        sub = admin.post(SUBS, body, format="json")
        assert sub.status_code == 201, sub.content
        # the test button sends now and says how it went
        receiver.secret = secret
        r = admin.post(f"{SUBS}{sub.json()['id']}/test/")
        assert r.status_code == 200 and r.json()["status"] == "sent", r.content
        assert receiver.received[-1]["event"] == "test" and receiver.refused == []
        # rotating gives a new secret; the old one no longer verifies
        new = admin.post(f"{HOOKS}{hook}/rotate/").json()["secret"]
        assert new != secret
        receiver.secret = new
        assert admin.post(f"{SUBS}{sub.json()['id']}/test/").json()["status"] == "sent"
        assert admin.patch(f"{HOOKS}{hook}/", {"enabled": False}, format="json").json()["enabled"] is False
        assert beta.client(role=Role.OWNER).get(f"{HOOKS}{hook}/").status_code == 404
        assert admin.delete(f"{HOOKS}{hook}/").status_code == 204
        with schema_context(alpha.tenant.schema_name):
            assert not Credential.objects.filter(name="webhook-ops-desk").exists()
            assert not Subscription.objects.exists()  # its subscriptions went with it
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "body, code",
    [
        ({"name": "Bad Name!", "url": "http://127.0.0.1:9/x"}, "invalid_input"),
        ({"name": "ok", "url": "ftp://example.test/x"}, "invalid_url"),
        ({"name": "ok", "url": "http://user:pw@127.0.0.1:9/x"}, "invalid_url"),
        ({"name": "ok", "url": "http://169.254.169.254/latest/meta-data"}, "invalid_url"),
        ({"name": "ok", "url": "https://no-such-host.invalid/x"}, "invalid_url"),
        ({"name": "ok"}, "invalid_input"),
    ],
)
def test_bad_webhook_endpoints_are_refused(alpha, body, code):
    r = alpha.client(role=Role.ADMIN).post(HOOKS, body, format="json")
    assert r.status_code == 400 and _code(r) == code, r.content
    assert _count(alpha, WebhookEndpoint) == 0 and _count(alpha, Credential) == 0


def test_the_delivery_log_shows_members_their_own_and_admins_all(alpha, beta):
    analyst, viewer = alpha.users[Role.ANALYST], alpha.users[Role.VIEWER]
    for user in (analyst, viewer):
        alpha.client(role=user.memberships.first().role).post(
            SUBS, {"events": ["model.deployed"], "channel": "inapp"}, format="json"
        )
    with schema_context(alpha.tenant.schema_name):
        event = emit("model.deployed", {"name": "btc", "version": 1})
        fanout(event.pk)
        for d in Delivery.objects.all():
            delivery.deliver(d.pk)
    log = alpha.client(role=Role.VIEWER).get("/api/v1/notifications/deliveries/").json()["results"]
    assert [row["target"] for row in log] == [f"inapp:{viewer.pk}"] and log[0]["status"] == "sent"
    assert log[0]["event_type"] == "model.deployed" and log[0]["attempts"] == 1
    everything = alpha.client(role=Role.ADMIN).get("/api/v1/notifications/deliveries/?channel=inapp").json()
    assert len(everything["results"]) == 2
    r = alpha.client(role=Role.ADMIN).get("/api/v1/notifications/deliveries/?status=lost")
    assert r.status_code == 400 and _code(r) == "invalid_input"
    assert beta.client(role=Role.OWNER).get("/api/v1/notifications/deliveries/").json()["results"] == []


def test_the_inbox_lists_and_marks_read(alpha):
    analyst = alpha.users[Role.ANALYST]
    c = alpha.client(role=Role.ANALYST)
    c.post(SUBS, {"events": ["model.deployed"], "channel": "inapp"}, format="json")
    with schema_context(alpha.tenant.schema_name):
        for version in (1, 2):
            event = emit("model.deployed", {"name": "btc", "version": version})
            fanout(event.pk)
            delivery.deliver(Delivery.objects.get(event=event).pk)
    inbox = c.get("/api/v1/notifications/inbox/").json()
    assert inbox["unread"] == 2 and [n["title"] for n in inbox["results"]] == [
        "Model btc v2 deployed",
        "Model btc v1 deployed",
    ]
    first = inbox["results"][1]["id"]
    r = c.post("/api/v1/notifications/inbox/", {"ids": [first]}, format="json")
    assert r.status_code == 200 and r.json() == {**r.json(), "marked_read": 1, "unread": 1}
    assert c.get("/api/v1/notifications/inbox/?unread=1").json()["results"][0]["title"] == "Model btc v2 deployed"
    assert c.post("/api/v1/notifications/inbox/", {}, format="json").json()["unread"] == 0
    # someone else's notifications are not marked by you, and API keys have no inbox
    with schema_context(alpha.tenant.schema_name):
        assert InAppNotification.objects.filter(user_id=analyst.pk, read_at=None).count() == 0
    assert alpha.client(role=Role.VIEWER).get("/api/v1/notifications/inbox/").json()["results"] == []
    r = alpha.client().get("/api/v1/notifications/inbox/")  # an API key is not a person: nothing in it
    assert r.status_code == 200 and r.json()["results"] == [] and r.json()["unread"] == 0
    r = c.post("/api/v1/notifications/inbox/", {"ids": ["x"]}, format="json")
    assert r.status_code == 400


def test_event_types_are_listed(alpha):
    types = alpha.client(role=Role.VIEWER).get("/api/v1/notifications/event-types/").json()
    names = {t["name"] for t in types}
    assert {"decision", "model.deployed", "alert.fired", "quota.100", "kill_switch.engaged", "payment.failed"} <= names
    assert "digest" not in names
