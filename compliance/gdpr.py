"""GDPR: a person's data exported (Art. 15/20) or erased (Art. 17) across the public schema and
every tenant schema.

The chained audit trail names people only by pseudonym (``user:<id>``, see
``compliance.services.pseudonym``), so erasure never touches it: the id means nothing once the
``accounts.User`` row is scrubbed, and ``verify_audit`` still passes. Editable columns that show
who did something (``created_by``-style, written with ``actor_display``) hold an e-mail; erasure
replaces it with the pseudonym. Those columns are found by name (:data:`ACTOR_FIELDS`), so a new
model with a ``created_by`` column is covered without an edit here."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.db import connection, models, transaction
from django.db.models import Q, Value
from django.db.models.functions import Replace
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from api.errors import ApplicationError

from .models import AuditRecord
from .services import audit_record, pseudonym

# columns that name who did something: a person's e-mail (actor_display), an API key, "system"
ACTOR_FIELDS = ("created_by", "actor", "engaged_by", "lifted_by", "acknowledged_by")
# ``*_by`` columns that never name a person (checked by a test, so a new one is a conscious choice)
NOT_PEOPLE = {"intelligence.Decision.vetoed_by", "review.ReviewItem.vetoed_by"}  # the vetoing agent or control


def erased_email(user) -> str:
    return f"erased-{user.pk}@invalid"


def _tenant_app(model) -> bool:
    name = model._meta.app_config.name
    return name in settings.TENANT_APPS and name not in settings.SHARED_APPS


def actor_columns() -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """(tenant-schema columns, public-schema columns) that name an actor, as (model, field name).
    The audit trail is excluded: it is chained, and holds pseudonyms only."""
    tenant_cols, public_cols = [], []
    for model in apps.get_models():
        if model is AuditRecord or model._meta.proxy or not model._meta.managed:
            continue
        for f in model._meta.concrete_fields:
            if f.name in ACTOR_FIELDS and isinstance(f, models.CharField):
                (tenant_cols if _tenant_app(model) else public_cols).append((model, f.name))
    return tenant_cols, public_cols


def _label(model, field: str) -> str:
    return f"{model._meta.app_label}.{model.__name__}.{field}"


def _tenants():
    from tenants.models import Tenant

    return list(Tenant.objects.exclude(status=Tenant.Status.TEMPLATE).order_by("slug"))


def _names_them(field: str, user) -> Q:
    return Q(**{f"{field}__iexact": user.email}) | Q(**{field: pseudonym(user)})


def _user_sessions(user) -> list[str]:
    """Keys of the person's unexpired sessions (database sessions store the user id only encoded)."""
    keys, uid = [], str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(chunk_size=500):
        if session.get_decoded().get("_auth_user_id") == uid:
            keys.append(session.session_key)
    return keys


def _row(obj, field: str) -> dict:
    created = getattr(obj, "created_at", None) or getattr(obj, "engaged_at", None) or getattr(obj, "at", None)
    return {
        "column": _label(type(obj), field),
        "id": str(obj.pk),
        "created_at": created.isoformat() if created else None,
        "summary": str(obj)[:200],
    }


def _audit_json(r: AuditRecord) -> dict:
    return {
        "id": r.id,
        "created_at": r.created_at.isoformat(),
        "actor": r.actor,
        "action": r.action,
        "object_type": r.object_type,
        "object_id": r.object_id,
        "details": r.details,
    }


def _their_records(user):
    p = pseudonym(user)
    # "user:<id>:<email>" was written before records named people by pseudonym only
    return AuditRecord.objects.filter(Q(actor=p) | Q(actor__startswith=p + ":")).order_by("id")


def gdpr_export(*, user, actor) -> dict:
    """Everything the platform holds about ``user``, as JSON-ready data; audited ``gdpr.exported``
    in every tenant it covers (membership, audit records or rows naming them)."""
    from accounts.models import Invitation
    from tenants.models import ApiKey, Membership

    p = pseudonym(user)
    member_of = {
        m.tenant_id: m for m in Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")
    }
    tenant_cols, public_cols = actor_columns()
    export: dict[str, Any] = {
        "generated_at": timezone.now().isoformat(),
        "subject": p,
        "profile": {
            "id": user.pk,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "is_active": user.is_active,
            "is_staff": user.is_staff,
            "date_joined": user.date_joined.isoformat(),
            "last_login": user.last_login.isoformat() if user.last_login else None,
        },
        "memberships": [
            {"tenant": m.tenant.slug, "tenant_name": m.tenant.name, "role": m.role, "since": m.created_at.isoformat()}
            for m in member_of.values()
        ],
        "api_keys": [
            {
                "tenant": k.tenant.slug,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": list(k.scopes),
                "created_at": k.created_at.isoformat(),
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }  # fmt: skip
            for k in ApiKey.objects.filter(created_by=user).select_related("tenant").order_by("created_at")
        ],
        "invitations_sent": [],
        "invitations_received": [],
        "sessions": {"active": len(_user_sessions(user))},
        "platform_rows": [],
        "tenants": [],
    }
    for key, qs in (
        ("invitations_sent", Invitation.objects.filter(invited_by=user)),
        ("invitations_received", Invitation.objects.filter(email__iexact=user.email)),
    ):
        export[key] = [
            {
                "tenant": i.tenant.slug,
                "email": i.email,
                "role": i.role,
                "created_at": i.created_at.isoformat(),
                "expires_at": i.expires_at.isoformat(),
                "accepted_at": i.accepted_at.isoformat() if i.accepted_at else None,
                "revoked_at": i.revoked_at.isoformat() if i.revoked_at else None,
            }  # fmt: skip
            for i in qs.select_related("tenant").order_by("created_at")
        ]
    for model, field in public_cols:
        export["platform_rows"] += [_row(o, field) for o in model.objects.filter(_names_them(field, user))]
    concerned = []
    for tenant in _tenants():
        with schema_context(tenant.schema_name):
            records = [_audit_json(r) for r in _their_records(user).iterator(chunk_size=1000)]
            rows = [_row(o, f) for model, f in tenant_cols for o in model.objects.filter(_names_them(f, user))]
        if tenant.pk in member_of or records or rows:
            concerned.append(tenant)
            export["tenants"].append({"tenant": tenant.slug, "audit_records": records, "rows": rows})
    with transaction.atomic():
        for tenant in concerned:
            with schema_context(tenant.schema_name):
                audit_record(actor, "gdpr.exported", user, {"subject": p})
    return export


