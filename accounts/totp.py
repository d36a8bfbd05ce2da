"""Optional second factor for staff: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps), which
Django admin's login then requires (accounts/admin_login.py).

* Enrolment: ``totp_enrol_start`` draws a fresh secret (shown to the person once, as an
  ``otpauth://`` URI and in base32) into an unconfirmed device; ``totp_enrol_confirm`` turns it on
  once a code from the app matches. Starting again before confirming replaces the secret.
* Verification accepts the current step ±1 (clock drift) and never the same or an older step twice
  (a code seen over someone's shoulder is spent).
* The secret is stored only encrypted: AES-256-GCM with a key derived by HKDF-SHA256 from the
  master key ``settings.FIELD_ENCRYPTION_KEY`` (info names this use, so the key is unlike any other
  derived from the master), the user's id as associated data (a ciphertext copied onto another user
  does not decrypt). Never logged, never in an error. After a master-key rotation a secret under a
  retired key (still in FIELD_ENCRYPTION_OLD_KEYS) is read with it and re-encrypted under the new
  key at its next successful code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import struct
import time
from urllib.parse import quote, urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from api.errors import ApplicationError

from .models import TotpDevice, User

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
ISSUER = "AI Trading Intelligence"
SESSION_KEY = "_totp_verified_user"  # set on admin log-in with a valid code (accounts/admin_login.py)


# --- the algorithm (RFC 4226 / 6238) -----------------------------------------------------------


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def step_at(ts: float | None = None) -> int:
    return int((time.time() if ts is None else ts) // STEP_SECONDS)


def totp(secret: bytes, ts: float | None = None) -> str:
    return hotp(secret, step_at(ts))


def _matching_step(secret: bytes, code: str, now: float | None = None) -> int | None:
    code = (code or "").replace(" ", "").strip()
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = step_at(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


# --- the secret at rest ------------------------------------------------------------------------


def _key(key_id: str | None = None) -> bytes:
    """The TOTP key derived from master key ``key_id`` (default: the current one). Retired master
    keys (FIELD_ENCRYPTION_OLD_KEYS, compliance.vault's ring) still read older secrets."""
    from compliance.vault import master_key_ring

    master = master_key_ring().get(key_id or settings.FIELD_ENCRYPTION_KEY_ID)
    if master is None:
        raise _unreadable()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"accounts.totp.secret.v1").derive(master)


def _unreadable() -> ApplicationError:
    return ApplicationError(
        "totp_unreadable",
        "Your authenticator can't be read (its master key is no longer configured). Ask another admin to "
        "reset it (manage.py totp_reset), then enrol again.",
        status=409,
    )


def _aad(user_id: int) -> bytes:
    return f"accounts.totp:user:{user_id}".encode()


def secret_encrypt(secret: bytes, *, user_id: int) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key()).encrypt(nonce, secret, _aad(user_id))


def secret_decrypt(blob: bytes, *, user_id: int, key_id: str | None = None) -> bytes:
    blob = bytes(blob)
    try:
        return AESGCM(_key(key_id)).decrypt(blob[:12], blob[12:], _aad(user_id))
    except InvalidTag as exc:
        raise _unreadable() from exc


# --- enrolment and verification ----------------------------------------------------------------


def _require_staff(user: User) -> None:
    if not user.is_staff:
        raise ApplicationError(
            "staff_only", "Two-factor log-in protects Django admin, so it is for staff accounts.", status=403
        )


def totp_enabled(user) -> bool:
    return (
        bool(getattr(user, "pk", None))
        and TotpDevice.objects.filter(user_id=user.pk, confirmed_at__isnull=False).exists()
    )


def provisioning_uri(secret: bytes, *, account: str) -> str:
    label = quote(f"{ISSUER}:{account}")
    params = {"secret": base64.b32encode(secret).decode().rstrip("="), "issuer": ISSUER, "digits": DIGITS}
    return f"otpauth://totp/{label}?{urlencode(params | {'period': STEP_SECONDS})}"


def totp_enrol_start(*, user: User) -> dict:
    """A new secret for ``user``; returns ``{"secret": base32, "uri": otpauth://...}`` to show once."""
    _require_staff(user)
    if totp_enabled(user):
        raise ApplicationError(
            "totp_already_enabled", "Two-factor log-in is already on. Turn it off first to move it to a new app.",
            status=409,
        )  # fmt: skip
    secret = secrets.token_bytes(20)
    TotpDevice.objects.update_or_create(
        user=user,
        defaults={
            "secret_ciphertext": secret_encrypt(secret, user_id=user.pk),
            "key_id": settings.FIELD_ENCRYPTION_KEY_ID,
            "confirmed_at": None,
            "last_step": 0,
        },
    )
    return {
        "secret": base64.b32encode(secret).decode().rstrip("="),
        "uri": provisioning_uri(secret, account=user.email),
    }


def _verify_locked(device: TotpDevice, code: str, now: float | None) -> bool:
    secret = secret_decrypt(device.secret_ciphertext, user_id=device.user_id, key_id=device.key_id)
    step = _matching_step(secret, code, now)
    if step is None or step <= device.last_step:
        return False
    device.last_step = step
    if device.key_id != settings.FIELD_ENCRYPTION_KEY_ID:  # a master-key rotation: move it to the new key
        device.secret_ciphertext = secret_encrypt(secret, user_id=device.user_id)
        device.key_id = settings.FIELD_ENCRYPTION_KEY_ID
    return True


def totp_enrol_confirm(*, user: User, code: str, now: float | None = None) -> TotpDevice:
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=True).first()
        if device is None:
            raise ApplicationError(
                "totp_not_started", "Start the set-up again: open the two-factor page to get a secret.", status=409
            )
        if not _verify_locked(device, code, now):
            raise ApplicationError(
                "totp_invalid_code",
                "That code doesn't match. Check the app shows the account just added and that the device's "
                "clock is right, then enter the current 6-digit code.",
            )
        device.confirmed_at = timezone.now()
        device.save(update_fields=["confirmed_at", "last_step", "secret_ciphertext", "key_id"])
    return device


def totp_verify(*, user: User, code: str, now: float | None = None) -> bool:
    """True when ``code`` is valid now for the user's confirmed device, and not used before."""
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user_id=user.pk, confirmed_at__isnull=False).first()
        if device is None or not _verify_locked(device, code, now):
            return False
        device.save(update_fields=["last_step", "secret_ciphertext", "key_id"])
    return True


def totp_disable(*, user: User, code: str) -> None:
    """Turn two-factor off; needs a current code (a stolen session alone can't)."""
    if not totp_verify(user=user, code=code):
        raise ApplicationError("totp_invalid_code", "Enter the current 6-digit code from your authenticator app.")
    TotpDevice.objects.filter(user=user).delete()


def totp_reset(*, user: User) -> bool:
    """Support: remove a person's authenticator (lost phone). True if there was one."""
    deleted, _ = TotpDevice.objects.filter(user=user).delete()
    return bool(deleted)


def admin_session_ok(request) -> bool:
    """Admin pages need this session to have passed the code when the person has an authenticator."""
    user = request.user
    if not totp_enabled(user):
        return True
    return request.session.get(SESSION_KEY) == user.pk
