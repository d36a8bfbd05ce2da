"""The delivery engine, driven step by step (fan-out, then each delivery task's body) against local
servers that speak the real protocols: signed webhooks to a receiver that verifies them, e-mail to
an SMTP server. The same steps run on a real worker in test_worker.py."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications import delivery, ratelimit, render
from notifications.decisions import offer
from notifications.delivery import emit, fanout, release_held
from notifications.models import Delivery, Event, InAppNotification, Subscription
from notifications.services import subscription_create, webhook_create
from tenants.models import Role

from .receivers import SmtpSink, WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    sink = SmtpSink()
    mailers = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                           "OPTIONS": {"host": "127.0.0.1", "port": sink.port, "timeout": 5}}}  # fmt: skip
    with override_settings(MAILERS=mailers):
        yield sink
    sink.close()


def _webhook_sub(alpha, receiver, events=("model.deployed",), name="hook"):
    admin = alpha.users[Role.ADMIN]
    endpoint, secret = webhook_create(name=name, url=receiver.url, actor=admin)
    receiver.secret = secret
    return subscription_create(
        data={"events": list(events), "channel": "webhook", "webhook": endpoint.pk},
        user_id=admin.pk, tenant_wide=True, is_admin=True, actor=admin,
    )  # fmt: skip


def _deliveries(event):
    return list(Delivery.objects.filter(event=event).order_by("id"))


def _due_now(d):
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=timezone.now())


def test_a_signed_webhook_arrives_once_and_is_logged(alpha, receiver):
    with schema_context(alpha.tenant.schema_name):
        _webhook_sub(alpha, receiver)
        event = emit("model.deployed", {"name": "btc", "version": 3, "from_version": 2})
        assert fanout(event.pk) == 1
        assert fanout(event.pk) == 0  # a second fan-out adds nothing (idempotency key)
        (d,) = _deliveries(event)
        assert delivery.deliver(d.pk) == "sent"
        assert delivery.deliver(d.pk) == "skipped"  # a redelivered task sends nothing again
        d.refresh_from_db()
    assert receiver.refused == [] and len(receiver.received) == 1
    got = receiver.received[0]
    assert got["event"] == "model.deployed" and got["key"] == d.idempotency_key
    assert got["body"]["data"] == {"name": "btc", "version": 3, "from_version": 2}
    assert got["body"]["id"] == event.pk and got["body"]["tenant"] == alpha.tenant.schema_name
    assert d.status == Delivery.Status.SENT and d.attempts == 1 and d.sent_at is not None
    assert d.latency_ms is not None and d.duration_ms is not None and d.provider_id == "HTTP 204"


def test_a_receiver_rejects_a_forged_or_replayed_signature(receiver):
    from notifications import signing

    receiver.secret = "whsec_right"
    body = b'{"a":1}'
    assert receiver.check(signing.sign("whsec_right", body), body) == ""
    assert receiver.check(signing.sign("whsec_wrong", body), body) == "bad signature"
    assert receiver.check(signing.sign("whsec_right", body), b'{"a":2}') == "bad signature"
    assert receiver.check(signing.sign("whsec_right", body, timestamp=1_000_000), body) == "stale"
    # and our own verifier, for customers who use the SDK-less snippet in the docs
    with pytest.raises(signing.SignatureError, match="replay window"):
        signing.verify("whsec_right", signing.sign("whsec_right", body, timestamp=1_000_000), body)
    with pytest.raises(signing.SignatureError, match="mismatch"):
        signing.verify("whsec_right", signing.sign("whsec_other", body), body)
    assert signing.verify("whsec_right", signing.sign("whsec_right", body, timestamp=1_000_000), body,
                          now=1_000_100) == 1_000_000  # fmt: skip


@override_settings(NOTIFY_MAX_ATTEMPTS=3, NOTIFY_BACKOFF_BASE_S=30, NOTIFY_WEBHOOK_RATE=1000)
def test_a_failing_endpoint_is_retried_with_backoff_then_dead_lettered_and_retried_by_hand(alpha, beta, receiver):
    receiver.mode = "fail"
    schema = alpha.tenant.schema_name
    with schema_context(schema):
        _webhook_sub(alpha, receiver)
        event = emit("model.deployed", {"name": "btc", "version": 4})
        fanout(event.pk)
        (d,) = _deliveries(event)
        before = timezone.now()
        assert delivery.deliver(d.pk) == "retrying"
        d.refresh_from_db()
        assert d.status == Delivery.Status.PENDING and d.attempts == 1 and "HTTP 500" in d.last_error
        assert before <= d.next_attempt_at <= before + dt.timedelta(seconds=31)  # full jitter within base * 2^0
        assert delivery.deliver(d.pk) in ("skipped", "retrying")  # not due yet (unless the jitter drew ~0)
        for _ in range(3):
            d.refresh_from_db()
            if d.status == Delivery.Status.DEAD:
                break
            _due_now(d)
            delivery.deliver(d.pk)
        d.refresh_from_db()
        assert d.status == Delivery.Status.DEAD and d.attempts == 3
    assert receiver.hits == 3 and receiver.received == []
    # the dead letter is retried by hand: admins only, in their own tenant
    url = f"/api/v1/notifications/deliveries/{d.pk}/retry/"
    assert alpha.client(role=Role.ANALYST).post(url).status_code == 403
    assert beta.client(role=Role.ADMIN).post(url).status_code == 404
    dead = alpha.client(role=Role.ADMIN).get("/api/v1/notifications/deliveries/?status=dead").json()["results"]
    assert [row["id"] for row in dead] == [d.pk]
    response = alpha.client(role=Role.ADMIN).post(url)
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert response.json()["attempts"] == 0 and response.json()["manual_retries"] == 1
    again = alpha.client(role=Role.ADMIN).post(url)
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_dead"
    receiver.mode = "ok"
    with schema_context(schema):
        assert delivery.deliver(d.pk) == "sent"
    assert len(receiver.received) == 1


def test_a_4xx_answer_is_retried_too_and_its_body_is_logged(alpha, receiver):
    receiver.mode = "reject"  # 400: a receiver's bug today may be fixed before the last attempt
    with schema_context(alpha.tenant.schema_name):
        _webhook_sub(alpha, receiver)
        event = emit("model.deployed", {"name": "btc", "version": 8})
        fanout(event.pk)
        (d,) = _deliveries(event)
        assert delivery.deliver(d.pk) == "retrying"
        d.refresh_from_db()
    assert d.status == Delivery.Status.PENDING and d.last_error == "HTTP 400 from the endpoint: not today"


@override_settings(NOTIFY_WEBHOOK_TIMEOUT_S=0.3)
def test_a_timeout_is_a_failed_attempt(alpha, receiver):
    receiver.mode, receiver.slow_s = "slow", 1.5
    with schema_context(alpha.tenant.schema_name):
        _webhook_sub(alpha, receiver)
        event = emit("model.deployed", {"name": "btc", "version": 5})
        fanout(event.pk)
        (d,) = _deliveries(event)
        assert delivery.deliver(d.pk) == "retrying"
        d.refresh_from_db()
    assert "timeout" in d.last_error and d.attempts == 1


def test_one_event_reaches_each_channel_and_a_failing_one_holds_up_no_other(alpha, receiver):
    receiver.mode = "fail"
    analyst = alpha.users[Role.ANALYST]
    with schema_context(alpha.tenant.schema_name):
        _webhook_sub(alpha, receiver)
        subscription_create(data={"events": ["model.deployed"], "channel": "inapp"}, user_id=analyst.pk,
                            tenant_wide=False, is_admin=False, actor=analyst)  # fmt: skip
        event = emit("model.deployed", {"name": "btc", "version": 6})
        fanout(event.pk)  # in-app messages are written by the fan-out itself
        results = {d.channel: delivery.deliver(d.pk) for d in _deliveries(event)}
        assert results == {"webhook": "retrying", "inapp": "skipped"}
        assert {d.channel: d.status for d in _deliveries(event)} == {"webhook": "pending", "inapp": "sent"}
        note = InAppNotification.objects.get(user_id=analyst.pk)
        assert note.title == "Model btc v6 deployed" and note.read_at is None


def test_email_goes_out_with_html_and_text_parts_over_smtp(alpha, smtp):
    analyst = alpha.users[Role.ANALYST]
    with schema_context(alpha.tenant.schema_name):
        subscription_create(data={"events": ["training.failed"], "channel": "email"}, user_id=analyst.pk,
                            tenant_wide=False, is_admin=False, actor=analyst)  # fmt: skip
        event = emit("training.failed", {"job_id": "j-1", "model": "btc", "message": "failed: no data"})
        fanout(event.pk)
        (d,) = _deliveries(event)
        assert d.target == f"email:{analyst.email}"
        assert delivery.deliver(d.pk) == "sent"
    (mail,) = smtp.messages
    assert mail["To"] == analyst.email and mail["Subject"] == "Training j-1 failed"
    assert d.idempotency_key.replace(":", ".") in mail["Message-ID"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "failed: no data" in text and "failed: no data" in html and "<h1" in html


def test_an_unreachable_mail_server_is_a_failed_attempt(alpha):
    mailers = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                           "OPTIONS": {"host": "127.0.0.1", "port": 1, "timeout": 2}}}  # fmt: skip
    analyst = alpha.users[Role.ANALYST]
    with override_settings(MAILERS=mailers), schema_context(alpha.tenant.schema_name):
        subscription_create(data={"events": ["training.failed"], "channel": "email"}, user_id=analyst.pk,
                            tenant_wide=False, is_admin=False, actor=analyst)  # fmt: skip
        event = emit("training.failed", {"job_id": "j-2", "model": "btc", "message": "x"})
        fanout(event.pk)
        (d,) = _deliveries(event)
        assert delivery.deliver(d.pk) == "retrying"
        d.refresh_from_db()
    assert d.last_error.startswith("E-mail not accepted")


def test_a_broken_template_never_loses_the_event(alpha, monkeypatch):
    from django.template import TemplateSyntaxError

    analyst = alpha.users[Role.ANALYST]

    def broken(name, context=None, *a, **kw):
        raise TemplateSyntaxError("Invalid block tag 'endfor'")

    monkeypatch.setattr(render, "render_to_string", broken)
    with schema_context(alpha.tenant.schema_name):
        subscription_create(data={"events": ["training.failed"], "channel": "inapp"}, user_id=analyst.pk,
                            tenant_wide=False, is_admin=False, actor=analyst)  # fmt: skip
        event = emit("training.failed", {"job_id": "j-3", "model": "btc", "message": "failed: boom"})
        fanout(event.pk)
        (d,) = _deliveries(event)
        note = InAppNotification.objects.get(delivery=d)
    assert d.status == Delivery.Status.SENT and "template error (TemplateSyntaxError)" in d.note
    assert note.title == "Training j-3 failed" and "failed: boom" in note.body


def test_emit_is_idempotent_by_key_and_refuses_unknown_types(alpha):
    from api.errors import ApplicationError

    with schema_context(alpha.tenant.schema_name):
        first = emit("quota.80", {"quota": "decisions_per_day"}, dedupe_key="q:1")
        again = emit("quota.80", {"quota": "decisions_per_day"}, dedupe_key="q:1")
        assert first.pk == again.pk and Event.objects.filter(dedupe_key="q:1").count() == 1
        assert first.severity == "warning"
        with pytest.raises(ApplicationError) as exc:
            emit("nope", {})
    assert exc.value.code == "unknown_event"


# --- quiet hours and digests ---------------------------------------------------------------------------


def _inapp_sub(user, **extra):
    return subscription_create(
        data={"events": ["model.deployed", "kill_switch.engaged"], "channel": "inapp", **extra},
        user_id=user.pk, tenant_wide=False, is_admin=False, actor=user,
    )  # fmt: skip


def test_quiet_hours_hold_messages_until_they_end_then_send_one_digest(alpha):
    analyst = alpha.users[Role.ANALYST]
    now = timezone.now().replace(microsecond=0)
    start, end = (now - dt.timedelta(hours=1)).time(), (now + dt.timedelta(hours=1)).time()
    with schema_context(alpha.tenant.schema_name):
        quiet = {"quiet_start": start.isoformat(timespec="minutes"), "quiet_end": end.isoformat(timespec="minutes")}
        _inapp_sub(analyst, **quiet)
        held = []
        for version in (1, 2):
            event = emit("model.deployed", {"name": "btc", "version": version})
            fanout(event.pk, now=now)
            held += _deliveries(event)
        assert {d.status for d in held} == {Delivery.Status.HELD}
        ends = now.replace(second=0) + dt.timedelta(hours=1)
        assert held[0].due_at == ends
        urgent = emit("kill_switch.engaged", {"reason": "drawdown"})  # critical: through quiet hours
        fanout(urgent.pk, now=now)
        assert _deliveries(urgent)[0].status == Delivery.Status.SENT
        assert release_held(now=now) == 0  # not yet
        assert release_held(now=ends + dt.timedelta(seconds=1)) == 1
        digest = Event.objects.get(type="digest")
        assert digest.data["count"] == 2
        assert [i["title"] for i in digest.data["items"]] == ["Model btc v1 deployed", "Model btc v2 deployed"]
        (d,) = _deliveries(digest)
        assert {x.status for x in Delivery.objects.filter(pk__in=[h.pk for h in held])} == {Delivery.Status.DIGESTED}
        assert set(Delivery.objects.filter(digest=d).values_list("pk", flat=True)) == {h.pk for h in held}
        assert delivery.deliver(d.pk) == "sent"
        note = InAppNotification.objects.get(delivery=d)
    assert note.title == "2 notifications" and "Model btc v2 deployed" in note.body


def test_quiet_hours_wrap_midnight_in_the_subscription_time_zone():
    sub = Subscription(quiet_start=dt.time(22, 0), quiet_end=dt.time(7, 0), timezone="Asia/Tokyo")
    tokyo_23 = dt.datetime(2026, 1, 1, 14, 0, tzinfo=dt.UTC)  # 23:00 in Tokyo
    assert delivery.quiet_until(sub, tokyo_23) == dt.datetime(2026, 1, 1, 22, 0, tzinfo=dt.UTC)  # 07:00 Tokyo
    tokyo_noon = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.UTC)
    assert delivery.quiet_until(sub, tokyo_noon) is None


def test_a_digest_subscription_collects_until_the_next_hour(alpha):
    analyst = alpha.users[Role.ANALYST]
    now = timezone.now()
    with schema_context(alpha.tenant.schema_name):
        _inapp_sub(analyst, digest="hourly")
        event = emit("model.deployed", {"name": "btc", "version": 9})
        fanout(event.pk, now=now)
        (d,) = _deliveries(event)
    assert d.status == Delivery.Status.HELD
    assert d.due_at == now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)


# --- decisions --------------------------------------------------------------------------------------------


def _payload(i, symbol="BTC-USD", action="BUY", confidence=0.9):
    return {"id": i, "symbol": symbol, "timeframe": "1h", "ts": "2026-01-01T00:00:00+00:00", "action": action,
            "confidence": confidence, "size": 1.0, "flow": "default@1", "model_version": "", "vetoed_by": None,
            "explanation": "trend up"}  # fmt: skip


def test_only_decisions_a_subscription_wants_become_events(alpha):
    analyst = alpha.users[Role.ANALYST]
    with schema_context(alpha.tenant.schema_name):
        assert offer([(_payload(1), 100.0)]) == 0  # nobody subscribed: nothing recorded
        subscription_create(
            data={"events": ["decision"], "channel": "inapp", "min_confidence": 0.8, "symbols": ["btc-usd"]},
            user_id=analyst.pk, tenant_wide=False, is_admin=False, actor=analyst,
        )  # fmt: skip
        from notifications.decisions import reset_local

        reset_local()  # the process's cached filters (refreshed every few seconds)
        wanted = [
            (_payload(2), 101.0),
            (_payload(3, confidence=0.5), 101.0),
            (_payload(4, symbol="ETH-USD", confidence=0.95), 5.0),
            (_payload(5, action="HOLD", confidence=0.99), 101.0),
            (_payload(6, action="SELL", confidence=0.8), 99.0),
        ]
        assert offer(wanted) == 2
        events = list(Event.objects.filter(type="decision").order_by("id"))
        assert [e.data["decision_id"] for e in events] == [2, 6]
        assert offer(wanted) == 2 and Event.objects.filter(type="decision").count() == 2  # the same decisions: once
        fanout(events[0].pk)
        (d,) = _deliveries(events[0])
        delivery.deliver(d.pk)
        note = InAppNotification.objects.get(delivery=d)
    assert note.title == "BUY BTC-USD (90%)" and "at 101.0" in note.body


# --- rate limits ----------------------------------------------------------------------------------------


def test_telegram_rates_one_a_second_per_chat_and_thirty_per_bot():
    chat_a = ratelimit.limits_for("telegram", "telegram:7:100", "s")
    chat_b = ratelimit.limits_for("telegram", "telegram:7:200", "s")
    assert ratelimit.acquire(chat_a, now=1000.0) == 0
    assert ratelimit.acquire(chat_a, now=1000.25) == pytest.approx(0.75)  # the same chat waits its second
    assert ratelimit.acquire(chat_b, now=1000.25) == 0  # another chat need not
    assert ratelimit.acquire(chat_a, now=1001.0) == 0
    chats = [ratelimit.limits_for("telegram", f"telegram:8:{i}", "s") for i in range(31)]
    waits = [ratelimit.acquire(c, now=2000.0 + i / 40) for i, c in enumerate(chats)]  # 40 a second asked
    assert waits[0] == 0 and max(waits) > 0  # the bot's 30 a second holds some back
    assert all(w <= 1 / 30 + 1e-9 for w in waits)


@override_settings(NOTIFY_WEBHOOK_RATE=0.001)
def test_a_rate_limited_message_waits_without_using_an_attempt(alpha, receiver):
    with schema_context(alpha.tenant.schema_name):
        _webhook_sub(alpha, receiver)
        events = [emit("model.deployed", {"name": "btc", "version": v}) for v in (1, 2, 3)]
        for e in events:
            fanout(e.pk)
        ds = [_deliveries(e)[0] for e in events]
        assert [delivery.deliver(d.pk) for d in ds] == ["sent", "sent", "rate_limited"]  # a burst of 2
        ds[2].refresh_from_db()
    assert ds[2].status == Delivery.Status.PENDING and ds[2].attempts == 0
    assert ds[2].next_attempt_at > timezone.now() + dt.timedelta(seconds=100)


# --- sources ---------------------------------------------------------------------------------------------


def test_quota_crossings_notify_once_per_period(alpha, usage_redis, django_capture_on_commit_callbacks):
    from tenants import limits

    alpha.tenant.plan.limits = {**alpha.tenant.plan.limits, "decisions_per_day": 10}
    with django_capture_on_commit_callbacks(execute=True):
        limits.limit_check(alpha.tenant, "decisions_per_day", 7)
        limits.limit_check(alpha.tenant, "decisions_per_day", 1)  # 8 of 10: 80 %
        limits.limit_check(alpha.tenant, "decisions_per_day", 2)  # 10 of 10: used up
        for _ in range(3):
            with pytest.raises(Exception):
                limits.limit_check(alpha.tenant, "decisions_per_day", 1)
    with schema_context(alpha.tenant.schema_name):
        got = list(Event.objects.filter(type__startswith="quota.").order_by("id").values_list("type", "data"))
    assert [t for t, _ in got] == ["quota.80", "quota.100"]
    assert got[0][1]["used"] == 8 and got[1][1]["used"] == 10 and got[1][1]["limit"] == 10


def test_the_kill_switch_is_a_critical_notification(alpha, django_capture_on_commit_callbacks):
    from compliance.controls import kill_engage

    with django_capture_on_commit_callbacks(execute=True):
        kill_engage(tenant=alpha.tenant, reason="drawdown limit", actor=alpha.users[Role.ADMIN])
    with schema_context(alpha.tenant.schema_name):
        event = Event.objects.get(type="kill_switch.engaged")
    assert event.severity == "critical" and event.data["reason"] == "drawdown limit"


def test_a_short_wait_is_booked_so_a_queue_to_one_chat_goes_out_a_second_apart():
    chat = ratelimit.limits_for("telegram", "telegram:9:100", "s")
    assert ratelimit.reserve(chat, now=1000.0, book_within=2) == (True, 0.0)
    booked = [ratelimit.reserve(chat, now=1000.1 + i / 10, book_within=2) for i in range(3)]
    assert [b for b, _ in booked] == [True, True, False]  # slots at 1001 and 1002; 1003 is too far
    assert [round(w, 6) for _, w in booked[:2]] == [0.9, 1.8]
    assert booked[2][1] == pytest.approx(2.7)  # not booked: the caller asks again about then


@override_settings(NOTIFY_WEBHOOK_RATE=0.001, NOTIFY_BACKLOG_DIGEST=5)
def test_a_backlog_past_the_targets_rate_is_collapsed_into_one_digest(alpha, receiver):
    with schema_context(alpha.tenant.schema_name):
        _webhook_sub(alpha, receiver)
        events = [emit("model.deployed", {"name": "btc", "version": v}) for v in range(12)]
        for e in events:
            fanout(e.pk)
        ds = [_deliveries(e)[0] for e in events]
        outcomes = [delivery.deliver(d.pk) for d in ds[:3]]
        assert outcomes == ["sent", "sent", "collapsed"]  # a burst of 2, then 10 waiting: one digest
        held = Delivery.objects.filter(status=Delivery.Status.HELD)
        assert held.count() == 10 and set(held.values_list("note", flat=True)) == {"collapsed into a digest"}
        assert [delivery.deliver(d.pk) for d in ds[3:5]] == ["skipped", "skipped"]  # their tasks find them held
        assert release_held(now=timezone.now()) == 1
        digest = Event.objects.get(type="digest")
        assert digest.data["count"] == 10


def test_plain_text_is_not_html_escaped_but_the_html_part_is(alpha):
    from notifications.render import render

    event = Event(type="training.failed", data={"job_id": "j", "message": "accuracy >= 0.6 & <b>no</b>"})
    message = render(event)
    assert "accuracy >= 0.6 & <b>no</b>" in message.text
    assert "accuracy &gt;= 0.6 &amp; &lt;b&gt;no&lt;/b&gt;" in message.html
