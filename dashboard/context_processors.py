from dataclasses import replace

from django.urls import NoReverseMatch, resolve, reverse

from tenants.models import ROLE_RANK
from tenants.selectors import tenant_list_for_user

from .navigation import AREAS


def shell(request):
    """What the layout needs: the person's tenants for the switcher, the active one, the areas."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "shell_tenants": list(tenant_list_for_user(user=user).order_by("name")),
        "active_tenant": getattr(request, "tenant", None),
        "active_role": getattr(request, "role", None),
        "nav_areas": _nav_areas(getattr(request, "role", None)),
        "kill_switch": _kill_switch(request),
        "notify": _notify(request),
    }


def _nav_areas(role: str | None) -> list:
    """The areas with their URLs; an area's further pages only if ``role`` may open them (a page
    for admins is not offered to a viewer: it would answer 403)."""
    out = []
    for a in AREAS:
        url = reverse(a.url_name) if a.url_name else reverse("dashboard:area", args=[a.key])
        pages = tuple(p for p in a.pages if _may_open(p[1], role))
        out.append((a if pages == a.pages else replace(a, pages=pages), url))
    return out


def _may_open(url_name: str, role: str | None) -> bool:
    try:
        need = getattr(resolve(reverse(url_name)).func, "min_role", None)
    except NoReverseMatch:
        return True  # the menu's own {% url … as %} leaves it out
    return role is None or need is None or ROLE_RANK[role] >= ROLE_RANK[need]


def _kill_switch(request) -> dict | None:
    """The engaged kill switch that halts the active tenant (a banner on every page), or None."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return None
    from compliance.controls import kill_state

    return kill_state(tenant.schema_name)


def _notify(request) -> dict | None:
    """The notification bell of a member of the active tenant: the unread count and the socket's
    one-use ticket are callables, so they cost a query and a Redis write only when the layout
    renders the bell (never for a partial)."""
    if getattr(request, "tenant", None) is None or getattr(request, "role", None) is None:
        return None
    from notifications.selectors import unread_count

    from .notifications_views import ws_ticket, ws_url

    return {
        "unread": lambda: unread_count(user_id=request.user.pk),
        "ticket": lambda: ws_ticket(request),
        "ws_url": lambda: ws_url(request),
    }
