"""Local servers that speak the real protocols: a webhook receiver that verifies signatures the way
a customer's would (its own HMAC code, not ours), and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from email import message_from_bytes, policy


class WebhookReceiver:
    """``mode``: "ok" (204), "fail" (500), "reject" (400), "slow" (answers after ``slow_s``)."""

    def __init__(self, secret: str = "", *, window_s: int = 300):
        self.secret = secret
        self.window_s = window_s
        self.mode = "ok"
        self.slow_s = 2.0
        self.received: list[dict] = []  # verified deliveries
        self.refused: list[str] = []  # why a request was refused
        self.hits = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.hits += 1
                problem = receiver.check(self.headers.get("X-ATI-Signature", ""), body)
                if problem:
                    with receiver.lock:
                        receiver.refused.append(problem)
                    self.send_response(401)
                    self.end_headers()
                    return
                if receiver.mode == "slow":
                    time.sleep(receiver.slow_s)
                if receiver.mode in ("fail", "reject"):
                    self.send_response(500 if receiver.mode == "fail" else 400)
                    self.end_headers()
                    self.wfile.write(b"not today")
                    return
                with receiver.lock:
                    receiver.received.append(
                        {"body": json.loads(body), "key": self.headers.get("Idempotency-Key"),
                         "event": self.headers.get("X-ATI-Event")}
                    )  # fmt: skip
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def check(self, header: str, body: bytes) -> str:
        """What a careful receiver checks: the timestamp within the window, one v1 matching."""
        fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        if "t" not in fields or "v1" not in fields:
            return "no signature"
        if abs(time.time() - int(fields["t"])) > self.window_s:
            return "stale"
        mac = hmac.new(self.secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return "" if hmac.compare_digest(mac, fields["v1"]) else "bad signature"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """A real SMTP server on a free port; ``messages`` are the parsed e-mails it accepted."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        with socket.socket() as probe:  # a free port (aiosmtpd checks its server by connecting to it)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self):
        self.controller.stop()
