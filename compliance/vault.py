"""Envelope encryption (AES-256-GCM) for secrets and model artifacts.

Each tenant has a data key (DEK) stored only wrapped by the master key (``FIELD_ENCRYPTION_KEY``).
A ciphertext names the DEK it was made with, and is bound to its tenant's schema as associated
data, so one tenant's blob can never be decrypted as another's:

    blob = b"v1" | len(key_id) | key_id | nonce(12) | ciphertext+tag

The master key is a ring: ``FIELD_ENCRYPTION_KEY`` (id ``FIELD_ENCRYPTION_KEY_ID``) wraps every new
data key, and ``FIELD_ENCRYPTION_OLD_KEYS`` still unwrap data keys wrapped before a rotation, so
nothing stops working while ``manage.py rotate_master_key`` re-wraps them (:func:`data_key_rewrap`).
A data key's plaintext never changes when it is re-wrapped, so blobs are never re-encrypted.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from api.errors import ApplicationError

from .models import DataKey

_VERSION = b"v1"
_dek_cache: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


def _decode_master(key_id: str, value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:  # never show the value
        raise ImproperlyConfigured(f"Master key '{key_id}' must be 32 bytes, base64-encoded.")
    return key


def master_key_ring() -> dict[str, bytes]:
    """Master key id -> key: the current one first, then the retired ones still configured."""
    current = settings.FIELD_ENCRYPTION_KEY_ID
    ring = {current: _decode_master(current, settings.FIELD_ENCRYPTION_KEY)}
    for key_id, value in (getattr(settings, "FIELD_ENCRYPTION_OLD_KEYS", None) or {}).items():
        key = _decode_master(key_id, value)
        if key_id == current and key != ring[current]:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_OLD_KEYS names '{key_id}', the current key's id, with another key: "
                "give the new master key a new FIELD_ENCRYPTION_KEY_ID."
            )
        ring.setdefault(key_id, key)
    return ring


def _master(key_id: str | None = None) -> AESGCM:
    """The current master key, or a configured one by id (to unwrap a data key wrapped before a rotation)."""
    ring = master_key_ring()
    key_id = key_id or settings.FIELD_ENCRYPTION_KEY_ID
    if key_id not in ring:
        raise ApplicationError(
            "undecryptable",
            f"Master key '{key_id}' is not configured: add it to FIELD_ENCRYPTION_OLD_KEYS until "
            "'manage.py rotate_master_key' has re-wrapped this tenant's data keys.",
            status=500,
        )
    return AESGCM(ring[key_id])


def _wrap_aad(schema: str, key_id: str) -> bytes:
    return f"dek|{schema}|{key_id}".encode()


def _unwrap_raw(schema: str, dk: DataKey) -> bytes:
    raw = bytes(dk.wrapped)
    try:
        return _master(dk.master_key_id).decrypt(raw[:12], raw[12:], _wrap_aad(schema, dk.key_id))
    except InvalidTag as exc:
        raise ApplicationError(
            "undecryptable",
            f"Data key {dk.key_id} does not unwrap with master key '{dk.master_key_id}': is the configured "
            "key for that id the one it was wrapped with?",
            status=500,
        ) from exc


def _wrap(schema: str, key_id: str, dek: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + _master().encrypt(nonce, dek, _wrap_aad(schema, key_id))


def _unwrap(schema: str, dk: DataKey) -> bytes:
    cache_key = (schema, dk.key_id)
    if cache_key not in _dek_cache:
        dek = _unwrap_raw(schema, dk)
        with _lock:
            _dek_cache[cache_key] = dek
    return _dek_cache[cache_key]


def _data_key_new(schema: str) -> DataKey:
    key_id = f"dek-{secrets.token_hex(4)}"
    dek = AESGCM.generate_key(bit_length=256)
    return DataKey.objects.create(
        key_id=key_id, master_key_id=settings.FIELD_ENCRYPTION_KEY_ID, wrapped=_wrap(schema, key_id, dek)
    )


def _active_key(schema: str) -> tuple[str, bytes]:
    dk = DataKey.objects.filter(active=True).order_by("-id").first()
    if dk is None:
        with transaction.atomic():
            dk = _data_key_new(schema)
    return dk.key_id, _unwrap(schema, dk)


def data_key_rewrap(dk: DataKey) -> bool:
    """Re-wrap one data key of the current tenant under the current master key, if another one
    wraps it; whether it changed. Idempotent: the row is locked and re-read, and a key already
    under the current master is only checked (it must unwrap), never rewritten."""
    schema = connection.schema_name
    current = settings.FIELD_ENCRYPTION_KEY_ID
    with transaction.atomic():
        dk = DataKey.objects.select_for_update().get(pk=dk.pk)
        dek = _unwrap_raw(schema, dk)
        if dk.master_key_id == current:
            return False
        dk.wrapped = _wrap(schema, dk.key_id, dek)
        dk.master_key_id = current
        dk.rewrapped_at = timezone.now()
        dk.save(update_fields=["wrapped", "master_key_id", "rewrapped_at"])
    return True


def data_key_start_new() -> DataKey | None:
    """Retire the current tenant's active data key and start a fresh one for new writes, unless the
    active key was created under the current master key (then ``None``: a re-run changes nothing).
    Retired keys stay to decrypt the blobs made with them."""
    schema = connection.schema_name
    with transaction.atomic():
        active = list(DataKey.objects.select_for_update().filter(active=True).order_by("-id"))
        if active and active[0].master_key_id == settings.FIELD_ENCRYPTION_KEY_ID and active[0].rewrapped_at is None:
            return None
        if not active:
            return None  # the first encryption creates one under the current master key
        DataKey.objects.filter(pk__in=[d.pk for d in active]).update(active=False)
        return _data_key_new(schema)


def _aad(schema: str, key_id: str, context: bytes) -> bytes:
    return f"data|{schema}|{key_id}|".encode() + context


def encrypt(plaintext: bytes, context: bytes = b"") -> bytes:
    """Encrypt for the current tenant. ``context`` (e.g. b"credential:telegram") must match on decrypt."""
    schema = connection.schema_name
    key_id, dek = _active_key(schema)
    nonce = os.urandom(12)
    kid = key_id.encode()
    return (
        _VERSION
        + bytes([len(kid)])
        + kid
        + nonce
        + AESGCM(dek).encrypt(nonce, plaintext, _aad(schema, key_id, context))
    )


def decrypt(blob: bytes, context: bytes = b"") -> bytes:
    blob = bytes(blob)
    if blob[:2] != _VERSION:
        raise ApplicationError("undecryptable", "Unknown ciphertext format.", status=500)
    n = blob[2]
    key_id = blob[3 : 3 + n].decode()
    nonce, ct = blob[3 + n : 15 + n], blob[15 + n :]
    schema = connection.schema_name
    dk = DataKey.objects.filter(key_id=key_id).first()
    if dk is None:
        raise ApplicationError("undecryptable", "The data key for this ciphertext is not in this tenant.", status=500)
    try:
        return AESGCM(_unwrap(schema, dk)).decrypt(nonce, ct, _aad(schema, key_id, context))
    except InvalidTag as exc:
        raise ApplicationError(
            "undecryptable", "Ciphertext was tampered with or belongs elsewhere.", status=500
        ) from exc
