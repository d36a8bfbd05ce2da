"""Write-only credentials: the writes (create, rotate, delete), the one read of a secret
(:func:`credential_use`, at its point of use, audited) and the selectors the API and admin list.

A secret goes in once and never comes back out through a list, the API or the admin: it is kept
only as a vault blob (``compliance.vault``) whose context names the row (``credential:<id>:<name>``),
so a blob copied onto another row, or into another tenant, does not decrypt. Audit records name the
credential, its version and the purpose of a use, never the value; ``sensitive_variables`` keeps the
secret out of Django's error reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from api.errors import ApplicationError, NotFound

from . import vault
from .models import Credential
from .services import actor_display, audit_record

SECRET_MAX_LENGTH = 4096
# A hint shows the last 4 characters only of secrets of 16 or more, so at least 12 stay hidden
# (for a shorter one the hint would give away too large a share of it).
HINT_MIN_LENGTH = 16
HINT_CHARS = 4
NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
PURPOSE_MAX_LENGTH = 200
TEXT_MAX_LENGTH = 200


# --- metadata: non-secret settings, validated per kind ------------------------------------------


def _text(value: Any) -> str | None:
    ok = isinstance(value, str) and 0 < len(value) <= TEXT_MAX_LENGTH and _storable(value)
    return None if ok else f"a text of 1-{TEXT_MAX_LENGTH} characters"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _https_url(value: Any) -> str | None:
    ok = _text(value) is None and re.match(r"^https://[^\s/?#]+[^\s]*$", value) is not None
    return None if ok else "an https:// URL (no secrets in it: put a token in the secret)"


def _port(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    return None if ok else "a port number 1-65535"


def _email(value: Any) -> str | None:
    if _text(value) is not None:
        return "an e-mail address"
    try:
        EmailValidator()(value)
    except Exception:
        return "an e-mail address"
    return None


def _chat_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    ok = isinstance(value, str) and (re.match(r"^-?\d{1,20}$", value) or re.match(r"^@\w{5,32}$", value))
    return None if ok else "a chat id (an integer, or @channelname)"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


METADATA_FIELDS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    Credential.Kind.EXCHANGE: {"exchange": _text, "account": _text, "api_key_id": _text, "testnet": _boolean},
    Credential.Kind.BROKER: {"broker": _text, "account": _text, "environment": _one_of("live", "paper")},
    Credential.Kind.TELEGRAM: {"chat_id": _chat_id, "bot_username": _text},
    Credential.Kind.WEBHOOK: {"url": _https_url, "header_name": _text},
    Credential.Kind.SMTP: {"host": _text, "port": _port, "username": _text, "use_tls": _boolean, "from_email": _email},
    Credential.Kind.OTHER: {"description": _text},
}


def metadata_help() -> str:
    return "; ".join(f"{kind}: {', '.join(fields)}" for kind, fields in METADATA_FIELDS.items())


def _storable(text: str) -> bool:
    """PostgreSQL stores neither NUL nor lone surrogates in text or jsonb."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@sensitive_variables("secret")
def metadata_clean(kind: str, metadata: Any, secret: str | None) -> dict:
    """The metadata, or ``invalid_metadata`` naming each bad key and what it must be (never the
    values given: someone may have pasted a secret there)."""
    if metadata in (None, ""):
        return {}
    if not isinstance(metadata, dict):
        raise ApplicationError(
            "invalid_metadata", "metadata must be a JSON object.", {"metadata": ["Expected an object."]}
        )
    if secret and len(secret) >= HINT_CHARS:
        for key, value in metadata.items():
            if secret in str(key) or (isinstance(value, str) and secret in value):
                raise ApplicationError(
                    "secret_in_metadata",
                    "The metadata contains the secret; metadata is shown to admins, so keep it in 'secret' only.",
                    {"metadata": ["Contains the secret."]},
                )
    fields = METADATA_FIELDS[kind]
    errors: dict[str, list[str]] = {}
    for key, value in metadata.items():
        check = fields.get(key)
        if check is None:
            errors[str(key)[:40]] = [f"Not a {kind} setting; allowed: {', '.join(fields)}."]
        elif (problem := check(value)) is not None:
            errors[key] = [f"Must be {problem}."]
    if errors:
        raise ApplicationError(
            "invalid_metadata",
            f"Some metadata is not valid for a {kind} credential; fix the keys listed (values are not shown).",
            {"metadata": errors},
        )
    return dict(metadata)


@sensitive_variables("secret")
def secret_check(secret: Any) -> str:
    if not isinstance(secret, str) or not secret.strip():
        raise ApplicationError("invalid_secret", "Give the secret (a non-empty text).", {"secret": ["Required."]})
    if len(secret) > SECRET_MAX_LENGTH or not _storable(secret):
        raise ApplicationError(
            "invalid_secret",
            f"The secret must be at most {SECRET_MAX_LENGTH} characters of text, without NUL characters.",
            {"secret": ["Not a storable secret (its value is not shown)."]},
        )
    return secret


