"""A local Telegram Bot API: the methods this project uses, answered in Telegram's own shapes, so
tests and the offline demo run the real client (``notifications.telegram``) against a real HTTP
server instead of a mock (``TELEGRAM_API_BASE`` points here).

Speaks ``POST|GET /bot<token>/<method>`` (JSON, form or query parameters) for ``getMe``,
``sendMessage``, ``setWebhook``, ``deleteWebhook``, ``getWebhookInfo`` and ``getUpdates``, answering
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}`` with the
HTTP status Telegram uses: 401 ``Unauthorized`` for an unknown token, 404 ``Not Found`` for an
unknown method, 400 ``Bad Request: chat not found``, 403 ``Forbidden: bot was blocked by the user``,
and 429 ``Too Many Requests: retry after N`` (with ``parameters.retry_after``) when a bot writes to
one chat more than once a second, or more than 30 times a second overall.

The people side: :meth:`TelegramSandbox.user_says` makes an Update from a user's message and POSTs
it to the bot's webhook with the ``X-Telegram-Bot-Api-Secret-Token`` header, or keeps it for
``getUpdates`` when no webhook is set (Telegram keeps failed deliveries pending, shown in
``getWebhookInfo``; this server does not retry them). ``GET /`` is a small page listing the bots,
chats and messages, with a form to send a message as a user (the demo: ``manage.py
telegram_sandbox``).

Standard library only; state lives in memory (a restart forgets webhooks: whoever registered them
sets them again, as ``telegram_sandbox --demo`` does for the demo bot)."""

from __future__ import annotations

import html
import http.server
import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
TOKEN_RE = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{10,100}$")
WebhookPost = Callable[[str, bytes, dict], int]  # (url, body, headers) -> HTTP status


@dataclass
class Bot:
    token: str
    username: str
    id: int
    first_name: str
    webhook_url: str = ""
    secret_token: str = ""
    allowed_updates: list = field(default_factory=list)
    last_error_date: int | None = None
    last_error_message: str = ""
    pending: list = field(default_factory=list)  # updates not delivered (no webhook, or it failed)
    blocked_by: set = field(default_factory=set)  # chat ids whose user blocked the bot

    def user(self) -> dict:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}


@dataclass
class Chat:
    id: int | str
    title: str
    type: str  # private | group | supergroup | channel
    username: str = ""

    def as_telegram(self) -> dict:
        out: dict = {"id": self.id, "type": self.type}
        if self.type == "private":
            out["first_name"] = self.title
        else:
            out["title"] = self.title
        if self.username:
            out["username"] = self.username
        return out


@dataclass
class Message:
    message_id: int
    chat_id: int | str
    bot: str  # the bot's username
    sender: str  # "bot" or "user"
    text: str
    at: float  # time.time() when it was accepted


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def body(self) -> dict:
        out: dict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            out["parameters"] = {"retry_after": self.retry_after}
        return out


