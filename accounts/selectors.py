"""Reads for members and invitations of a tenant."""

from django.db.models import QuerySet

from api.errors import NotFound
from tenants.models import Membership, Tenant

from .models import Invitation


def member_get(*, tenant: Tenant, member_id: int) -> Membership:
    membership = Membership.objects.select_related("user").filter(tenant=tenant, pk=member_id).first()
    if membership is None:
        raise NotFound("member")
    return membership


def invitation_list(*, tenant: Tenant, open_only: bool = True) -> QuerySet[Invitation]:
    qs = Invitation.objects.filter(tenant=tenant).select_related("invited_by")
    if open_only:
        qs = qs.filter(accepted_at__isnull=True, revoked_at__isnull=True)
    return qs