@sensitive_variables("secret")
def _hint(secret: str) -> str:
    return "…" + secret[-HINT_CHARS:] if len(secret) >= HINT_MIN_LENGTH else ""


def _context(credential: Credential) -> bytes:
    return f"credential:{credential.pk}:{credential.name}".encode()


# --- services -----------------------------------------------------------------------------------


def _name_taken(name: str) -> ApplicationError:
    return ApplicationError(
        "credential_name_taken",
        f"A credential named '{name}' exists: rotate its secret, or choose another name.",
        {"name": ["Already in use."]},
        status=409,
    )


@sensitive_variables("secret")
def credential_create(*, name: str, kind: str, secret: str, metadata: dict | None = None, actor) -> Credential:
    """Store a new credential in the current tenant. Everything is checked before anything is written."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ApplicationError(
            "invalid_input",
            "name must be 1-64 letters, digits, '-' or '_'.",
            {"name": ["Use letters, digits, '-' or '_'."]},
        )
    if kind not in Credential.Kind.values:
        raise ApplicationError(
            "invalid_input",
            f"kind must be one of {', '.join(Credential.Kind.values)}.",
            {"kind": ["Unknown kind."]},
        )
    secret = secret_check(secret)
    metadata = metadata_clean(kind, metadata, secret)
    if Credential.objects.filter(name=name).exists():
        raise _name_taken(name)
    try:
        with transaction.atomic():
            credential = Credential.objects.create(
                name=name,
                kind=kind,
                ciphertext=b"",
                hint=_hint(secret),
                metadata=metadata,
                created_by=actor_display(actor)[:254],
            )
            credential.ciphertext = vault.encrypt(secret.encode(), _context(credential))
            credential.save(update_fields=["ciphertext"])
            audit_record(actor, "credential.created", credential, {"name": name, "kind": kind, "version": 1})
    except IntegrityError as exc:  # created by someone else since the check
        raise _name_taken(name) from exc
    return credential


@sensitive_variables("secret")
def credential_rotate(*, credential_id: int, secret: str, actor) -> Credential:
    """Replace the secret (the version goes up; the old one is gone for good)."""
    secret = secret_check(secret)
    with transaction.atomic():
        credential = Credential.objects.select_for_update().filter(pk=credential_id).first()
        if credential is None:
            raise NotFound("credential")
        credential.ciphertext = vault.encrypt(secret.encode(), _context(credential))
        credential.hint = _hint(secret)
        credential.version += 1
        credential.rotated_at = timezone.now()
        credential.save(update_fields=["ciphertext", "hint", "version", "rotated_at"])
        audit_record(actor, "credential.rotated", credential, {"name": credential.name, "version": credential.version})
    return credential


def credential_delete(*, credential_id: int, actor) -> None:
    with transaction.atomic():
        credential = Credential.objects.select_for_update().filter(pk=credential_id).first()
        if credential is None:
            raise NotFound("credential")
        audit_record(
            actor,
            "credential.deleted",
            credential,
            {"name": credential.name, "kind": credential.kind, "version": credential.version},
        )
        try:
            with transaction.atomic():
                credential.delete()
        except ProtectedError as exc:
            users = sorted({f"{o._meta.verbose_name} '{o}'" for o in exc.protected_objects})
            raise ApplicationError(
                "credential_in_use",
                f"{credential.name} is in use by {', '.join(users)}; delete or change that first.",
                {"used_by": users}, status=409,
            ) from None  # fmt: skip


@sensitive_variables("plaintext")
def credential_use(name: str, purpose: str, actor) -> str:
    """The secret of the current tenant's credential ``name``, for the caller to use at once (never
    to store, log or return to a client). Each use is audited with its purpose."""
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > PURPOSE_MAX_LENGTH:
        raise ApplicationError(
            "invalid_input", f"Say what the secret is used for (1-{PURPOSE_MAX_LENGTH} characters).", {}
        )
    with transaction.atomic():
        credential = Credential.objects.filter(name=name).first()
        if credential is None:
            raise NotFound("credential", {"name": name})
        plaintext = vault.decrypt(credential.ciphertext, _context(credential)).decode()
        Credential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
        audit_record(
            actor, "credential.used", credential, {"name": name, "purpose": purpose, "version": credential.version}
        )
    return plaintext


# --- selectors ----------------------------------------------------------------------------------


def credential_list() -> QuerySet[Credential]:
    return Credential.objects.defer("ciphertext")


def credential_get(*, credential_id: int) -> Credential:
    credential = credential_list().filter(pk=credential_id).first()
    if credential is None:
        raise NotFound("credential")
    return credential
