"""Who may open a dashboard page: a logged-in member of the active tenant, with a minimum role."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers

from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import ROLE_RANK, Membership, Role
from tenants.selectors import tenant_list_for_user


def tenant_page(min_role: str = Role.VIEWER):
    """Decorate a view that works inside the active tenant.

    No tenant in the session yet: pick the person's first one (or send them to create one).
    Not a member (removed, or the session points elsewhere): forget it and start over; on a
    tenant's own host that is a 404, never a hint the tenant exists. ``request.role`` is set.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            tenant = request.tenant
            if tenant is None:
                first = tenant_list_for_user(user=request.user).order_by("memberships__created_at").first()
                if first is None:
                    return redirect("dashboard:tenant-new")
                request.session[SESSION_TENANT_KEY] = first.pk
                return redirect(request.get_full_path() if request.method == "GET" else "dashboard:overview")
            role = Membership.objects.filter(tenant=tenant, user=request.user).values_list("role", flat=True).first()
            if role is None:
                if request.session.get(SESSION_TENANT_KEY) != tenant.pk:
                    raise Http404
                request.session.pop(SESSION_TENANT_KEY, None)
                return redirect("dashboard:overview")
            request.role = role
            if ROLE_RANK[role] < ROLE_RANK[min_role]:
                return render(request, "403.html", {"role": role, "required_role": min_role}, status=403)
            response = view(request, *args, **kwargs)
            # tenant pages may carry a secret shown once (a new key, an invite link): never cached
            add_never_cache_headers(response)
            return response

        wrapped.min_role = min_role  # the menu leaves out pages a member's role can't open
        return wrapped

    return decorator


def can(request, at_least: str) -> bool:
    role = getattr(request, "role", None)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[at_least]


def forbidden(request, required_role: str):
    """The 403 page for a member whose role is below ``required_role`` (what they have, what it needs)."""
    return render(request, "403.html", {"role": request.role, "required_role": required_role}, status=403)


def start_form(request, form, start, *, role: str = Role.ANALYST):
    """A page's "start something" form (training, backtest, workflow): ``(response, status)``.

    GET: ``(None, 200)``. POST below ``role``: the 403 page. An invalid form: ``(None, 400)``.
    Valid: ``start(form.cleaned_data)`` calls the domain service and returns ``(object, message,
    url)``: the message flashed, a redirect to ``url``. The service's ApplicationError is shown on
    the form, its status kept where it says something (403 plan, 409 conflict, 429 quota), else 400."""
    from django.contrib import messages

    from api.errors import ApplicationError

    if request.method != "POST":
        return None, 200
    if not can(request, role):
        return forbidden(request, role), 403
    if not form.is_valid():
        return None, 400
    try:
        _, message, url = start(form.cleaned_data)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return None, exc.status if exc.status in (403, 409, 429) else 400
    messages.success(request, message)
    return redirect(url), 302


def staff_page(view):
    """Decorate a platform-staff page (/app/staff/…): not logged in, the log-in page; logged in
    without ``is_staff`` (a tenant's member), 403. Needs no tenant; never cached."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            return render(request, "403.html", {"staff_only": True}, status=403)
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        return response

    return wrapped
