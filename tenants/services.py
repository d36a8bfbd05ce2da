"""Writes for tenants, memberships and API keys."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from api.errors import ApplicationError, NotFound
from compliance.services import audit_record

from . import limits, resolution
from .db import clone, roles
from .keys import key_generate
from .models import ApiKey, Domain, Membership, Plan, Role, Scope, Tenant

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
RESERVED_SLUGS = {"www", "api", "admin", "public", "static", "media", "app", "template", "tenant", "ws", "health"}
logger = logging.getLogger(__name__)
ALL_SCOPES = [Scope.READ.value, Scope.TRADE.value, Scope.ADMIN.value]


def _schema_for(slug: str) -> str:
    return "t_" + slug.replace("-", "_")


def tenant_template_ensure() -> Tenant:
    """The migrated schema new tenants are cloned from; a Tenant row so migrate_schemas keeps it current."""
    template = Tenant.objects.filter(schema_name=settings.TENANT_TEMPLATE_SCHEMA).first()
    if template is not None and schema_exists(template.schema_name):
        return template
    if roles.owner_connection_separate():
        raise ImproperlyConfigured(
            f"The tenant template schema '{settings.TENANT_TEMPLATE_SCHEMA}' is missing and the app role "
            "cannot create it: run `manage.py ensure_tenant_template` (part of `make migrate`)."
        )
    with transaction.atomic():
        if template is None:
            template = Tenant.objects.create(
                schema_name=settings.TENANT_TEMPLATE_SCHEMA,
                slug="tenant-template",
                name="(template)",
                plan=Plan.objects.get(code="free"),
                status=Tenant.Status.TEMPLATE,
            )
        with roles.owner_atomic() as alias:  # migrations: DDL, as the owner
            template.create_schema(check_if_exists=True, verbosity=0)
            with connections[alias].cursor() as cur:
                roles.schema_grant_if_enabled(cur, template.schema_name)
    return template


def _schema_clone(*, alias: str, source: str, target: str) -> None:
    """The template cloned on the owner's connection in one statement batch (tenants/db/clone.py:
    django-tenants' clone_schema slows down with every tenant), then the app role's grants on the
    new schema: the audit tables append-only for it."""
    clone.schema_clone(alias=alias, source=source, target=target)
    with connections[alias].cursor() as cur:
        roles.schema_grant_if_enabled(cur, target)


def _schema_orphan_drop(*, alias: str, schema: str) -> None:
    """Drop ``schema`` if no committed tenant has it. Safe only after inserting this tenant's row in
    the caller's open transaction: the unique schema_name makes any other attempt at the same name
    wait for that transaction, so nobody else is cloning it. A lock timeout turns a wait on the
    caller's own locks (a future foreign key into a public table) into an error, not a hang."""
    with connections[alias].cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = '10s'")
        cur.execute(f"SELECT 1 FROM public.{Tenant._meta.db_table} WHERE schema_name = %s", [schema])
        if cur.fetchone() is None:
            cur.execute(f"DROP SCHEMA IF EXISTS {roles.quote(schema)} CASCADE")


def _schema_drop_after_failure(schema: str) -> None:
    """Undo a clone the owner committed, once this transaction is over. Inside a caller's transaction
    (sign-up) this one still holds locks on the new schema (its sequences), so the schema is left to
    the next attempt at the same slug (_schema_orphan_drop); nothing refers to it meanwhile."""
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        logger.warning("tenant schema %s left after a failed provisioning; reclaimed on the next attempt", schema)
        return
    try:
        with roles.owner_atomic() as alias, connections[alias].cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '5s'")
            cur.execute(f"DROP SCHEMA IF EXISTS {roles.quote(schema)} CASCADE")
    except DatabaseError:
        logger.warning("tenant schema %s left after a failed provisioning; reclaimed on the next attempt", schema)


