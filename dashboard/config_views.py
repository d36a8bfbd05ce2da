"""The configuration service in the dashboard: each environment's settings (typed inputs from the
schema), what promoting would change, the history with restore; admins change, others read."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from api.errors import ApplicationError
from configuration import schema, selectors, services
from configuration.models import ConfigVersion
from tenants.models import Role

from .access import can, forbidden, tenant_page
from .paging import Choice, Dates, ListSpec, Search


def _form_values(post) -> dict:
    """The typed document from the form's fields (named by setting path); an empty limit is none."""
    flat = {}
    for f in schema.FIELDS:
        if f.type is bool:
            flat[f.path] = post.get(f.path) == "on"
            continue
        raw = (post.get(f.path) or "").strip()
        if raw == "":
            flat[f.path] = None if f.nullable else f.default
        elif f.type is str:
            flat[f.path] = raw
        else:
            try:
                flat[f.path] = int(raw) if f.type is int and raw.lstrip("-").isdigit() else float(raw)
            except ValueError:
                flat[f.path] = raw  # refused by the schema with the path and what is allowed
    return schema.nest(flat)


CONFIG_HISTORY_LIST = ListSpec(
    "config-history",
    "versions",
    search=Search(("comment", "created_by", "based_on"), "Comment or person"),
    filters=(Choice("source", "How", ConfigVersion.Source.choices), Dates("created_at", "Saved")),
)


@tenant_page()
def config(request):
    from intelligence.selectors import flow_list

    env = request.GET.get("env", schema.LIVE)
    if env not in schema.ENVIRONMENTS:
        env = schema.LIVE
    current = selectors.config_current(env)
    values = schema.flatten(current.values)
    source = schema.PROMOTES_FROM.get(env)
    incoming = None
    if source:
        incoming = {"from": source, "changes": schema.diff(current.values, selectors.config_current(source).values)}
    context = {
        "env": env,
        "environments": selectors.config_all(),
        "current": current,
        "fields": [{**f.describe(), "value": values.get(f.path), "input": f.type.__name__} for f in schema.FIELDS],
        "flows": [row.ref for row in flow_list()],
        "history": CONFIG_HISTORY_LIST.apply(request, selectors.config_versions(env)),
        "incoming": incoming,
        "can_change": can(request, Role.ADMIN),
    }
    return render(request, "dashboard/config.html", context)


@require_POST
@tenant_page()
def config_change(request, environment: str):
    if not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    action = request.POST.get("action", "save")
    expected = request.POST.get("expected_version")
    try:
        if action == "promote":
            _, changes = services.config_promote(tenant=request.tenant, environment=environment, actor=request.user)
        elif action == "restore":
            version = int(request.POST.get("version") or 0)
            _, changes = services.config_rollback(
                tenant=request.tenant, environment=environment, version=version, actor=request.user,
                comment=request.POST.get("comment", ""),
            )  # fmt: skip
        else:
            _, changes = services.config_set(
                tenant=request.tenant, environment=environment, values=_form_values(request.POST), partial=False,
                actor=request.user, comment=request.POST.get("comment", ""),
                expected_version=int(expected) if expected else None,
            )  # fmt: skip
    except (ApplicationError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", "Give whole version numbers."))
    else:
        if changes:
            what = ", ".join(c["path"] for c in changes)
            live = " Running processes pick it up at once." if environment == schema.LIVE else ""
            messages.success(request, f"{environment}: {len(changes)} setting(s) changed ({what}).{live}")
        else:
            messages.info(request, f"{environment}: nothing changed.")
    return redirect(f"{reverse('dashboard:config')}?env={environment}")