def _urllib_post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the bot's own webhook
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class TelegramSandbox:
    """The server and its state. ``port=0`` picks a free port; ``url`` is the API base to configure.

    ``per_chat_interval``: the least time between two messages of a bot to one chat (Telegram: about
    one a second), with ``slack`` seconds of tolerance (Telegram lets short bursts through; a sender
    pacing itself to one a second arrives with some jitter between its clock and the send);
    ``per_bot_rate``: messages a second a bot may send overall. ``webhook_post`` delivers an update
    to a webhook (default: an HTTP POST; tests may hand it to an in-process client)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        per_chat_interval: float = 1.0,
        slack: float = 0.25,
        per_bot_rate: float = 30.0,
        webhook_post: WebhookPost | None = None,
    ):
        self.host, self.port = host, port
        self.per_chat_interval, self.slack, self.per_bot_rate = per_chat_interval, slack, per_bot_rate
        self.webhook_post: WebhookPost = webhook_post or _urllib_post
        self.bots: dict[str, Bot] = {}
        self.chats: dict[str, Chat] = {}
        self.log: list[Message] = []
        self.calls: list[tuple[str, str, int]] = []  # (bot username or "?", method, HTTP status)
        self._last_sent: dict[tuple[str, str], float] = {}
        self._bot_sends: dict[str, list[float]] = {}
        self._update_id = 100_000
        self._message_id = 0
        self._lock = threading.RLock()
        self._server: http.server.ThreadingHTTPServer | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> TelegramSandbox:
        sandbox = self

        class Handler(_Handler):
            pass

        Handler.sandbox = sandbox
        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, name="telegram-sandbox", daemon=True).start()
        return self

    def serve_forever(self) -> None:
        """Start and block (the management command)."""
        if self._server is None:
            self.start()
        threading.Event().wait()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TelegramSandbox:
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- the world: bots, chats, people -----------------------------------------------------------

    def add_bot(self, token: str, username: str, *, first_name: str = "") -> Bot:
        """A bot as @BotFather makes it (``token`` is ``<bot id>:<secret>``)."""
        match = TOKEN_RE.match(token)
        if not match:
            raise ValueError("a bot token looks like 123456789:AAH... (digits, a colon, 10+ letters)")
        with self._lock:
            bot = Bot(token=token, username=username.lstrip("@"), id=int(match.group(1)),
                      first_name=first_name or username.lstrip("@"))  # fmt: skip
            self.bots[token] = bot
            return bot

    def add_chat(self, chat_id: int | str, title: str = "", *, type: str | None = None, username: str = "") -> Chat:
        """A chat bots may write to: private (a positive id: the user's), a group (negative) or a
        channel (``@name``, or ``type="channel"``)."""
        key = str(chat_id)
        if type is None:
            type = "channel" if key.startswith("@") else ("private" if not key.startswith("-") else "supergroup")
        cid: int | str = int(key) if re.match(r"^-?\d+$", key) else key
        with self._lock:
            chat = Chat(id=cid, title=title or key, type=type, username=username)
            self.chats[key] = chat
            if key.startswith("@"):  # a channel also answers to its numeric id
                chat.username = key[1:]
            return chat

    def block(self, token: str, chat_id: int | str) -> None:
        """The user of ``chat_id`` blocked the bot: it can no longer write there (403)."""
        with self._lock:
            self.bots[token].blocked_by.add(str(chat_id))

    def user_says(self, token: str, chat_id: int | str, text: str, *, from_user: dict | None = None) -> dict:
        """A person writes ``text`` to the bot in ``chat_id`` (known or new: anyone may start a chat
        with a bot). The Update goes to the bot's webhook (its secret token in the header) or waits
        for ``getUpdates``. Returns ``{"update": ..., "status": HTTP status or None}``."""
        with self._lock:
            bot = self.bots[token]
            key = str(chat_id)
            chat = self.chats.get(key) or self.add_chat(chat_id, (from_user or {}).get("first_name", ""))
            sender = from_user or {"id": chat.id if isinstance(chat.id, int) and chat.id > 0 else 1000,
                                   "first_name": chat.title}  # fmt: skip
            sender = {"is_bot": False, "language_code": "en", **sender}
            self._update_id += 1
            self._message_id += 1
            message = {
                "message_id": self._message_id, "from": sender, "chat": chat.as_telegram(), "date": int(time.time()),
                "text": text,
            }  # fmt: skip
            command = re.match(r"^/[A-Za-z0-9_]+(@\w+)?", text or "")
            if command:
                message["entities"] = [{"offset": 0, "length": command.end(), "type": "bot_command"}]
            update = {"update_id": self._update_id, "message": message}
            self.log.append(Message(self._message_id, chat.id, bot.username, "user", text, time.time()))
            url, secret = bot.webhook_url, bot.secret_token
        if not url:
            with self._lock:
                bot.pending.append(update)
            return {"update": update, "status": None}
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        try:
            status = self.webhook_post(url, json.dumps(update).encode(), headers)
        except OSError as exc:
            status = None
            error = f"Connection refused ({type(exc).__name__})"
        else:
            error = "" if 200 <= status < 300 else f"Wrong response from the webhook: {status} {_reason(status)}"
        with self._lock:
            if error:
                bot.last_error_date, bot.last_error_message = int(time.time()), error
                bot.pending.append(update)
        return {"update": update, "status": status}

    def messages(self, chat_id: int | str | None = None, *, sender: str | None = "bot") -> list[Message]:
        """What was said, oldest first: in one chat (or all), by bots (default), users, or both (None)."""
        with self._lock:
            return [
                m for m in self.log
                if (chat_id is None or str(m.chat_id) == str(chat_id) or self._same_chat(m.chat_id, chat_id))
                and (sender is None or m.sender == sender)
            ]  # fmt: skip

    def texts(self, chat_id: int | str, *, sender: str | None = "bot") -> list[str]:
        return [m.text for m in self.messages(chat_id, sender=sender)]

    def rejected(self, code: int) -> int:
        """How many API calls were answered with ``code`` (e.g. 429)."""
        with self._lock:
            return sum(1 for _, _, status in self.calls if status == code)

    def _same_chat(self, a, b) -> bool:
        chat = self.chats.get(str(b))
        return chat is not None and str(chat.id) == str(a)

    # --- the Bot API ------------------------------------------------------------------------------

    def api(self, token: str, method: str, params: dict) -> object:
        """One Bot API call: its ``result``, or :class:`ApiError`."""
        bot = self.bots.get(token)
        if bot is None:
            raise ApiError(401, "Unauthorized")
        handler = _METHODS.get(method.lower())
        if handler is None:
            raise ApiError(404, "Not Found")
        with self._lock:
            return handler(self, bot, params)

    def _chat(self, bot: Bot, chat_id) -> Chat:
        if chat_id in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        key = str(chat_id)
        chat = self.chats.get(key)
        if chat is None and not key.startswith("@"):
            chat = next((c for c in self.chats.values() if str(c.id) == key), None)
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        if str(chat.id) in bot.blocked_by or key in bot.blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _rate(self, bot: Bot, chat: Chat) -> None:
        now = time.time()
        key = (bot.token, str(chat.id))
        last = self._last_sent.get(key)
        if last is not None and now - last < self.per_chat_interval - self.slack:
            wait = max(1, math.ceil(self.per_chat_interval - (now - last)))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        recent = [t for t in self._bot_sends.get(bot.token, []) if now - t < 1.0]
        if len(recent) >= self.per_bot_rate:
            raise ApiError(429, "Too Many Requests: retry after 1", retry_after=1)
        self._last_sent[key] = now
        self._bot_sends[bot.token] = [*recent, now]

    def _send_message(self, bot: Bot, p: dict) -> dict:
        chat = self._chat(bot, p.get("chat_id"))
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        self._rate(bot, chat)
        self._message_id += 1
        self.log.append(Message(self._message_id, chat.id, bot.username, "bot", text, time.time()))
        return {"message_id": self._message_id, "from": bot.user(), "chat": chat.as_telegram(),
                "date": int(time.time()), "text": text}  # fmt: skip

    def _set_webhook(self, bot: Bot, p: dict) -> bool:
        url = p.get("url") or ""
        secret = p.get("secret_token") or ""
        if secret and not SECRET_RE.match(secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        bot.webhook_url, bot.secret_token = url, secret if url else ""
        allowed = p.get("allowed_updates")
        if isinstance(allowed, str):
            try:
                allowed = json.loads(allowed)
            except ValueError:
                allowed = []
        bot.allowed_updates = list(allowed or [])
        bot.last_error_date, bot.last_error_message = None, ""
        if _truthy(p.get("drop_pending_updates")):
            bot.pending.clear()
        return True

    def _delete_webhook(self, bot: Bot, p: dict) -> bool:
        bot.webhook_url = bot.secret_token = ""
        if _truthy(p.get("drop_pending_updates")):
            bot.pending.clear()
        return True

    def _webhook_info(self, bot: Bot, p: dict) -> dict:
        info: dict = {"url": bot.webhook_url, "has_custom_certificate": False, "pending_update_count": len(bot.pending)}
        if bot.webhook_url:
            info["max_connections"] = 40
            if bot.allowed_updates:
                info["allowed_updates"] = bot.allowed_updates
        if bot.last_error_date:
            info["last_error_date"], info["last_error_message"] = bot.last_error_date, bot.last_error_message
        return info

    def _get_updates(self, bot: Bot, p: dict) -> list:
        if bot.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                                "delete the webhook first")  # fmt: skip
        offset = p.get("offset")
        if offset not in (None, ""):
            bot.pending = [u for u in bot.pending if u["update_id"] >= int(offset)]
        limit = int(p.get("limit") or 100)
        return bot.pending[: max(1, min(limit, 100))]

    # --- the page ---------------------------------------------------------------------------------

    def state(self) -> dict:
        with self._lock:
            return {
                "bots": [
                    {
                        "username": b.username,
                        "id": b.id,
                        "webhook_url": b.webhook_url,
                        "last_error_message": b.last_error_message,
                        "pending_update_count": len(b.pending),
                    }
                    for b in self.bots.values()
                ],  # fmt: skip
                "chats": [c.as_telegram() for c in self.chats.values()],
                "messages": [m.__dict__ for m in self.log[-200:]],
            }

    def page(self, notice: str = "") -> str:
        e = html.escape
        with self._lock:
            bots = list(self.bots.values())
            chats = list(self.chats.values())
            log = list(reversed(self.log[-100:]))
        bot_rows = "".join(
            f"<tr><td>@{e(b.username)}</td><td><code>{e(b.webhook_url) or '(none: getUpdates)'}</code></td>"
            f"<td>{e(b.last_error_message) or 'ok'}</td><td>{len(b.pending)}</td></tr>"
            for b in bots
        )
        chat_rows = "".join(f"<tr><td><code>{e(str(c.id))}</code></td><td>{e(c.title)}</td><td>{e(c.type)}</td></tr>"
                            for c in chats)  # fmt: skip
        titles = {str(c.id): c.title for c in chats}
        msg_rows = "".join(
            f"<tr class='{m.sender}'><td>{time.strftime('%H:%M:%S', time.localtime(m.at))}</td>"
            f"<td>{e(titles.get(str(m.chat_id), str(m.chat_id)))}</td>"
            f"<td>{'@' + e(m.bot) if m.sender == 'bot' else 'user → @' + e(m.bot)}</td>"
            f"<td><pre>{e(m.text)}</pre></td></tr>"
            for m in log
        )
        bot_options = "".join(f"<option value='{e(b.username)}'>@{e(b.username)}</option>" for b in bots)
        chat_options = "".join(f"<option value='{e(str(c.id))}'>{e(c.title)} ({e(str(c.id))})</option>" for c in chats)
        return _PAGE.format(
            notice=f"<p class='notice'>{e(notice)}</p>" if notice else "",
            bots=bot_rows or "<tr><td colspan=4>No bots: start with --bot TOKEN:USERNAME</td></tr>",
            chats=chat_rows or "<tr><td colspan=3>No chats: start with --chat ID:TITLE</td></tr>",
            messages=msg_rows or "<tr><td colspan=4>Nothing said yet.</td></tr>",
            bot_options=bot_options, chat_options=chat_options, api=e(self.url),
        )  # fmt: skip

    def say_from_form(self, form: dict) -> str:
        username = (form.get("bot") or "").lstrip("@")
        bot = next((b for b in self.bots.values() if b.username == username), None)
        chat_id, text = (form.get("chat") or "").strip(), (form.get("text") or "").strip()
        if bot is None or not chat_id or not text:
            return "Choose a bot and a chat, and write something."
        result = self.user_says(bot.token, int(chat_id) if re.match(r"^-?\d+$", chat_id) else chat_id, text)
        if result["status"] is None:
            return "No webhook set: the update waits for getUpdates." if not bot.webhook_url else bot.last_error_message
        return f"Delivered to the webhook: HTTP {result['status']}."


def _truthy(value) -> bool:
    return value in (True, 1, "1", "true", "True")


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


_METHODS: dict[str, Callable] = {
    "getme": lambda s, bot, p: (
        bot.user() | {"can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
    ),  # fmt: skip
    "sendmessage": TelegramSandbox._send_message,
    "setwebhook": TelegramSandbox._set_webhook,
    "deletewebhook": TelegramSandbox._delete_webhook,
    "getwebhookinfo": TelegramSandbox._webhook_info,
    "getupdates": TelegramSandbox._get_updates,
}
_DESCRIPTIONS = {"setwebhook": "Webhook was set", "deletewebhook": "Webhook was deleted"}
_BOT_PATH = re.compile(r"^/bot([^/]+)/([A-Za-z]+)/?$")


class _Handler(http.server.BaseHTTPRequestHandler):
    sandbox: TelegramSandbox
    server_version = "TelegramSandbox/1"

    def log_message(self, *args) -> None:  # quiet: the page shows what happened
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _params(self) -> dict:
        parts = urllib.parse.urlsplit(self.path)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if raw and kind == "application/json":
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: the request body is not a JSON object")
            params.update(body)
        elif raw:
            params.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()})
        return params

    def _api(self) -> bool:
        match = _BOT_PATH.match(urllib.parse.urlsplit(self.path).path)
        if not match:
            return False
        token, method = match.group(1), match.group(2)
        sandbox = self.sandbox
        bot = sandbox.bots.get(token)
        try:
            params = self._params()
            result = sandbox.api(token, method, params)
        except ApiError as exc:
            status, payload = exc.code, exc.body()
        except (ValueError, TypeError):
            status, payload = 400, ApiError(400, "Bad Request: can't parse the request").body()
        else:
            status, payload = 200, {"ok": True, "result": result}
            if method.lower() in _DESCRIPTIONS:
                payload["description"] = _DESCRIPTIONS[method.lower()]
        with sandbox._lock:
            sandbox.calls.append((bot.username if bot else "?", method, status))
        self._json(status, payload)
        return True

    def do_POST(self) -> None:  # noqa: N802
        if self._api():
            return
        if urllib.parse.urlsplit(self.path).path == "/_sandbox/say":
            form = self._params()
            notice = self.sandbox.say_from_form(form)
            target = "/?" + urllib.parse.urlencode({"notice": notice})
            return self._send(303, b"", "text/plain", {"Location": target})
        self._json(404, ApiError(404, "Not Found").body())

    def do_GET(self) -> None:  # noqa: N802
        if self._api():
            return
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/":
            notice = urllib.parse.parse_qs(parts.query).get("notice", [""])[-1]
            return self._send(200, self.sandbox.page(notice).encode(), "text/html; charset=utf-8")
        if parts.path == "/_sandbox/state":
            return self._json(200, self.sandbox.state())
        self._json(404, ApiError(404, "Not Found").body())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Telegram sandbox</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:70rem;padding:0 1rem;color:#1b1f24}}
table{{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}
pre{{margin:0;white-space:pre-wrap;font:inherit}} tr.user td{{background:#eef6ff}}
.notice{{background:#fff6d6;padding:.5rem .75rem;border-radius:4px}} .muted{{color:#666}}
form{{display:flex;gap:.5rem;flex-wrap:wrap;align-items:end}} input[name=text]{{flex:1;min-width:14rem}}
</style></head><body>
<h1>Telegram sandbox</h1>
<p class="muted">A local Telegram Bot API at <code>{api}</code> (set <code>TELEGRAM_API_BASE</code> to it). Messages
the bots send appear below; write to a bot as a user with the form (e.g. <code>/help</code>, <code>/status</code>).</p>
{notice}
<h2>Send as user</h2>
<form method="post" action="/_sandbox/say">
<label>Bot <select name="bot">{bot_options}</select></label>
<label>Chat <select name="chat">{chat_options}</select></label>
<input name="text" placeholder="/status" autocomplete="off" aria-label="Message"><button type="submit">Send</button>
</form>
<h2>Messages <span class="muted">(newest first; the page refreshes itself)</span></h2>
<table><thead><tr><th>Time</th><th>Chat</th><th>From</th><th>Text</th></tr></thead><tbody>{messages}</tbody></table>
<h2>Bots</h2>
<table><thead><tr><th>Bot</th><th>Webhook</th><th>Last webhook error</th><th>Pending updates</th></tr></thead>
<tbody>{bots}</tbody></table>
<h2>Chats</h2>
<table><thead><tr><th>Id</th><th>Title</th><th>Type</th></tr></thead><tbody>{chats}</tbody></table>
<script>
setInterval(function () {{
  var input = document.querySelector("input[name=text]");
  if (document.activeElement !== input && !input.value) location.replace(location.pathname);
}}, 3000);
</script>
</body></html>
"""
