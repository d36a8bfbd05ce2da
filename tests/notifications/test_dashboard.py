"""The notification centre in the dashboard: the bell on every page (unread count, the socket's
ticket), the inbox (unread first, mark one / all read), and the subscriptions page (subscribe with
filters and timing, errors on the form with nothing written, enable/disable, send a test, delete).
Members change only their own subscriptions; tenant-wide ones are for admins; another member's or
another tenant's objects are not found."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from notifications.models import Channel, Delivery, Event, InAppNotification, Subscription
from tenants.models import Role
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db

INBOX = "/app/notifications/"
SUBS = "/app/notifications/subscriptions/"


def note_for(fx, user, title: str, *, read: bool = False, severity: str = "info") -> InAppNotification:
    """An in-app notification as the engine leaves it (event, sent delivery, the centre's row)."""
    with schema_context(fx.tenant.schema_name):
        event = Event.objects.create(type="model.deployed", data={"name": title})
        target = f"inapp:{user.pk}"
        d = Delivery.objects.create(
            event=event, channel=Channel.INAPP, target=target, idempotency_key=f"{event.pk}:{target}", status="sent"
        )
        return InAppNotification.objects.create(
            user_id=user.pk, delivery=d, title=title, body=f"{title} body", severity=severity,
            read_at=dt.datetime.now(dt.UTC) if read else None,
        )  # fmt: skip


def _subs(fx) -> list[Subscription]:
    with schema_context(fx.tenant.schema_name):
        return list(Subscription.objects.order_by("id"))


# --- the bell and the inbox ------------------------------------------------------------------------


def test_the_bell_shows_the_unread_count_and_carries_the_sockets_ticket_on_every_page(alpha):
    viewer = alpha.users[Role.VIEWER]
    note_for(alpha, viewer, "first")
    note_for(alpha, viewer, "second")
    note_for(alpha, viewer, "old", read=True)
    note_for(alpha, alpha.users[Role.ADMIN], "not mine")
    page = dashboard_client(alpha, Role.VIEWER).get("/app/").content.decode()
    bell = re.search(r"<a class=\"bell\"[^>]*>", page).group(0)
    assert 'data-unread="2"' in bell and 'href="/app/notifications/"' in bell
    assert f'data-ws-url="ws://testserver:{settings.WS_PORT}/ws/notifications/"' in bell
    ticket = re.search(r'data-ticket="([^"]+)"', bell).group(1)
    assert len(ticket) > 20
    assert "app/notifications.js" in page and "data-toasts" in page
    # the ticket opens the member's socket (tenant and member inside), once
    from tenants.channels import _ticket

    tenant, _, user_id = _ticket(ticket)
    assert tenant.pk == alpha.tenant.pk and user_id == viewer.pk
    assert _ticket(ticket) is None
    # a fresh ticket after a disconnect
    r = dashboard_client(alpha, Role.VIEWER).get(INBOX + "ticket/")
    assert r.status_code == 200 and "no-store" in r["Cache-Control"] and len(r.json()["ticket"]) > 20


def test_the_bell_is_not_shown_outside_a_tenant_page(alpha):
    from django.test import Client

    c = Client()
    c.force_login(alpha.users[Role.VIEWER])
    page = c.get("/app/tenants/new/").content.decode()
    assert "data-bell" not in page


def test_the_inbox_lists_unread_first_then_newest_and_marks_read(alpha):
    viewer = alpha.users[Role.VIEWER]
    old_unread = note_for(alpha, viewer, "alpha-old-unread")
    read = note_for(alpha, viewer, "alpha-read", read=True)
    new_unread = note_for(alpha, viewer, "alpha-new-unread", severity="critical")
    other = note_for(alpha, alpha.users[Role.ADMIN], "alpha-admins-only")
    c = dashboard_client(alpha, Role.VIEWER)
    page = c.get(INBOX).content.decode()
    order = [m for m in re.findall(r'data-notification="(\d+)"', page)]
    assert order == [str(new_unread.pk), str(old_unread.pk), str(read.pk)]
    assert "alpha-admins-only" not in page and "sev-critical" in page and "Mark all read" in page
    # mark one read
    r = c.post(INBOX + "read/", {"id": str(old_unread.pk)})
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        assert InAppNotification.objects.get(pk=old_unread.pk).read_at is not None
        assert InAppNotification.objects.get(pk=new_unread.pk).read_at is None
    # someone else's, a bad id, and nothing: not found, nothing changes
    for bad in (str(other.pk), "x", "", "999999"):
        assert c.post(INBOX + "read/", {"id": bad}).status_code == 404
    with schema_context(alpha.tenant.schema_name):
        assert InAppNotification.objects.get(pk=other.pk).read_at is None
    # mark all read
    r = c.post(INBOX + "read/", {"all": "1"}, follow=True)
    assert "1 notification(s) marked read." in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert not InAppNotification.objects.filter(user_id=viewer.pk, read_at=None).exists()
        assert InAppNotification.objects.get(pk=other.pk).read_at is None
    assert 'data-unread="0"' in c.get(INBOX).content.decode()


def test_another_tenants_notification_is_not_found(alpha, beta):
    theirs = note_for(beta, beta.users[Role.VIEWER], "beta-only")
    c = dashboard_client(alpha, Role.VIEWER)
    assert "beta-only" not in c.get(INBOX).content.decode()
    assert c.post(INBOX + "read/", {"id": str(theirs.pk)}).status_code == 404
    with schema_context(beta.tenant.schema_name):
        assert InAppNotification.objects.get(pk=theirs.pk).read_at is None


def test_the_inbox_is_empty_with_a_hint_and_paginates(alpha):
    c = dashboard_client(alpha, Role.ANALYST)
    assert 'data-empty="notifications"' in c.get(INBOX).content.decode()
    for i in range(31):
        note_for(alpha, alpha.users[Role.ANALYST], f"n{i}")
    page = c.get(INBOX).content.decode()
    assert page.count("data-notification=") == 25 and "Page 1 of 2" in page
    assert c.get(INBOX + "?page=2").content.decode().count("data-notification=") == 6


# --- subscriptions -----------------------------------------------------------------------------------


def _form(**values) -> dict:
    return {"events": ["decision"], "channel": "inapp", "timezone": "UTC", "digest": "off", **values}


def test_a_member_subscribes_with_filters_and_timing(alpha):
    viewer = alpha.users[Role.VIEWER]
    c = dashboard_client(alpha, Role.VIEWER)
    page = c.get(SUBS).content.decode()
    assert 'data-form="subscription"' in page and 'value="kill_switch.engaged"' in page
    assert 'name="tenant_wide"' not in page and 'value="webhook"' not in page  # admins only
    r = c.post(
        SUBS,
        _form(
            events=["decision", "model.deployed"], min_confidence="0.7", symbols="btc-usd, ETH-USD", actions=["BUY"],
            quiet_start="22:00", quiet_end="07:00", timezone="Europe/Berlin", digest="hourly", name="my trades",
        ),
        follow=True,
    )  # fmt: skip
    assert r.status_code == 200 and "Subscribed: my trades (you)." in r.content.decode()
    (sub,) = _subs(alpha)
    assert sub.user_id == viewer.pk and sub.channel == "inapp" and sub.events == ["decision", "model.deployed"]
    assert sub.min_confidence == 0.7 and sub.symbols == ["BTC-USD", "ETH-USD"] and sub.actions == ["BUY"]
    assert (sub.quiet_start, sub.quiet_end) == (dt.time(22), dt.time(7)) and sub.timezone == "Europe/Berlin"
    assert sub.digest == "hourly" and sub.enabled
    page = r.content.decode()
    assert f'data-subscription="{sub.pk}"' in page and "quiet 22:00–07:00 Europe/Berlin" in page


@pytest.mark.parametrize(
    "values,message,field",
    [
        ({"events": []}, "Give a list of event types", "events"),
        ({"events": ["decision", "made.up"]}, "Unknown event type(s) made.up", None),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone &#x27;Mars/Olympus&#x27;", "timezone"),
        ({"min_confidence": "lots"}, "min_confidence is a number from 0 to 1", "min_confidence"),
        ({"min_confidence": "1.5"}, "min_confidence is a number from 0 to 1", "min_confidence"),
        ({"quiet_start": "25:99"}, "quiet_start is a time of day", "quiet_start"),
        ({"channel": "pigeon"}, "channel must be one of", "channel"),
        ({"channel": "telegram", "telegram_chat": ""}, "Give the id of a registered Telegram chat", "telegram_chat"),
        ({"channel": "email", "email": "not-an-address"}, "Give a valid e-mail address.", "email"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_nothing_is_written(alpha, values, message, field):
    c = dashboard_client(alpha, Role.VIEWER)
    r = c.post(SUBS, _form(name="kept", **values))
    page = r.content.decode()
    assert r.status_code == 400 and message in page and "data-form-errors" in page
    if field:
        assert f'data-field-errors="{field}"' in page
    assert 'value="kept"' in page  # the form comes back as it was filled
    assert _subs(alpha) == []


@pytest.mark.parametrize(
    "values,code",
    [
        ({"tenant_wide": "on"}, "insufficient_role"),
        ({"channel": "webhook", "webhook": "1"}, "insufficient_role"),
        ({"channel": "email", "email": "someone.else@example.test"}, "not_your_address"),
    ],
)
def test_what_only_admins_may_do_is_refused_to_a_member(alpha, values, code):
    r = dashboard_client(alpha, Role.ANALYST).post(SUBS, _form(**values))
    assert r.status_code == 403 and f'data-error-code="{code}"' in r.content.decode()
    assert _subs(alpha) == []


def test_a_member_toggles_tests_and_deletes_their_subscription(alpha):
    viewer = alpha.users[Role.VIEWER]
    c = dashboard_client(alpha, Role.VIEWER)
    c.post(SUBS, _form(events=["model.deployed"]))
    (sub,) = _subs(alpha)
    r = c.post(f"{SUBS}{sub.pk}/toggle/", follow=True)
    assert "disabled" in r.content.decode() and not _subs(alpha)[0].enabled
    c.post(f"{SUBS}{sub.pk}/toggle/")
    assert _subs(alpha)[0].enabled
    # a test message to the member's own centre, sent now
    r = c.post(f"{SUBS}{sub.pk}/test/", follow=True)
    assert "Test message sent to in-app" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        note = InAppNotification.objects.get(user_id=viewer.pk)
        assert note.title.startswith("Test message from") and note.delivery.status == "sent"
    assert 'data-unread="1"' in r.content.decode()
    r = c.post(f"{SUBS}{sub.pk}/delete/", follow=True)
    assert "Unsubscribed" in r.content.decode() and _subs(alpha) == []
    assert c.post(f"{SUBS}{sub.pk}/delete/").status_code == 404
    assert c.post(f"{SUBS}{sub.pk}/explode/").status_code == 404


def test_a_failed_test_message_says_why(alpha):
    c = dashboard_client(alpha, Role.OWNER)
    c.post(SUBS, _form(events=["model.deployed"], channel="email"))
    (sub,) = _subs(alpha)

    def refused(self, *args, **kwargs):
        raise OSError("down")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("django.core.mail.EmailMultiAlternatives.send", refused)
        r = c.post(f"{SUBS}{sub.pk}/test/", follow=True)
    page = r.content.decode()
    assert "Test message not delivered (pending): E-mail not accepted: OSError: down" in page


def test_admins_see_and_manage_everyones_and_tenant_wide_subscriptions(alpha):
    member = dashboard_client(alpha, Role.VIEWER)
    member.post(SUBS, _form(events=["model.deployed"], name="viewer-own"))
    admin = dashboard_client(alpha, Role.ADMIN)
    page = admin.get(SUBS).content.decode()
    assert "viewer-own" in page and alpha.users[Role.VIEWER].email in page and 'name="tenant_wide"' in page
    r = admin.post(SUBS, _form(events=["kill_switch.engaged"], tenant_wide="on", name="everyone"), follow=True)
    assert "Subscribed: everyone (whole tenant)." in r.content.decode()
    mine, wide = _subs(alpha)
    assert wide.user_id is None
    # a member sees the tenant-wide one but may not change it; another member's is not found to them
    analyst = dashboard_client(alpha, Role.ANALYST)
    page = analyst.get(SUBS).content.decode()
    assert "everyone" in page and "viewer-own" not in page and "admins manage it" in page
    r = analyst.post(f"{SUBS}{wide.pk}/delete/")
    assert r.status_code == 403 and "data-forbidden" in r.content.decode()
    assert analyst.post(f"{SUBS}{mine.pk}/toggle/").status_code == 404
    assert len(_subs(alpha)) == 2 and _subs(alpha)[0].enabled
    # the admin changes the member's and sends the tenant-wide in-app test to their own centre
    admin.post(f"{SUBS}{mine.pk}/toggle/")
    assert not _subs(alpha)[0].enabled
    admin.post(SUBS, _form(events=["model.deployed"], tenant_wide="on"))
    inapp_wide = _subs(alpha)[-1]
    r = admin.post(f"{SUBS}{inapp_wide.pk}/test/", follow=True)
    assert "Test message sent" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert InAppNotification.objects.filter(user_id=alpha.users[Role.ADMIN].pk).count() == 1


def test_another_tenants_subscription_is_not_found(alpha, beta):
    dashboard_client(beta, Role.OWNER).post(SUBS, _form(events=["model.deployed"], name="beta-secret"))
    (theirs,) = _subs(beta)
    admin = dashboard_client(alpha, Role.OWNER)
    assert "beta-secret" not in admin.get(SUBS).content.decode()
    for action in ("toggle", "test", "delete"):
        assert admin.post(f"{SUBS}{theirs.pk}/{action}/").status_code == 404
    assert _subs(beta)[0].enabled
