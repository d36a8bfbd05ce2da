from django.db.models import QuerySet

from api.errors import NotFound

from .models import ApiKey, Membership, Tenant


def api_key_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).select_related("created_by")


def api_key_get(*, tenant: Tenant, key_id: int) -> ApiKey:
    key = api_key_list(tenant=tenant).filter(pk=key_id).first()
    if key is None:
        raise NotFound("API key")
    return key


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user")


def tenant_list_for_user(*, user) -> QuerySet[Tenant]:
    return Tenant.objects.filter(memberships__user=user, status=Tenant.Status.ACTIVE).select_related("plan")


def tenant_current() -> Tenant:
    """The tenant whose schema the connection is on (in a task or command run in its context)."""
    from django.db import connection

    return Tenant.objects.get(schema_name=connection.schema_name)
