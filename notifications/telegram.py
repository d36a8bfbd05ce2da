"""The Telegram Bot API over HTTP (https://core.telegram.org/bots/api): ``POST
<TELEGRAM_API_BASE>/bot<token>/<method>`` with a JSON body, answered ``{"ok": true, "result": ...}``
or ``{"ok": false, "error_code": 400, "description": "...", "parameters": {"retry_after": 3}}``.

The base URL is a setting (``TELEGRAM_API_BASE``), so tests and the offline demo talk to the local
server of ``notifications.sandbox`` that speaks the same protocol. The token is part of the URL:
it is never logged (errors name the method, never the URL)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings


@dataclass
class TelegramError(Exception):
    method: str
    code: int  # Telegram's error_code, or 0: no answer (network, timeout)
    description: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"Telegram {self.method}: {self.code or 'no answer'} {self.description}"

    @property
    def permanent(self) -> bool:
        """Retrying cannot help: a bad token, an unknown chat, a bot blocked or kicked."""
        return self.code in (400, 401, 403, 404)


def call(token: str, method: str, payload: dict | None = None, *, timeout: float | None = None) -> dict | list | bool:
    """``result`` of one Bot API call, or :class:`TelegramError`: Telegram's ``error_code`` and
    ``description`` (``retry_after`` on 429), or code 0 when no usable answer came (refused,
    timed out, not JSON)."""
    url = f"{settings.TELEGRAM_API_BASE.rstrip('/')}/bot{token}/{method}"
    body = json.dumps(payload or {}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout or settings.TELEGRAM_TIMEOUT_S) as response:  # noqa: S310 - the configured API
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # a proxy's or a server's own error page
            answer = {"error_code": exc.code, "description": f"HTTP {exc.code} {exc.reason}"}
        answer.setdefault("error_code", exc.code)
    except TimeoutError:
        raise TelegramError(method, 0, "Telegram is unreachable (timed out)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TelegramError(method, 0, f"Telegram is unreachable ({type(reason).__name__})") from None
    except ValueError:
        raise TelegramError(method, 0, "Telegram answered something that is not JSON") from None
    if not isinstance(answer, dict):
        raise TelegramError(method, 0, "Telegram answered something that is not a Bot API reply")
    if not answer.get("ok"):
        params = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        try:
            code = int(answer.get("error_code") or 0)
        except (TypeError, ValueError):
            code = 0
        retry_after = params.get("retry_after")
        raise TelegramError(
            method, code, str(answer.get("description") or "error")[:300],
            float(retry_after) if isinstance(retry_after, int | float) else None,
        )  # fmt: skip
    return answer.get("result")


def get_me(token: str) -> dict:
    return call(token, "getMe")


def send_message(token: str, chat_id: str | int, text: str) -> dict:
    """Plain text (no parse mode: nothing in an event can break the formatting), at most 4,096
    characters as Telegram allows."""
    if len(text) > 4096:
        text = text[:4093] + "..."
    return call(token, "sendMessage", {"chat_id": chat_id, "text": text, "disable_web_page_preview": True})


def set_webhook(token: str, url: str, secret_token: str) -> bool:
    """Telegram POSTs updates to ``url`` from now on, each with the header
    ``X-Telegram-Bot-Api-Secret-Token: <secret_token>`` (1-256 of A-Z, a-z, 0-9, _ and -)."""
    return call(token, "setWebhook", {"url": url, "secret_token": secret_token, "allowed_updates": ["message"]})


def delete_webhook(token: str) -> bool:
    return call(token, "deleteWebhook", {})


def get_webhook_info(token: str) -> dict:
    return call(token, "getWebhookInfo")


def get_updates(token: str, offset: int | None = None, timeout: int = 0) -> list:
    """Updates waiting while no webhook is set (long polling with ``timeout`` seconds)."""
    payload: dict = {"timeout": timeout}
    if offset is not None:
        payload["offset"] = offset
    return call(token, "getUpdates", payload, timeout=settings.TELEGRAM_TIMEOUT_S + timeout)
