"""Payment providers behind one interface; Midtrans (Snap) is the one implemented.

    provider = payment_provider()            # from settings (MIDTRANS_* environment)
    provider.create_transaction(order_id=..., gross_amount=Decimal("1490000"), items=[...], customer={...})
    provider.signature_valid(payload)        # the HTTP notification's signature_key
    provider.transaction_status(order_id)    # the gateway's own view (what a notification is checked against)

Midtrans' protocol, as implemented here: Snap transactions are created with ``POST
{snap}/snap/v1/transactions`` (HTTP Basic auth: the server key as user, empty password) answering
``201 {"token", "redirect_url"}``; the HTTP notification is a JSON POST whose ``signature_key`` is
``sha512(order_id + status_code + gross_amount + server_key)`` in hex; the status API is ``GET
{api}/v2/{order_id}/status``. The server key is a secret from the environment and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Protocol

from django.conf import settings

from api.errors import ApplicationError


class PaymentProvider(Protocol):
    name: str

    def create_transaction(self, *, order_id: str, gross_amount: Decimal, items: list[dict], customer: dict) -> dict:
        """A checkout for ``order_id``: ``{"token", "redirect_url"}``."""

    def signature_valid(self, payload: dict) -> bool:
        """Whether a notification was signed with our key."""

    def transaction_status(self, order_id: str) -> dict:
        """The gateway's current record of ``order_id``."""


class MidtransProvider:
    name = "midtrans"

    def __init__(self, *, server_key: str, snap_url: str, api_url: str, timeout: float = 10.0):
        self._key = server_key
        self.snap_url = snap_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"MidtransProvider(snap_url={self.snap_url!r}, api_url={self.api_url!r})"

    def _request(self, method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
        if not self._key:
            raise ApplicationError(
                "payments_not_configured", "Payments are not configured: set MIDTRANS_SERVER_KEY.", status=503
            )
        auth = base64.b64encode(f"{self._key}:".encode()).decode()
        request = urllib.request.Request(
            url,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Authorization": f"Basic {auth}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - configured URL
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                data = json.loads(exc.read() or b"{}")
            except ValueError:
                data = {}
            return exc.code, data
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise ApplicationError(
                "payment_gateway_unreachable",
                f"The payment gateway did not answer ({type(exc).__name__}); retry shortly.", status=502,
            ) from exc  # fmt: skip

    def create_transaction(self, *, order_id: str, gross_amount: Decimal, items: list[dict], customer: dict) -> dict:
        body = {
            "transaction_details": {"order_id": order_id, "gross_amount": int(gross_amount)},
            "item_details": items,
            "customer_details": customer,
        }
        status, data = self._request("POST", f"{self.snap_url}/snap/v1/transactions", body)
        if status != 201 or not data.get("token"):
            messages = data.get("error_messages") or [f"HTTP {status}"]
            raise ApplicationError(
                "payment_gateway_error", "The payment gateway refused the checkout: " + "; ".join(map(str, messages)),
                {"status": status}, status=502,
            )  # fmt: skip
        return {"token": data["token"], "redirect_url": data.get("redirect_url", "")}

    def signature_valid(self, payload: dict) -> bool:
        text = (
            f"{payload.get('order_id', '')}{payload.get('status_code', '')}{payload.get('gross_amount', '')}{self._key}"
        )
        expected = hashlib.sha512(text.encode()).hexdigest()
        return bool(self._key) and hmac.compare_digest(expected, str(payload.get("signature_key", "")))

    def transaction_status(self, order_id: str) -> dict:
        status, data = self._request("GET", f"{self.api_url}/v2/{order_id}/status")
        if status != 200:
            raise ApplicationError(
                "payment_gateway_error", f"The gateway has no status for {order_id} (HTTP {status}).", status=502
            )
        return data


def payment_provider() -> PaymentProvider:
    return MidtransProvider(
        server_key=settings.MIDTRANS_SERVER_KEY, snap_url=settings.MIDTRANS_SNAP_URL, api_url=settings.MIDTRANS_API_URL
    )


# Midtrans transaction_status -> our payment status (capture only counts with fraud_status accept)
def midtrans_status(data: dict) -> str | None:
    status = data.get("transaction_status")
    if status == "capture":
        return "paid" if data.get("fraud_status", "accept") == "accept" else "pending"
    return {
        "settlement": "paid",
        "pending": "pending",
        "deny": "failed",
        "cancel": "canceled",
        "expire": "expired",
        "failure": "failed",
        "refund": "refunded",
        "partial_refund": "refunded",
    }.get(status)
