"""Accounts services: sign-up all-or-nothing, invitations, roles, removal, login throttling."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts import services
from accounts.models import Invitation, User
from api.errors import ApplicationError
from compliance.models import AuditRecord
from tenants.models import ApiKey, Membership, Role, Tenant
from tests.conftest import PASSWORD, tenant_schema_exists

pytestmark = pytest.mark.django_db


def _code(exc_info) -> str:
    return exc_info.value.code


# --- sign-up -----------------------------------------------------------------------------------


def test_signup_creates_tenant_owner_and_schema_but_no_key():
    tenant, user = services.tenant_signup(
        email="Founder@Newco.test", password=PASSWORD, slug="newco", plan="pro", name="NewCo", full_name="Ada Lovelace"
    )
    assert user.email == "founder@newco.test" and user.check_password(PASSWORD)
    assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
    assert tenant.plan.code == "pro" and tenant.name == "NewCo"
    assert Membership.objects.get(tenant=tenant).role == Role.OWNER
    assert tenant_schema_exists(tenant.schema_name)
    assert not ApiKey.objects.filter(tenant=tenant).exists()  # the user creates keys and sees them once


@pytest.mark.parametrize(
    "password, code",
    [("short1", "weak_password"), ("password123", "weak_password"), ("12345678901234", "weak_password")],
)
def test_signup_rejects_weak_passwords_and_writes_nothing(password, code):
    with pytest.raises(ApplicationError) as exc:
        services.tenant_signup(email="weak@newco.test", password=password, slug="weakco")
    assert _code(exc) == code and exc.value.details["password"]
    assert not User.objects.filter(email="weak@newco.test").exists()
    assert not Tenant.objects.filter(slug="weakco").exists() and not tenant_schema_exists("t_weakco")


def test_signup_duplicate_email_and_slug(alpha):
    with pytest.raises(ApplicationError) as exc:
        services.tenant_signup(email="OWNER@alpha.test", password=PASSWORD, slug="fresh-one")
    assert _code(exc) == "email_taken" and exc.value.status == 409
    with pytest.raises(ApplicationError) as exc:
        services.tenant_signup(email="someone@new.test", password=PASSWORD, slug="alpha")
    assert _code(exc) == "slug_taken"
    assert not User.objects.filter(email="someone@new.test").exists()


def test_signup_failing_after_the_schema_clone_leaves_nothing_behind(monkeypatch):
    """Given the last step of provisioning fails, then no user, tenant, domain or schema remains."""
    import tenants.services as tenant_services

    def boom(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tenant_services, "audit_record", boom)
    with pytest.raises(RuntimeError):
        services.tenant_signup(email="half@newco.test", password=PASSWORD, slug="halfco")
    assert not User.objects.filter(email="half@newco.test").exists()
    assert not Tenant.objects.filter(slug="halfco").exists()
    assert not tenant_schema_exists("t_halfco")


# --- invitations -------------------------------------------------------------------------------


def _invite(fx, email="new.person@ext.test", role=Role.ANALYST, by=Role.ADMIN):
    return services.invitation_create(
        tenant=fx.tenant, email=email, role=role, invited_by=fx.users[by], base_url="http://testserver/"
    )


def test_invite_emails_a_link_and_keeps_only_the_token_hash(alpha, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = _invite(alpha)
    assert len(mail.outbox) == 1
    msg = mail.outbox[0]
    assert msg.to == ["new.person@ext.test"] and f"/accounts/invite/{token}/" in msg.body
    assert token not in invitation.token_hash and len(invitation.token_hash) == 64
    assert not Invitation.objects.filter(token_hash=token).exists()
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="member.invited", object_id=str(invitation.pk)).exists()


def test_new_user_accepts_invitation_and_gets_the_role(alpha):
    _, token = _invite(alpha, role=Role.ANALYST)
    membership = services.invitation_accept_new_user(token=token, password=PASSWORD, full_name="Grace Hopper")
    assert membership.role == Role.ANALYST and membership.tenant == alpha.tenant
    assert membership.user.email == "new.person@ext.test" and membership.user.check_password(PASSWORD)
    with pytest.raises(ApplicationError) as exc:  # a link works once
        services.invitation_accept_new_user(token=token, password=PASSWORD)
    assert _code(exc) == "invitation_used"


def test_existing_user_accepts_only_with_the_invited_email(alpha, beta):
    _, token = _invite(alpha, email="viewer@beta.test", role=Role.VIEWER)
    with pytest.raises(ApplicationError) as exc:
        services.invitation_accept(token=token, user=beta.users[Role.OWNER])
    assert _code(exc) == "invitation_email_mismatch"
    m = services.invitation_accept(token=token, user=beta.users[Role.VIEWER])
    assert m.tenant == alpha.tenant and m.role == Role.VIEWER


def test_expired_and_withdrawn_invitations_are_refused(alpha):
    inv, token = _invite(alpha)
    Invitation.objects.filter(pk=inv.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(ApplicationError) as exc:
        services.invitation_accept_new_user(token=token, password=PASSWORD)
    assert _code(exc) == "invitation_expired" and exc.value.status == 410
    assert not User.objects.filter(email=inv.email).exists()

    inv2, token2 = _invite(alpha, email="other@ext.test")
    services.invitation_revoke(tenant=alpha.tenant, invitation_id=inv2.pk, actor=alpha.users[Role.ADMIN])
    with pytest.raises(ApplicationError) as exc:
        services.invitation_for_token(token2)
    assert _code(exc) == "invitation_invalid"
    with pytest.raises(ApplicationError) as exc:
        services.invitation_for_token("not-a-token")
    assert _code(exc) == "invitation_invalid"


def test_reinviting_replaces_the_open_invitation(alpha):
    _, old = _invite(alpha, role=Role.VIEWER)
    _, new = _invite(alpha, role=Role.ANALYST)
    with pytest.raises(ApplicationError):
        services.invitation_for_token(old)
    assert services.invitation_for_token(new).role == Role.ANALYST
    assert (
        Invitation.objects.filter(tenant=alpha.tenant, email="new.person@ext.test", revoked_at__isnull=True).count()
        == 1
    )


@pytest.mark.parametrize(
    "by, role, email, code",
    [
        (Role.ANALYST, Role.VIEWER, "x@ext.test", "insufficient_role"),
        (Role.VIEWER, Role.VIEWER, "x@ext.test", "insufficient_role"),
        (Role.ADMIN, Role.OWNER, "x@ext.test", "owner_required"),
        (Role.ADMIN, Role.VIEWER, "viewer@alpha.test", "already_member"),
        (Role.ADMIN, "superhero", "x@ext.test", "invalid_role"),
        (Role.ADMIN, Role.VIEWER, "not-an-email", "invalid_email"),
    ],
)
def test_invite_rules(alpha, by, role, email, code):
    with pytest.raises(ApplicationError) as exc:
        _invite(alpha, email=email, role=role, by=by)
    assert _code(exc) == code
    assert not Invitation.objects.filter(tenant=alpha.tenant).exists()


def test_owner_may_invite_an_owner(alpha):
    inv, _ = _invite(alpha, role=Role.OWNER, by=Role.OWNER)
    assert inv.role == Role.OWNER


def test_invite_counts_against_the_plan_member_cap(beta):
    # beta is on the free plan (3 members) and already has 4 fixture members
    with pytest.raises(ApplicationError) as exc:
        _invite(beta)
    assert _code(exc) == "plan_limit_exceeded" and exc.value.details["metric"] == "members"


def test_a_non_member_cannot_invite(alpha, beta):
    with pytest.raises(ApplicationError) as exc:
        services.invitation_create(
            tenant=alpha.tenant, email="x@ext.test", role="viewer", invited_by=beta.users["owner"]
        )
    assert exc.value.status == 404


# --- roles and removal -------------------------------------------------------------------------


def _m(fx, role):
    return Membership.objects.get(tenant=fx.tenant, user=fx.users[role])


def test_admin_changes_a_role_and_it_is_audited(alpha):
    m = services.member_role_change(
        tenant=alpha.tenant, membership_id=_m(alpha, Role.VIEWER).pk, role=Role.ANALYST, actor=alpha.users[Role.ADMIN]
    )
    assert m.role == Role.ANALYST
    with schema_context(alpha.tenant.schema_name):
        rec = AuditRecord.objects.get(action="member.role_changed")
    assert rec.details == {"user": f"user:{alpha.users[Role.VIEWER].pk}", "from": "viewer", "to": "analyst"}


@pytest.mark.parametrize(
    "actor, target, role, code",
    [
        (Role.ADMIN, Role.VIEWER, Role.OWNER, "owner_required"),  # only owners grant owner
        (Role.ADMIN, Role.OWNER, Role.VIEWER, "owner_required"),  # ... or take it away
        (Role.ANALYST, Role.VIEWER, Role.ANALYST, "insufficient_role"),
        (Role.OWNER, Role.OWNER, Role.ADMIN, "last_owner"),
    ],
)
def test_role_change_rules(alpha, actor, target, role, code):
    with pytest.raises(ApplicationError) as exc:
        services.member_role_change(
            tenant=alpha.tenant, membership_id=_m(alpha, target).pk, role=role, actor=alpha.users[actor]
        )
    assert _code(exc) == code
    assert _m(alpha, target).role == target


def test_with_two_owners_one_may_step_down(alpha):
    services.member_role_change(
        tenant=alpha.tenant, membership_id=_m(alpha, Role.ADMIN).pk, role=Role.OWNER, actor=alpha.users[Role.OWNER]
    )
    m = services.member_role_change(
        tenant=alpha.tenant, membership_id=_m(alpha, Role.OWNER).pk, role=Role.ADMIN, actor=alpha.users[Role.OWNER]
    )
    assert m.role == Role.ADMIN


def test_role_change_in_another_tenant_is_not_found(alpha, beta):
    with pytest.raises(ApplicationError) as exc:
        services.member_role_change(
            tenant=alpha.tenant, membership_id=_m(beta, Role.VIEWER).pk, role=Role.ADMIN, actor=alpha.users[Role.OWNER]
        )
    assert exc.value.status == 404
    assert _m(beta, Role.VIEWER).role == Role.VIEWER


def test_member_leaves_and_admin_removes(alpha):
    services.member_remove(tenant=alpha.tenant, membership_id=_m(alpha, Role.VIEWER).pk, actor=alpha.users[Role.VIEWER])
    services.member_remove(tenant=alpha.tenant, membership_id=_m(alpha, Role.ANALYST).pk, actor=alpha.users[Role.ADMIN])
    assert set(Membership.objects.filter(tenant=alpha.tenant).values_list("role", flat=True)) == {"owner", "admin"}
    with schema_context(alpha.tenant.schema_name):
        assert set(AuditRecord.objects.values_list("action", flat=True)) >= {"member.left", "member.removed"}


@pytest.mark.parametrize(
    "actor, target, code",
    [
        (Role.OWNER, Role.OWNER, "last_owner"),  # the last owner cannot leave
        (Role.ADMIN, Role.OWNER, "owner_required"),
        (Role.ANALYST, Role.VIEWER, "insufficient_role"),
        (Role.VIEWER, Role.ANALYST, "insufficient_role"),
    ],
)
def test_removal_rules(alpha, actor, target, code):
    with pytest.raises(ApplicationError) as exc:
        services.member_remove(tenant=alpha.tenant, membership_id=_m(alpha, target).pk, actor=alpha.users[actor])
    assert _code(exc) == code
    assert Membership.objects.filter(tenant=alpha.tenant, user=alpha.users[target]).exists()
