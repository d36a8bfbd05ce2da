"""Serve the live decision feed ``ws/decisions/`` (intelligence/edge.py) until stopped."""

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the WebSocket decision feed ws/decisions/ (and GET /health) on the websockets library: one Redis "
        "subscription per tenant, each decision framed once into every socket that wants it. Several processes "
        "may share the port (SO_REUSEPORT)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (127.0.0.1).")
        parser.add_argument("--port", type=int, default=None, help="Port (WS_FEED_PORT, 8002; 0 = any free one).")

    def handle(self, *args, **o):
        from intelligence import edge

        port = settings.WS_FEED_PORT if o["port"] is None else o["port"]

        def ready(bound: int) -> None:
            self.stdout.write(f"decision feed on ws://{o['host']}:{bound}{edge.PATH}", ending="\n")
            self.stdout.flush()

        async def main() -> None:
            task = asyncio.ensure_future(edge.run(o["host"], port, ready))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                pass

        asyncio.run(main())
