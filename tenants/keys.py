"""API key format and hashing. A key is ``ati_<prefix>_<secret>``; we keep the prefix (lookup)
and sha256(key) — the secret has 190+ bits of entropy, so a fast hash is not brute-forceable."""

import hashlib
import hmac
import secrets

KEY_PREFIX = "ati"


def key_generate() -> tuple[str, str, str]:
    """Return (raw_key, prefix, hashed_key)."""
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return raw, prefix, key_hash(raw)


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def key_prefix(raw: str) -> str | None:
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def key_matches(raw: str, hashed: str) -> bool:
    return hmac.compare_digest(key_hash(raw), hashed)
