"""Envelope encryption (AES-256-GCM) for secrets and model artifacts.

Each tenant has a data key (DEK) stored only wrapped by the master key (``FIELD_ENCRYPTION_KEY``).
A ciphertext names the DEK it was made with, and is bound to its tenant's schema as associated
data, so one tenant's blob can never be decrypted as another's:

    blob = b"v1" | len(key_id) | key_id | nonce(12) | ciphertext+tag
"""

from __future__ import annotations

import base64
import os
import secrets
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection, transaction

from api.errors import ApplicationError

from .models import DataKey

_VERSION = b"v1"
_dek_cache: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


def _master() -> AESGCM:
    key = base64.b64decode(settings.FIELD_ENCRYPTION_KEY)
    if len(key) != 32:
        raise RuntimeError("FIELD_ENCRYPTION_KEY must be 32 bytes, base64-encoded")
    return AESGCM(key)


def _wrap_aad(schema: str, key_id: str) -> bytes:
    return f"dek|{schema}|{key_id}".encode()


def _unwrap(schema: str, dk: DataKey) -> bytes:
    cache_key = (schema, dk.key_id)
    if cache_key not in _dek_cache:
        raw = bytes(dk.wrapped)
        dek = _master().decrypt(raw[:12], raw[12:], _wrap_aad(schema, dk.key_id))
        with _lock:
            _dek_cache[cache_key] = dek
    return _dek_cache[cache_key]


def _active_key(schema: str) -> tuple[str, bytes]:
    dk = DataKey.objects.filter(active=True).order_by("-id").first()
    if dk is None:
        with transaction.atomic():
            key_id = f"dek-{secrets.token_hex(4)}"
            dek = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(12)
            wrapped = nonce + _master().encrypt(nonce, dek, _wrap_aad(schema, key_id))
            dk = DataKey.objects.create(key_id=key_id, master_key_id=settings.FIELD_ENCRYPTION_KEY_ID, wrapped=wrapped)
    return dk.key_id, _unwrap(schema, dk)


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