def gdpr_erase(*, user, actor) -> dict:
    """Scrub a person: the User row (e-mail ``erased-<id>@invalid``, names blank, unusable
    password, inactive, no staff rights), their sessions and the API keys they created revoked,
    their e-mail replaced by the pseudonym in every editable column that names them (every
    schema), invitations addressed to them rewritten (open ones revoked). All in one transaction;
    audited ``gdpr.erased`` (pseudonym only) in every tenant concerned. Idempotent."""
    from accounts.models import Invitation
    from tenants.models import ApiKey, Membership
    from tenants.services import api_key_revoke

    if getattr(actor, "pk", None) is not None and actor.pk == user.pk:
        raise ApplicationError(
            "cannot_erase_self", "You can't erase your own account; ask another staff member.", status=409
        )
    p, email, now = pseudonym(user), user.email, timezone.now()
    tenant_cols, public_cols = actor_columns()
    counts: dict[str, int] = {}

    def count(label: str, n: int) -> None:
        if n:
            counts[label] = counts.get(label, 0) + n

    # tenants concerned: hers, and those that invited her (their invitation rows are rewritten)
    concerned = set(Membership.objects.filter(user=user).values_list("tenant_id", flat=True))
    concerned |= set(Invitation.objects.filter(email__iexact=email).values_list("tenant_id", flat=True))
    with transaction.atomic():
        with schema_context(get_public_schema_name()):
            for key in ApiKey.objects.filter(created_by=user, revoked_at__isnull=True).select_related("tenant"):
                with schema_context(key.tenant.schema_name):  # audited in the key's tenant
                    api_key_revoke(tenant=key.tenant, key_id=key.pk, actor=actor)
                count("api_keys_revoked", 1)
            sessions = _user_sessions(user)
            count("sessions_revoked", Session.objects.filter(session_key__in=sessions).delete()[0])
            for model, field in public_cols:
                count(_label(model, field), model.objects.filter(**{f"{field}__iexact": email}).update(**{field: p}))
            received = Invitation.objects.filter(email__iexact=email)
            received.filter(accepted_at__isnull=True, revoked_at__isnull=True).update(revoked_at=now)
            count("invitations_received", received.update(email=erased_email(user)))
            for column in ("object_repr", "change_message"):  # the admin's history of edits to them
                count(
                    "admin_log_entries",
                    LogEntry.objects.filter(**{f"{column}__icontains": email}).update(
                        **{column: Replace(column, Value(email), Value(p))}
                    ),
                )
        legacy = 0
        for tenant in _tenants():
            touched = 0
            with schema_context(tenant.schema_name):
                for model, field in tenant_cols:
                    n = model.objects.filter(**{f"{field}__iexact": email}).update(**{field: p})
                    count(_label(model, field), n)
                    touched += n
                forgot = _notifications_forget(user, email, count)
                legacy += _chained_mentions(user)
                if tenant.pk in concerned or touched or forgot or _their_records(user).exists():
                    audit_record(actor, "gdpr.erased", user, {"subject": p, "rows_pseudonymised": touched})
                    count("tenants", 1)
        user.email = erased_email(user)
        user.first_name = user.last_name = ""
        user.is_active = user.is_staff = user.is_superuser = False
        user.set_unusable_password()
        user.save(update_fields=["email", "first_name", "last_name", "is_active", "is_staff", "is_superuser",
                                 "password"])  # fmt: skip
    # records written before pseudonyms ("user:<id>:<email>") are chained and can't be edited
    return {"subject": p, "counts": counts, "legacy_chained_records_naming_them": legacy}


def _notifications_forget(user, email: str, count) -> int:
    """Nothing more goes to them: their subscriptions (and any to their address) deleted, their
    in-app notifications deleted, Telegram chats linked to them unlinked, and the delivery log's
    messages to their address addressed to the pseudonym."""
    from notifications.models import Delivery, InAppNotification, Subscription, TelegramChat

    logged = Delivery.objects.filter(target__iexact=f"email:{email}").update(target=f"email:{pseudonym(user)}")
    count("notification_deliveries", logged)
    subs = Subscription.objects.filter(Q(user_id=user.pk) | Q(email__iexact=email)).delete()[0]
    inapp = InAppNotification.objects.filter(user_id=user.pk).delete()[0]
    chats = TelegramChat.objects.filter(user_id=user.pk).update(user_id=None)
    count("notification_subscriptions", subs)
    count("inapp_notifications", inapp)
    count("telegram_chats_unlinked", chats)
    return logged + subs + inapp + chats


def _chained_mentions(user) -> int:
    """Audit records (current schema) that still carry the e-mail, from before pseudonyms."""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*) FROM {AuditRecord._meta.db_table} "
            "WHERE strpos(lower(actor), %s) > 0 OR strpos(lower(details::text), %s) > 0",
            [user.email.lower()] * 2,
        )
        return cur.fetchone()[0]
