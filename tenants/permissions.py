"""The permission layer every tenant endpoint reuses.

People act through a membership role (viewer < analyst < admin < owner); API keys act through
scopes (read, trade, admin). A view states what each HTTP method needs with ``access``:

    class DecisionCreateApi(APIView):
        access = {"POST": Access(role=Role.ANALYST, scope=Scope.TRADE)}

Defaults: safe methods need viewer/read, unsafe ones analyst/admin. An authenticated person who
is not a member of the resolved tenant gets 404 — we never confirm another tenant exists.
"""

from dataclasses import dataclass

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import SAFE_METHODS, BasePermission

from api.errors import ApplicationError, NotFound

from .authentication import ApiKeyPrincipal
from .models import ROLE_RANK, Membership, Role, Scope


@dataclass(frozen=True)
class Access:
    role: str
    scope: str


READ = Access(role=Role.VIEWER, scope=Scope.READ)
WRITE = Access(role=Role.ANALYST, scope=Scope.ADMIN)
MANAGE = Access(role=Role.ADMIN, scope=Scope.ADMIN)


def required_access(view, method: str) -> Access:
    explicit = getattr(view, "access", {}) or {}
    if method in explicit:
        return explicit[method]
    if method == "HEAD" and "GET" in explicit:
        return explicit["GET"]
    return READ if method in SAFE_METHODS else WRITE


def membership_role(request) -> str | None:
    """The requesting person's role in the current tenant (memoised on the request)."""
    cache = request._request.__dict__
    if "_membership_role" not in cache:
        cache["_membership_role"] = (
            Membership.objects.filter(user_id=request.user.pk, tenant_id=request.tenant.pk)
            .values_list("role", flat=True)
            .first()
        )
    return cache["_membership_role"]


class TenantAccess(BasePermission):
    def has_permission(self, request, view) -> bool:
        if getattr(request, "tenant", None) is None:
            raise NotFound()
        user = request.user
        if not user or not user.is_authenticated:
            raise NotAuthenticated()
        need = required_access(view, request.method)
        if isinstance(user, ApiKeyPrincipal):
            if need.scope not in user.key.scopes:
                raise ApplicationError(
                    "insufficient_scope",
                    f"This API key lacks the '{need.scope}' scope; create a key with it.",
                    {"required_scope": str(need.scope)},
                    status=403,
                )
            return True
        role = membership_role(request)
        if role is None:
            raise NotFound()
        if ROLE_RANK[role] < ROLE_RANK[need.role]:
            raise ApplicationError(
                "insufficient_role",
                f"Your role '{role}' cannot do this; it needs '{need.role}' or higher.",
                {"required_role": str(need.role), "role": role},
                status=403,
            )
        return True


class IsStaff(BasePermission):
    """Platform staff only (a person with ``is_staff``): the platform's own endpoints (revenue,
    every tenant's usage, kill switches). Tenants' keys and members never pass."""

    message = "Platform staff only."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))
