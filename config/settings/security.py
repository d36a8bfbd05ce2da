"""Secrets come from the environment. For the embedded default (a developer's clone) they are
generated once into .data/secrets.json (mode 600), never committed and never logged."""

import base64
import json
import os
import secrets
from urllib.parse import urlparse

from django.utils.csp import CSP

from .base import DATA_DIR, DEBUG
from .env import env_bool, env_int, env_str
from .tasks import MIDTRANS_SNAP_URL


def _origin(url: str) -> str:
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}"


def _local_secrets() -> dict:
    path = DATA_DIR / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    values = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(values, fh)
    except FileExistsError:  # another process won the race
        return json.loads(path.read_text())
    return values


_secrets = None if (env_str("DJANGO_SECRET_KEY") and env_str("FIELD_ENCRYPTION_KEY")) else _local_secrets()
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or _secrets["DJANGO_SECRET_KEY"]
# Master key (base64, 32 bytes) wrapping every tenant's data key (AES-256-GCM envelope encryption).
FIELD_ENCRYPTION_KEY = env_str("FIELD_ENCRYPTION_KEY") or _secrets["FIELD_ENCRYPTION_KEY"]
FIELD_ENCRYPTION_KEY_ID = env_str("FIELD_ENCRYPTION_KEY_ID", "k1")


def _old_keys(raw: str) -> dict[str, str]:
    """Retired master keys still needed to unwrap data keys until ``manage.py rotate_master_key`` has
    re-wrapped them: a JSON object ``{"k1": "<base64>"}``, a JSON list or a comma list of
    ``id:<base64>``. Errors name the entry, never a key."""
    raw = raw.strip()
    if not raw:
        return {}
    items = json.loads(raw) if raw[0] in "{[" else raw.split(",")
    pairs = items.items() if isinstance(items, dict) else (str(i).strip().partition(":")[::2] for i in items)
    keys = {}
    for n, (key_id, key) in enumerate(pairs, 1):
        if not key_id or not key:
            raise ValueError(f"FIELD_ENCRYPTION_OLD_KEYS entry {n} is not id:<base64 key>")
        keys[str(key_id).strip()] = str(key).strip()
    return keys


# Key ring for a rotation without downtime (README, "Rotating the master key"): data keys wrapped by
# any of these still decrypt; new wraps always use FIELD_ENCRYPTION_KEY.
FIELD_ENCRYPTION_OLD_KEYS = _old_keys(env_str("FIELD_ENCRYPTION_OLD_KEYS"))

SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG and env_bool("HTTPS", False))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY") else None
SESSION_COOKIE_AGE = 60 * 60 * 24 * 7  # a week; the session key rotates at every login
SESSION_COOKIE_NAME = "ati_session"
CSRF_COOKIE_HTTPONLY = True  # pages carry the token (forms, htmx headers); scripts never read the cookie
CSRF_FAILURE_VIEW = "accounts.views.csrf_failure"
if SECURE_COOKIES:
    SECURE_HSTS_SECONDS = 60 * 60 * 24 * 30
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)

# Content-Security-Policy (ops/security_headers.py picks one per response). HTML pages: scripts and
# <style> elements from this origin or with the request's nonce, never inline handlers or eval;
# style="" attributes stay allowed (templates size bars and colour legends with them; an attribute
# can't run script). Forms post here, or to the payment gateway's checkout (billing's Pay button).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],  # + the decision feed's WebSocket origin, added per request
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF, _origin(MIDTRANS_SNAP_URL)],
    "frame-ancestors": [CSP.NONE],
}
# everything that is not HTML (API JSON, the schema, static files)
SECURE_CSP_API = {"default-src": [CSP.NONE], "frame-ancestors": [CSP.NONE]}
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer",
        "microphone", "midi", "payment", "usb",
    )
)  # fmt: skip
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Login lockout (accounts/lockout.py), for the dashboard, the API token endpoint and admin alike:
# this many failures for one login name, or from one address (a spray over many names), within
# the window lock that name or address for LOGIN_LOCKOUT_SECONDS.
LOGIN_LOCKOUT_MAX_FAILURES = env_int("LOGIN_LOCKOUT_MAX_FAILURES", 5)
LOGIN_LOCKOUT_MAX_FAILURES_PER_IP = env_int("LOGIN_LOCKOUT_MAX_FAILURES_PER_IP", 20)
LOGIN_LOCKOUT_WINDOW = env_int("LOGIN_LOCKOUT_WINDOW_SECONDS", 15 * 60)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60)
