from __future__ import annotations

from typing import Any

from .models import AuditRecord


def pseudonym(user: Any) -> str:
    """How a person is named in anything that can never be edited (the chained audit trail):
    ``user:<id>``. The id is a pseudonym; who it is lives only in ``accounts.User``, which GDPR
    erasure scrubs, so the chain never holds a name or an address and never needs rewriting."""
    return f"user:{user.pk}"


def _actor_name(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    name = getattr(actor, "audit_name", None)
    if name:
        return name
    if getattr(actor, "pk", None) is not None:
        return pseudonym(actor)
    return str(actor)


def actor_display(actor: Any) -> str:
    """How an actor is shown in ``created_by`` / history fields: a person's e-mail, an API key's
    audit name, or the string given ("system" for none). Only for editable columns: GDPR erasure
    (``compliance.gdpr.actor_columns``) replaces the e-mail there with the pseudonym."""
    return getattr(actor, "email", None) or getattr(actor, "audit_name", None) or str(actor or "system")


def audit_record(actor: Any, action: str, obj: Any = None, details: dict | None = None) -> AuditRecord:
    """Append one record to the current tenant's audit trail (call inside the writing transaction).

    A person is recorded by pseudonym only (``user:<id>``); ``details`` must never carry an e-mail
    or a name (the record is chained and can't be edited or erased later)."""
    return AuditRecord.objects.create(
        actor=_actor_name(actor),
        action=action,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(getattr(obj, "pk", "") or "") if obj is not None else "",
        details=details or {},
    )
