"""Writes for people and their access: sign-up, login, invitations, roles, removal.

Every rule about who may do what to whom lives here, not in views, so the dashboard, the REST API
and the admin enforce the same thing:

* admins and owners invite, change roles and remove members; only owners grant, change or
  remove the owner role;
* anyone may leave a tenant, except its last owner (a tenant is never left without one);
* every change is audited in the tenant's trail, inside the writing transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django_tenants.utils import schema_context

from api.errors import ApplicationError, NotFound
from compliance.services import audit_record, pseudonym
from tenants import limits
from tenants.models import ROLE_RANK, Membership, Role, Scope, Tenant
from tenants.services import tenant_provision

from . import lockout
from .models import Invitation, User

INVITATION_TTL = timedelta(days=7)


# --- sign-up -----------------------------------------------------------------------------------


def password_check(password: str, user: User | None = None) -> None:
    """settings.AUTH_PASSWORD_VALIDATORS: at least 12 characters, not a common password, not all
    digits, not like the person's e-mail or name. Every message says what to change."""
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ApplicationError(
            "weak_password", " ".join(exc.messages), {"password": list(exc.messages)}, status=400
        ) from exc


def _email_normalise(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ApplicationError("invalid_email", "Enter a valid e-mail address.", {"email": email}) from exc
    return email


def tenant_signup(
    *, email: str, password: str, slug: str, plan: str = "free", name: str = "", full_name: str = ""
) -> tuple[Tenant, User]:
    """A newcomer creates a tenant and becomes its owner. All or nothing: no user, tenant or schema
    survives a failure (the schema clone is DDL inside the same PostgreSQL transaction)."""
    email = _email_normalise(email)
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError(
            "email_taken",
            "An account with this e-mail already exists: log in, then create the tenant from the tenant menu.",
            {"email": email},
            status=409,
        )
    first, _, last = (full_name or "").strip().partition(" ")
    password_check(password, User(email=email, first_name=first, last_name=last))
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, first_name=first, last_name=last)
            tenant, _ = tenant_provision(slug=slug, plan=plan, name=name, owner_email=email, create_key=False)
    except IntegrityError as exc:  # a concurrent sign-up won the race for the slug or e-mail
        raise ApplicationError(
            "slug_taken", "That tenant name or e-mail was just taken; pick another.", {"slug": slug}, status=409
        ) from exc
    return tenant, user


def tenant_create_for_user(*, user: User, slug: str, plan: str = "free", name: str = "") -> Tenant:
    """A logged-in person opens another tenant and owns it."""
    tenant, _ = tenant_provision(slug=slug, plan=plan, name=name, owner_email=user.email, create_key=False)
    return tenant


# --- login (failures and lockout: accounts/lockout.py) -----------------------------------------


def login_success_record(*, user: User, email: str, tenant: Tenant | None = None) -> None:
    """Clear the e-mail's failure count (not the address's: one success must not unlock a spray)."""
    lockout.success_record(username=email)
    if tenant is not None:
        with schema_context(tenant.schema_name):
            audit_record(user, "user.logged_in", user, {})


# --- invitations -------------------------------------------------------------------------------


def _role_of(*, tenant: Tenant, user) -> str | None:
    """A person's membership role; an API key of the tenant acts as admin with the ``admin``
    scope (never as owner), else as viewer."""
    key = getattr(user, "key", None)
    if key is not None and getattr(key, "tenant_id", None) is not None:
        if key.tenant_id != tenant.pk:
            return None
        return Role.ADMIN if Scope.ADMIN in key.scopes else Role.VIEWER
    if user is None or getattr(user, "pk", None) is None:
        return None
    return Membership.objects.filter(tenant=tenant, user_id=user.pk).values_list("role", flat=True).first()


def _require_role(*, tenant: Tenant, actor, at_least: str) -> str:
    role = _role_of(tenant=tenant, user=actor)
    if role is None:
        raise NotFound("tenant")
    if ROLE_RANK[role] < ROLE_RANK[at_least]:
        raise ApplicationError(
            "insufficient_role",
            f"Your role '{role}' cannot do this; it needs '{at_least}' or higher.",
            {"required_role": str(at_least), "role": role},
            status=403,
        )
    return role


