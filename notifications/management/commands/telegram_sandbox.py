"""``manage.py telegram_sandbox``: the local Telegram Bot API of notifications.sandbox, for the
offline demo (a Procfile line of ``make run``) and for trying bots by hand."""

from __future__ import annotations

import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifications import demo
from notifications.sandbox import TelegramSandbox


def _bot(text: str) -> tuple[str, str]:
    token, sep, username = text.rpartition(":")  # the token holds a colon itself
    if not sep or not token or not username:
        raise CommandError(f"--bot is TOKEN:USERNAME, got {text!r}")
    return token, username


class Command(BaseCommand):
    help = (
        "Serve a local Telegram Bot API (getMe, sendMessage, setWebhook, deleteWebhook, getWebhookInfo, "
        "getUpdates) with Telegram's answers and errors, and a page at / listing bots, chats and messages with a "
        "form to write to a bot as a user. Point the app at it with TELEGRAM_API_BASE=http://127.0.0.1:<port>. "
        "Example: manage.py telegram_sandbox --port 8081 --bot 123456789:AAH...:my_bot --chat '4242:Ann'."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8081, help="Port to listen on (default 8081).")
        parser.add_argument(
            "--bot", action="append", default=[], metavar="TOKEN:USERNAME",
            help="A bot the API knows (repeatable); the token is <digits>:<10+ letters>, as @BotFather gives.",
        )  # fmt: skip
        parser.add_argument(
            "--chat", action="append", default=[], metavar="ID:TITLE",
            help="A chat bots may write to (repeatable): a positive id is a person's private chat, a negative one "
            "a group.",
        )  # fmt: skip
        parser.add_argument(
            "--demo", action="store_true",
            help=f"Also the demo bot (@{demo.DEMO_BOT_USERNAME}) and chat ({demo.DEMO_CHAT_ID}), and once listening, "
            "set them up for the demo tenant: bot registered (or its webhook set again), chat linked to the demo "
            "owner, subscribed to confident decisions.",
        )  # fmt: skip
        parser.add_argument(
            "--optional", action="store_true",
            help="Serve only when TELEGRAM_API_BASE points at this sandbox; otherwise (a real Telegram configured) "
            "say so and wait until stopped. For the Procfile: honcho stops every process as soon as one exits.",
        )  # fmt: skip

    def handle(self, *args, **o):
        self._stop = threading.Event()
        try:  # first thing: honcho may stop us at any moment
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        except ValueError:  # not the main thread (a test calling the command)
            pass
        box = TelegramSandbox(o["host"], o["port"])
        own = {f"http://{o['host']}:{o['port']}", f"http://localhost:{o['port']}", f"http://127.0.0.1:{o['port']}"}
        if o["optional"] and settings.TELEGRAM_API_BASE.rstrip("/") not in own:
            self.stdout.write(
                f"TELEGRAM_API_BASE is {settings.TELEGRAM_API_BASE}: no sandbox needed (waiting until stopped)."
            )
            self.stdout.flush()
            return self._wait(None)
        for text in o["bot"]:
            token, username = _bot(text)
            try:
                box.add_bot(token, username)
            except ValueError as exc:
                raise CommandError(f"--bot {username}: {exc}") from None
        for text in o["chat"]:
            chat_id, _, title = text.partition(":")  # the title may hold colons
            if not chat_id or not chat_id.lstrip("-").isdigit() and not chat_id.startswith("@"):
                raise CommandError(f"--chat is ID:TITLE (a chat number or @channel), got {text!r}")
            box.add_chat(int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id, title)
        if o["demo"]:
            box.add_bot(demo.DEMO_BOT_TOKEN, demo.DEMO_BOT_USERNAME, first_name="ATI demo")
            box.add_chat(demo.DEMO_CHAT_ID, demo.DEMO_CHAT_TITLE)
        try:
            box.start()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {o['host']}:{o['port']} ({exc}); choose another --port.") from None
        bots = ", ".join("@" + b.username for b in box.bots.values()) or "none"
        self.stdout.write(f"Telegram sandbox at {box.url}/ (bots: {bots}; chats: {len(box.chats)})")
        self.stdout.flush()
        if o["demo"]:
            threading.Thread(target=self._demo, daemon=True).start()
        self._wait(box)

    def _demo(self) -> None:
        """The demo tenant's bot and chat, once the database is there (``make demo`` made it)."""
        from django.contrib.auth import get_user_model
        from django.db import connection

        from api.errors import ApplicationError
        from tenants.models import Membership, Role, Tenant

        for attempt in range(30):
            try:
                tenant = Tenant.objects.filter(slug="demo").first()
                owner = get_user_model().objects.filter(email="demo@example.com").first()
                if tenant is None or owner is None:
                    self.stdout.write("Telegram demo: no demo tenant yet (make demo makes it).")
                    return
                if not Membership.objects.filter(tenant=tenant, user=owner, role=Role.OWNER).exists():
                    self.stdout.write("Telegram demo: demo@example.com is not the demo tenant's owner.")
                    return
                self.stdout.write(demo.telegram_demo_ensure(tenant, owner))
                return
            except ApplicationError as exc:
                self.stderr.write(f"Telegram demo not set up: {exc.code}: {exc.message}")
                return
            except Exception as exc:  # noqa: BLE001 - the database may still be starting: try again
                if attempt == 29:
                    self.stderr.write(f"Telegram demo not set up: {type(exc).__name__}: {exc}")
                time.sleep(2)
            finally:
                self.stdout.flush()
                connection.close()

    def _wait(self, box: TelegramSandbox | None) -> None:
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if box is not None:
                box.stop()