def tenant_provision(
    *,
    slug: str,
    plan: str = "free",
    name: str = "",
    owner_email: str | None = None,
    owner_password: str | None = None,
    create_key: bool = True,
) -> tuple[Tenant, str | None]:
    """Create a tenant, its schema (cloned from the template), domain, owner and an all-scopes key.

    Everything is validated first and written in one transaction: a failure leaves no tenant,
    domain, user or schema behind. Returns (tenant, raw_api_key) — the key is shown only once;
    ``create_key=False`` (dashboard sign-up) creates none and returns (tenant, None).
    """
    slug = (slug or "").strip().lower()
    if not SLUG_RE.match(slug) or slug in RESERVED_SLUGS:
        raise ApplicationError(
            "invalid_slug",
            "Use 3-40 lowercase letters, digits or hyphens, starting with a letter (reserved words are not allowed).",
            {"slug": slug},
        )
    plan_obj = Plan.objects.filter(code=plan).first()
    if plan_obj is None:
        raise ApplicationError(
            "unknown_plan", f"Unknown plan '{plan}'.", {"choices": list(Plan.objects.values_list("code", flat=True))}
        )
    schema = _schema_for(slug)
    # a schema with no tenant is, with the owner on its own connection, the leftover of an attempt
    # that failed after its clone: reclaimed below (_schema_orphan_drop)
    separate = roles.owner_connection_separate()
    if Tenant.objects.filter(slug=slug).exists() or (not separate and schema_exists(schema)):
        raise ApplicationError(
            "slug_taken", f"The tenant '{slug}' already exists; pick another name.", {"slug": slug}, status=409
        )
    User = get_user_model()
    # from the public schema whatever the caller's tenant (a logged-in person opening another
    # tenant from the dashboard); the caller's schema is restored afterwards
    cloned = False
    # from the public schema whatever the caller's tenant (a logged-in person opening another
    # tenant from the dashboard); the caller's schema is restored afterwards
    with schema_context(get_public_schema_name()):
        template = tenant_template_ensure()
        try:
            with transaction.atomic():
                tenant = Tenant.objects.create(schema_name=schema, slug=slug, name=name or slug, plan=plan_obj)
                Domain.objects.create(domain=f"{slug}.{settings.TENANT_BASE_DOMAIN}", tenant=tenant, is_primary=True)
                owner = None
                if owner_email:
                    owner = User.objects.filter(email__iexact=owner_email).first()
                    if owner is None:
                        owner = User.objects.create_user(email=owner_email, password=owner_password)
                        if owner_password is None:
                            owner.set_unusable_password()
                            owner.save(update_fields=["password"])
                    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
                # DDL as the owner: in this transaction (rolled back with it), or, when the app role
                # logs in by itself, committed on the owner's own connection (undone below on failure)
                with roles.owner_atomic() as alias:
                    if separate:
                        _schema_orphan_drop(alias=alias, schema=schema)
                    _schema_clone(alias=alias, source=template.schema_name, target=schema)
                cloned = separate
                with schema_context(schema):
                    audit_record(owner, "tenant.provisioned", tenant, {"plan": plan_obj.code, "slug": slug})
                raw = None
                if create_key:
                    _, raw = _api_key_insert(
                        tenant=tenant, name="provisioning key", scopes=ALL_SCOPES, created_by=owner
                    )
        except BaseException:
            if cloned:
                _schema_drop_after_failure(schema)
            raise
    return tenant, raw


def _api_key_insert(*, tenant: Tenant, name: str, scopes: list[str], created_by) -> tuple[ApiKey, str]:
    raw, prefix, hashed = key_generate()
    key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=prefix, hashed_key=hashed, scopes=sorted(set(scopes)), created_by=created_by
    )
    with schema_context(tenant.schema_name):
        audit_record(created_by, "api_key.created", key, {"name": name, "scopes": key.scopes, "prefix": prefix})
    return key, raw


def api_key_create(*, tenant: Tenant, name: str, scopes: list[str], created_by) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise ApplicationError("invalid_input", "Give the key a name.", {"name": ["This field is required."]})
    bad = sorted(set(scopes) - set(ALL_SCOPES))
    if not scopes or bad:
        raise ApplicationError(
            "invalid_scopes", f"Scopes must be a non-empty subset of {ALL_SCOPES}.", {"invalid": bad}
        )
    limits.count_check(tenant, "api_keys", ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).count())
    user = created_by if getattr(created_by, "pk", None) else None
    with transaction.atomic():
        key, raw = _api_key_insert(tenant=tenant, name=name, scopes=scopes, created_by=user)
        if user is None and created_by is not None:
            audit_record(created_by, "api_key.created_by_key", key, {})
    return key, raw


def api_key_revoke(*, tenant: Tenant, key_id: int, actor) -> ApiKey:
    key = ApiKey.objects.filter(tenant=tenant, pk=key_id).first()
    if key is None:
        raise NotFound("API key")
    if key.revoked_at is None:
        with transaction.atomic():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(actor, "api_key.revoked", key, {"prefix": key.prefix})
        transaction.on_commit(resolution.invalidate)
    return key


_STATUS_ACTIONS = {Tenant.Status.SUSPENDED: "tenant.suspended", Tenant.Status.ACTIVE: "tenant.reactivated"}


def tenant_status_audited(*, tenant: Tenant, actor) -> None:
    """Record the tenant's current status in its own audit trail (in the tenant's schema)."""
    with schema_context(tenant.schema_name):
        audit_record(
            actor, _STATUS_ACTIONS.get(tenant.status, "tenant.status_changed"), tenant, {"status": tenant.status}
        )
    transaction.on_commit(resolution.invalidate)  # cached resolution only serves active tenants


def tenant_status_set(*, tenant: Tenant, status: str, actor) -> bool:
    """Suspend or reactivate a tenant (never the template); a suspended tenant's keys, tokens and
    sessions stop resolving at once. Returns whether anything changed."""
    if status not in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED):
        raise ApplicationError("invalid_status", "Status must be 'active' or 'suspended'.", {"status": status})
    if tenant.status in (Tenant.Status.TEMPLATE, status):
        return False
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(status=status)
        tenant.status = status
        tenant_status_audited(tenant=tenant, actor=actor)
    return True


def tenant_plan_change(*, tenant: Tenant, plan: str, actor, reason: str = "") -> bool:
    """Move a tenant to another plan; its limits apply to the next request in every process (the
    resolution cache is dropped at commit). Audited in the tenant's trail. Whether anything changed."""
    new = Plan.objects.filter(code=plan).first()
    if new is None:
        raise ApplicationError("unknown_plan", f"There is no plan '{plan}'.", {"plan": plan})
    if tenant.plan_id == new.pk:
        return False
    old = tenant.plan.code
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(plan=new)
        tenant.plan = new
        with schema_context(tenant.schema_name):
            audit_record(actor, "tenant.plan_changed", tenant, {"from": old, "to": new.code, "reason": reason})
        transaction.on_commit(resolution.invalidate)
    return True
