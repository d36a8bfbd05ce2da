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
            answer = {"error_code": exc.code, "description": exc.reason}
        answer.setdefault("error_code", exc.code)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TelegramError(method, 0, f"Telegram is unreachable ({type(reason).__name__})") from None
    except ValueError:
        raise TelegramError(method, 0, "Telegram answered something that is not JSON") from None
    if not answer.get("ok"):
        params = answer.get("parameters") or {}
        raise TelegramError(
            method, int(answer.get("error_code") or 0), str(answer.get("description") or "error")[:300],
            params.get("retry_after"),
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
