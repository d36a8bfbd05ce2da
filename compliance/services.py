from __future__ import annotations

from typing import Any

from .models import AuditRecord


def _actor_name(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    name = getattr(actor, "audit_name", None)
    if name:
        return name
    if getattr(actor, "pk", None) is not None:
        return f"user:{actor.pk}:{getattr(actor, 'email', '')}"
    return str(actor)


def actor_display(actor: Any) -> str:
    """How an actor is shown in ``created_by`` / history fields: a person's e-mail, an API key's
    audit name, or the string given ("system" for none)."""
    return getattr(actor, "email", None) or getattr(actor, "audit_name", None) or str(actor or "system")


def audit_record(actor: Any, action: str, obj: Any = None, details: dict | None = None) -> AuditRecord:
    """Append one record to the current tenant's audit trail (call inside the writing transaction)."""
    return AuditRecord.objects.create(
        actor=_actor_name(actor),
        action=action,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(getattr(obj, "pk", "") or "") if obj is not None else "",
        details=details or {},
    )
