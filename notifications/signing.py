"""Webhook signatures: HMAC-SHA256 over ``<timestamp>.<body>`` with the endpoint's secret, sent as

    X-ATI-Signature: t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

A receiver recomputes the HMAC over the raw body it got, compares in constant time, and rejects a
timestamp further than its replay window (default five minutes) from its clock. Several ``v1=``
values may appear while a secret is being rotated; one match is enough."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "X-ATI-Signature"
TOLERANCE_S = 300


class SignatureError(ValueError):
    pass


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = TOLERANCE_S, now: float | None = None) -> int:
    """The signed timestamp, or :class:`SignatureError` saying what is wrong."""
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("no timestamp in the signature header") from None
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        raise SignatureError("timestamp outside the replay window")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise SignatureError("signature mismatch")
    return t
