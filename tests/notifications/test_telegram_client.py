"""notifications.telegram, the Bot API client: results and Telegram's errors as TelegramError
(code, description, retry_after, permanent), against the sandbox server and, for what Telegram
itself never answers (a proxy's HTML page, a body that is not JSON, silence), a raw local server."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from notifications import telegram
from notifications.sandbox import TelegramSandbox

from .telegram_helpers import CHAT, TOKEN


@pytest.fixture
def api(settings):
    box = TelegramSandbox().start()
    box.add_bot(TOKEN, "ati_alerts_bot")
    box.add_chat(CHAT, "Ann")
    settings.TELEGRAM_API_BASE = box.url
    settings.TELEGRAM_TIMEOUT_S = 5
    yield box
    box.stop()


class RawServer:
    """Answers every request with ``status`` and ``body`` (after ``delay`` seconds)."""

    def __init__(self, status: int, body: bytes, content_type: str = "text/html", delay: float = 0.0):
        raw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(raw.delay)
                try:
                    self.send_response(raw.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(raw.body)))
                    self.end_headers()
                    self.wfile.write(raw.body)
                except OSError:
                    pass

        self.status, self.body, self.delay = status, body, delay
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _error(fn, *args) -> telegram.TelegramError:
    with pytest.raises(telegram.TelegramError) as info:
        fn(*args)
    return info.value


def test_get_me_and_send_message_return_telegrams_result(api):
    me = telegram.get_me(TOKEN)
    assert me["is_bot"] is True and me["username"] == "ati_alerts_bot" and me["id"] == 123456789
    sent = telegram.send_message(TOKEN, CHAT, "hello")
    assert sent["chat"]["id"] == CHAT and sent["text"] == "hello" and sent["message_id"] > 0
    assert api.texts(CHAT) == ["hello"]


def test_a_message_over_telegrams_limit_is_shortened_not_refused(api):
    telegram.send_message(TOKEN, CHAT, "x" * 5000)
    (text,) = api.texts(CHAT)
    assert len(text) == 4096 and text.endswith("...")


@pytest.mark.parametrize(
    "call, code, description, permanent",
    [
        (lambda: telegram.get_me("111:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 401, "Unauthorized", True),
        (lambda: telegram.send_message(TOKEN, 777, "hi"), 400, "Bad Request: chat not found", True),
        (lambda: telegram.call(TOKEN, "sendSticker"), 404, "Not Found", True),
        (lambda: telegram.send_message(TOKEN, CHAT, "   "), 400, "Bad Request: message text is empty", True),
        (
            lambda: telegram.set_webhook(TOKEN, "https://x.test/h", "bad secret!"),
            400,
            "Bad Request: secret token contains unallowed characters",
            True,
        ),
    ],  # fmt: skip
)
def test_telegrams_refusals_keep_its_code_and_description(api, call, code, description, permanent):
    err = _error(call)
    assert (err.code, err.description, err.permanent) == (code, description, permanent)
    assert TOKEN not in str(err) and "bot1" not in str(err)  # the token (in the URL) is never in an error


def test_a_blocked_bot_is_forbidden_for_good(api):
    api.block(TOKEN, CHAT)
    err = _error(telegram.send_message, TOKEN, CHAT, "hi")
    assert err.code == 403 and err.description == "Forbidden: bot was blocked by the user" and err.permanent


def test_too_many_messages_to_one_chat_is_a_429_with_retry_after(api):
    telegram.send_message(TOKEN, CHAT, "one")
    err = _error(telegram.send_message, TOKEN, CHAT, "two")
    assert err.code == 429 and err.retry_after == 1.0 and not err.permanent
    assert err.description == "Too Many Requests: retry after 1"
    assert api.texts(CHAT) == ["one"] and api.rejected(429) == 1


def test_updates_wait_for_get_updates_until_a_webhook_is_set(api):
    api.user_says(TOKEN, CHAT, "/status")
    (update,) = telegram.get_updates(TOKEN)
    assert update["message"]["text"] == "/status" and update["message"]["chat"]["id"] == CHAT
    assert update["message"]["entities"] == [{"offset": 0, "length": 7, "type": "bot_command"}]
    assert telegram.get_updates(TOKEN, offset=update["update_id"] + 1) == []
    assert telegram.set_webhook(TOKEN, "https://example.test/hook", "s3cret") is True
    info = telegram.get_webhook_info(TOKEN)
    assert info["url"] == "https://example.test/hook" and info["pending_update_count"] == 0
    err = _error(telegram.get_updates, TOKEN)
    assert err.code == 409 and err.description.startswith("Conflict: can't use getUpdates")
    assert telegram.delete_webhook(TOKEN) is True and telegram.get_webhook_info(TOKEN)["url"] == ""


def test_a_webhook_gets_the_update_with_the_secret_header(api):
    got = []

    def post(url, body, headers):
        got.append((url, headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return 403 if len(got) > 1 else 200

    api.webhook_post = post
    telegram.set_webhook(TOKEN, "https://example.test/hook", "s3cret")
    assert api.user_says(TOKEN, CHAT, "/help")["status"] == 200
    assert api.user_says(TOKEN, CHAT, "/help")["status"] == 403
    assert got == [("https://example.test/hook", "s3cret")] * 2
    info = telegram.get_webhook_info(TOKEN)
    assert info["last_error_message"] == "Wrong response from the webhook: 403 Forbidden"
    assert info["pending_update_count"] == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_is_code_0_unreachable(settings):
    settings.TELEGRAM_API_BASE = f"http://127.0.0.1:{_closed_port()}"
    err = _error(telegram.get_me, TOKEN)
    assert err.code == 0 and "unreachable" in err.description and not err.permanent
    assert str(err).startswith("Telegram getMe: no answer")


@pytest.mark.parametrize(
    "status, body, code, description",
    [
        (502, b"<html>Bad Gateway</html>", 502, "HTTP 502 Bad Gateway"),  # a proxy's page
        (200, b"<html>a captive portal</html>", 0, "Telegram answered something that is not JSON"),
        (200, b"[1, 2]", 0, "Telegram answered something that is not a Bot API reply"),
        (500, b'{"ok": false, "error_code": "x", "description": "odd"}', 0, "odd"),
    ],
)
def test_answers_telegram_never_gives_are_errors_too(settings, status, body, code, description):
    raw = RawServer(status, body)
    settings.TELEGRAM_API_BASE = raw.url
    try:
        err = _error(telegram.send_message, TOKEN, CHAT, "hi")
    finally:
        raw.close()
    assert (err.code, err.description) == (code, description)
    assert not err.permanent


def test_silence_is_a_timeout(settings):
    raw = RawServer(200, b'{"ok": true, "result": true}', delay=2.0)
    settings.TELEGRAM_API_BASE, settings.TELEGRAM_TIMEOUT_S = raw.url, 0.2
    try:
        err = _error(telegram.get_me, TOKEN)
    finally:
        raw.close()
    assert err.code == 0 and err.description == "Telegram is unreachable (timed out)"
