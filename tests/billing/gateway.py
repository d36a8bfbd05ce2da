"""A local HTTP server that speaks Midtrans' protocol (the real gateway is not reachable here):
Snap transaction creation, the status API, and signed HTTP notifications it can deliver."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import urllib.request
import uuid

STATUS_CODES = {"settlement": "200", "capture": "200", "pending": "201", "deny": "202", "cancel": "200",
                "expire": "407", "refund": "200", "partial_refund": "200"}  # fmt: skip


class FakeMidtrans:
    def __init__(self, server_key: str = "SB-Mid-server-test-key"):
        self.server_key = server_key
        self.orders: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                expected = "Basic " + base64.b64encode(f"{gateway.server_key}:".encode()).decode()
                return self.headers.get("Authorization") == expected

            def do_POST(self):  # noqa: N802
                gateway.requests.append(("POST", self.path))
                if self.path != "/snap/v1/transactions":
                    return self._reply(404, {"error_messages": ["not found"]})
                if not self._authorised():
                    return self._reply(401, {"error_messages": ["Access denied due to unauthorized transaction"]})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                details = body.get("transaction_details") or {}
                order_id, amount = details.get("order_id"), details.get("gross_amount")
                if not order_id or not isinstance(amount, int) or amount < 1:
                    return self._reply(400, {"error_messages": ["transaction_details.gross_amount is required"]})
                if order_id in gateway.orders:
                    return self._reply(400, {"error_messages": ["transaction_details.order_id has already been taken"]})
                token = str(uuid.uuid4())
                gateway.orders[order_id] = {"order_id": order_id, "gross_amount": f"{amount}.00", "token": token,
                                            "transaction_status": "pending", "transaction_id": str(uuid.uuid4()),
                                            "items": body.get("item_details")}  # fmt: skip
                return self._reply(201, {"token": token, "redirect_url": f"{gateway.url}/snap/v4/redirection/{token}"})

            def do_GET(self):  # noqa: N802
                gateway.requests.append(("GET", self.path))
                if not self._authorised():
                    return self._reply(401, {"status_code": "401", "status_message": "Unauthorized"})
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "v2" or parts[2] != "status":
                    return self._reply(404, {"status_code": "404"})
                order = gateway.orders.get(parts[1])
                if order is None:
                    return self._reply(404, {"status_code": "404", "status_message": "Transaction doesn't exist."})
                return self._reply(200, gateway.record(parts[1]))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, order_id: str) -> dict:
        o = self.orders[order_id]
        status = o["transaction_status"]
        return {"status_code": STATUS_CODES.get(status, "200"), "transaction_id": o["transaction_id"],
                "order_id": order_id, "gross_amount": o["gross_amount"], "payment_type": "bank_transfer",
                "transaction_status": status, "fraud_status": "accept", "currency": "IDR"}  # fmt: skip

    def notification(self, order_id: str, status: str | None = None, key: str | None = None) -> dict:
        """Move the order to ``status`` and return the notification Midtrans would send (signed)."""
        if status is not None:
            self.orders[order_id]["transaction_status"] = status
        body = self.record(order_id)
        text = f"{order_id}{body['status_code']}{body['gross_amount']}{key or self.server_key}"
        body["signature_key"] = hashlib.sha512(text.encode()).hexdigest()
        return body

    def deliver(self, url: str, body: dict) -> tuple[int, dict]:
        """POST a notification to ``url`` as the gateway does."""
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def close(self):
        self.server.shutdown()