def _role_valid(role: str) -> str:
    if role not in Role.values:
        raise ApplicationError("invalid_role", f"Role must be one of {Role.values}.", {"role": role})
    return role


def _owner_only(actor_role: str, what: str) -> None:
    if actor_role != Role.OWNER:
        raise ApplicationError(
            "owner_required", f"Only an owner can {what}.", {"required_role": "owner", "role": actor_role}, status=403
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(
    *, tenant: Tenant, email: str, role: str, invited_by, base_url: str = ""
) -> tuple[Invitation, str]:
    """Invite ``email`` with ``role``; replaces an open invitation to the same address.

    Returns (invitation, raw token); the token is e-mailed and shown once, only its hash is kept."""
    actor_role = _require_role(tenant=tenant, actor=invited_by, at_least=Role.ADMIN)
    email = _email_normalise(email)
    role = _role_valid(role)
    if role == Role.OWNER:
        _owner_only(actor_role, "invite another owner")
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise ApplicationError(
            "already_member", f"{email} is already a member; change their role instead.", {"email": email}, status=409
        )
    open_invites = Invitation.objects.filter(tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True)
    others = open_invites.exclude(email=email).filter(expires_at__gt=timezone.now()).count()
    limits.count_check(tenant, "members", Membership.objects.filter(tenant=tenant).count() + others)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        open_invites.filter(email=email).update(revoked_at=now)
        invitation = Invitation.objects.create(
            tenant=tenant,
            email=email,
            role=role,
            token_hash=_token_hash(token),
            invited_by=invited_by if getattr(invited_by, "pk", None) else None,
            expires_at=now + INVITATION_TTL,
        )
        with schema_context(tenant.schema_name):
            # the invitation's id (object_id) names the address; the chained record never holds it
            audit_record(invited_by, "member.invited", invitation, {"role": role})
        link = f"{base_url.rstrip('/')}/accounts/invite/{token}/"
        context = {
            "tenant": tenant,
            "inviter": getattr(invited_by, "email", None) or f"An admin of {tenant.name}",
            "role": role,
            "link": link,
            "expires_at": invitation.expires_at,
        }
        transaction.on_commit(
            lambda: send_mail(
                f"You're invited to {tenant.name} on AI Trading Intelligence",
                render_to_string("accounts/email/invitation.txt", context),
                settings.DEFAULT_FROM_EMAIL,
                [email],
                html_message=render_to_string("accounts/email/invitation.html", context),
            )
        )
    return invitation, token


def invitation_for_token(token: str) -> Invitation:
    """The open, unexpired invitation behind a link, or an error that says what to do."""
    invitation = (
        Invitation.objects.select_related("tenant", "invited_by").filter(token_hash=_token_hash(token or "")).first()
    )
    if invitation is None or invitation.revoked_at is not None:
        raise ApplicationError(
            "invitation_invalid",
            "This invitation link is not valid (it may have been replaced or withdrawn). Ask an admin for a new one.",
            status=404,
        )
    if invitation.accepted_at is not None:
        raise ApplicationError(
            "invitation_used", "This invitation was already accepted. Log in to open the tenant.", status=410
        )
    if invitation.is_expired():
        raise ApplicationError(
            "invitation_expired",
            f"This invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. "
            f"Ask an admin of {invitation.tenant.name} to send a new one.",
            {"expired_at": invitation.expires_at.isoformat()},
            status=410,
        )
    return invitation


def invitation_accept(*, token: str, user: User) -> Membership:
    """A logged-in person accepts an invitation addressed to their e-mail."""
    with transaction.atomic():
        # lock first, then check: two concurrent accepts of one link can't both pass
        list(Invitation.objects.select_for_update().filter(token_hash=_token_hash(token or "")).values_list("pk"))
        invitation = invitation_for_token(token)
        if invitation.email.lower() != user.email.lower():
            raise ApplicationError(
                "invitation_email_mismatch",
                f"This invitation is for {invitation.email}; log out and open the link again to accept it as them.",
                status=403,
            )
        membership, created = Membership.objects.get_or_create(
            tenant=invitation.tenant, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        with schema_context(invitation.tenant.schema_name):
            audit_record(user, "member.joined", membership, {"role": membership.role, "invitation": invitation.pk})
    return membership


def invitation_accept_new_user(*, token: str, password: str, full_name: str = "") -> Membership:
    """Someone without an account accepts: the account is created with the invited e-mail."""
    invitation = invitation_for_token(token)
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise ApplicationError(
            "email_taken", f"{invitation.email} already has an account: log in to accept.", status=409
        )
    first, _, last = (full_name or "").strip().partition(" ")
    password_check(password, User(email=invitation.email, first_name=first, last_name=last))
    with transaction.atomic():
        user = get_user_model().objects.create_user(
            email=invitation.email, password=password, first_name=first, last_name=last
        )
        return invitation_accept(token=token, user=user)


def invitation_revoke(*, tenant: Tenant, invitation_id: int, actor: User) -> Invitation:
    _require_role(tenant=tenant, actor=actor, at_least=Role.ADMIN)
    invitation = Invitation.objects.filter(tenant=tenant, pk=invitation_id).first()
    if invitation is None:
        raise NotFound("invitation")
    if invitation.is_open:
        with transaction.atomic():
            invitation.revoked_at = timezone.now()
            invitation.save(update_fields=["revoked_at"])
            with schema_context(tenant.schema_name):
                audit_record(actor, "member.invitation_revoked", invitation, {"role": invitation.role})
    return invitation


# --- roles and removal -------------------------------------------------------------------------


def _membership_locked(*, tenant: Tenant, membership_id: int) -> Membership:
    """Lock the tenant's owner rows and the target, so two concurrent demotions can't both pass
    the last-owner check."""
    list(Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER).values_list("pk", flat=True))
    membership = (
        Membership.objects.select_for_update().select_related("user").filter(tenant=tenant, pk=membership_id).first()
    )
    if membership is None:
        raise NotFound("member")
    return membership


def _last_owner_guard(*, tenant: Tenant, membership: Membership, what: str) -> None:
    if membership.role == Role.OWNER and Membership.objects.filter(tenant=tenant, role=Role.OWNER).count() <= 1:
        raise ApplicationError(
            "last_owner",
            f"A tenant always keeps an owner, so its last owner can't {what}. Make another member an owner first.",
            {"member": membership.pk},
            status=409,
        )


def member_role_change(*, tenant: Tenant, membership_id: int, role: str, actor: User) -> Membership:
    role = _role_valid(role)
    with transaction.atomic():
        actor_role = _require_role(tenant=tenant, actor=actor, at_least=Role.ADMIN)
        membership = _membership_locked(tenant=tenant, membership_id=membership_id)
        if membership.role == role:
            return membership
        if Role.OWNER in (role, membership.role):
            _owner_only(actor_role, "grant or take away the owner role")
            _last_owner_guard(tenant=tenant, membership=membership, what="be demoted")
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        with schema_context(tenant.schema_name):
            audit_record(
                actor, "member.role_changed", membership, {"user": pseudonym(membership.user), "from": old, "to": role}
            )
    return membership


def member_remove(*, tenant: Tenant, membership_id: int, actor: User) -> None:
    """Remove a member; a member removing themself is leaving."""
    with transaction.atomic():
        membership = _membership_locked(tenant=tenant, membership_id=membership_id)
        leaving = membership.user_id == actor.pk
        if not leaving:
            actor_role = _require_role(tenant=tenant, actor=actor, at_least=Role.ADMIN)
            if membership.role == Role.OWNER:
                _owner_only(actor_role, "remove an owner")
        elif _role_of(tenant=tenant, user=actor) is None:
            raise NotFound("member")
        _last_owner_guard(tenant=tenant, membership=membership, what="leave" if leaving else "be removed")
        who, role = pseudonym(membership.user), membership.role
        membership.delete()
        with schema_context(tenant.schema_name):
            audit_record(actor, "member.left" if leaving else "member.removed", None, {"user": who, "role": role})


def user_profile_update(*, user: User, full_name: str) -> User:
    first, _, last = (full_name or "").strip().partition(" ")
    if len(first) > 150 or len(last) > 150:
        raise ApplicationError(
            "invalid_input", "The name is too long (150 characters per part).", {"full_name": full_name}
        )
    user.first_name, user.last_name = first, last
    user.save(update_fields=["first_name", "last_name"])
    return user
