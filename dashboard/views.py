"""The dashboard shell: overview, area pages, API keys, members, tenant switching.

Pages render whole on a normal request and only their panel on an htmx request (``HX-Request``),
so every form also works without JavaScript.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services as account_services
from accounts.forms import ApiKeyForm, InviteForm, RoleForm, TenantCreateForm, service_error_apply
from accounts.models import Invitation
from api.errors import ApplicationError
from tenants import limits
from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import Role, Scope
from tenants.selectors import api_key_list, membership_list, tenant_list_for_user
from tenants.services import api_key_create, api_key_revoke

from .access import can, forbidden, tenant_page
from .forms import DataImportForm, FeatureSetForm
from .navigation import AREAS_BY_KEY
from .paging import Choice, Dates, ListSpec, Search


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _page(request, template: str, partial: str, context: dict, status: int = 200):
    return render(request, partial if _is_htmx(request) else template, context, status=status)


def home(request):
    return redirect("dashboard:overview" if request.user.is_authenticated else "accounts:login")


@tenant_page()
def overview(request):
    """The tenant's home: is everything OK and what is it doing. The status panel re-renders every
    few seconds (htmx); the decision ticker is live over the feed's WebSocket."""
    from analytics.selectors import tenant_dashboard
    from compliance.controls import kill_state
    from intelligence import selectors as intel

    from . import onboarding
    from .decisions_views import _feed_base, _ticket

    tenant = request.tenant
    status = tenant_dashboard(tenant=tenant)
    for q in status["quotas"]:
        q["percent"] = min(100, round(q["share"] * 100)) if q["share"] is not None else None
        q["label"] = q["quota"].replace("_", " ").capitalize()
        q["used_display"] = f"{q['used']:,}"
        q["limit_display"] = f"{q['limit']:,}" if q["limit"] is not None else ""
    context = {
        "s": status,
        "kill": kill_state(tenant.schema_name),
        "checklist": onboarding.checklist(tenant),
        "plan": tenant.plan,
        "can_onboard": can(request, Role.ANALYST),
        "can_deploy": can(request, Role.ADMIN),
    }
    if _is_htmx(request):
        return render(request, "dashboard/_overview_panel.html", context)  # the ticker is kept (hx-preserve)
    recent = [intel.decision_payload(d) for d in intel.decision_list(limit=8)]
    for d in recent:  # the same formatting the ticker's script gives live rows
        d["bar"] = d["ts"][:16].replace("T", " ")
        d["confidence_pct"] = f"{d['confidence'] * 100:.1f} %"
    context.update(
        decisions=recent,
        last_id=recent[0]["id"] if recent else 0,
        ws_url=f"{_feed_base(request)}/ws/decisions/",
        ticket=_ticket(request),
        ticker=True,
    )
    return render(request, "dashboard/overview.html", context)


@require_POST
@tenant_page()
def onboarding_step(request, action: str):
    """A first-run checklist step's one-click action (see ``dashboard.onboarding``)."""
    from . import onboarding

    try:
        message, url = onboarding.action_run(tenant=request.tenant, user=request.user, role=request.role, action=action)
    except ApplicationError as exc:
        if exc.status == 403:
            return forbidden(request, Role.ADMIN if action == "deploy" else Role.ANALYST)
        if exc.status == 404:
            raise Http404(exc.message) from exc
        messages.error(request, exc.message)
    else:
        messages.success(request, message)
        if url:
            return redirect(url)
    return redirect("dashboard:overview")


@tenant_page()
def area(request, key: str):
    area = AREAS_BY_KEY.get(key)
    if area is None:
        raise Http404
    return render(request, "dashboard/area.html", {"area": area})


# --- API keys ----------------------------------------------------------------------------------


KEY_LIST = ListSpec(
    "api-keys",
    "API keys",
    search=Search(("name", "prefix"), "Name or prefix", "e.g. trading bot"),
    filters=(
        Choice.either("state", "State", ("active", "Active"), ("revoked", "Revoked"), Q(revoked_at=None)),
        Choice("scope", "Scope", Scope.choices, apply=lambda rows, v: rows.filter(scopes__contains=[v])),
        Dates("created_at", "Created"),
    ),
)  # fmt: skip


def _keys_context(request, form=None, new_key=None, new_raw=None) -> dict:
    rows = api_key_list(tenant=request.tenant).select_related("created_by")
    return {
        "keys": KEY_LIST.apply(request, rows.order_by("revoked_at", "-created_at")),
        "form": form or ApiKeyForm(),
        "new_key": new_key,
        "new_raw": new_raw,
        "can_manage": can(request, Role.ADMIN),
        "key_limit": limits.plan_limit(request.tenant, "api_keys"),
        "active_count": rows.filter(revoked_at__isnull=True).count(),
    }


@tenant_page()
def api_keys(request):
    if request.method != "POST":
        return _page(request, "dashboard/api_keys.html", "dashboard/_api_keys_panel.html", _keys_context(request))
    if not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, raw = api_key_create(
                tenant=request.tenant,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                created_by=request.user,
            )
        except ApplicationError as exc:
            service_error_apply(form, exc)
        else:
            context = _keys_context(request, new_key=key, new_raw=raw)
            return _page(request, "dashboard/api_keys.html", "dashboard/_api_keys_panel.html", context, status=201)
    return _page(
        request, "dashboard/api_keys.html", "dashboard/_api_keys_panel.html", _keys_context(request, form), 400
    )


@require_POST
@tenant_page(Role.ADMIN)
def api_key_revoke_view(request, key_id: int):
    try:
        key = api_key_revoke(tenant=request.tenant, key_id=key_id, actor=request.user)
    except ApplicationError as exc:
        raise Http404 from exc
    messages.success(request, f"Key '{key.name}' revoked; requests with it now fail with 401.")
    if _is_htmx(request):
        return render(request, "dashboard/_api_keys_panel.html", _keys_context(request))
    return redirect("dashboard:api-keys")


# --- members -----------------------------------------------------------------------------------


MEMBER_LIST = ListSpec(
    "members",
    "members",
    search=Search(("user__email", "user__first_name", "user__last_name"), "Name or e-mail"),
    filters=(Choice("role", "Role", Role.choices), Dates("created_at", "Joined")),
)


def _members_context(request, invite_form=None, invite_link=None) -> dict:
    tenant = request.tenant
    rows = membership_list(tenant=tenant)
    members = MEMBER_LIST.apply(request, rows.select_related("user").order_by("user__email"))
    owners = rows.filter(role=Role.OWNER).count()
    invitations = list(
        Invitation.objects.filter(tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True)
        .select_related("invited_by")
        .order_by("-created_at")
    )
    role_choices = [r for r in Role if r != Role.OWNER or request.role == Role.OWNER]
    return {
        "members": members,
        "owners": owners,
        "invitations": invitations,
        "invite_form": invite_form or InviteForm(actor_role=request.role),
        "invite_link": invite_link,
        "can_manage": can(request, Role.ADMIN),
        "is_owner": request.role == Role.OWNER,
        "role_choices": role_choices,
        "member_limit": limits.plan_limit(tenant, "members"),
        "member_count": rows.count(),
    }


def _members_page(request, status: int = 200, **extra):
    return _page(
        request, "dashboard/members.html", "dashboard/_members_panel.html", _members_context(request, **extra), status
    )


@tenant_page()
def members(request):
    return _members_page(request)


@require_POST
@tenant_page(Role.ADMIN)
def member_invite(request):
    form = InviteForm(request.POST, actor_role=request.role)
    if form.is_valid():
        try:
            invitation, token = account_services.invitation_create(
                tenant=request.tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
                base_url=request.build_absolute_uri("/"),
            )
        except ApplicationError as exc:
            service_error_apply(form, exc)
        else:
            messages.success(request, f"Invitation e-mailed to {invitation.email} (valid 7 days).")
            link = request.build_absolute_uri(f"/accounts/invite/{token}/")
            return _members_page(request, status=201, invite_link=link)
    return _members_page(request, status=400, invite_form=form)


@require_POST
@tenant_page(Role.ADMIN)
def member_role(request, membership_id: int):
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick one of the listed roles.")
        return _members_page(request, status=400)
    try:
        m = account_services.member_role_change(
            tenant=request.tenant, membership_id=membership_id, role=form.cleaned_data["role"], actor=request.user
        )
    except ApplicationError as exc:
        if exc.status == 404:
            raise Http404 from exc
        messages.error(request, exc.message)
        return _members_page(request, status=exc.status)
    messages.success(request, f"{m.user.email} is now {m.role}.")
    if m.user_id == request.user.pk:
        request.role = m.role  # the page reflects one's own new rights at once
    return _members_page(request) if _is_htmx(request) else redirect("dashboard:members")


@require_POST
@tenant_page()
def member_remove(request, membership_id: int):
    """Admins remove others; anyone may remove themself (leave), except the last owner."""
    try:
        account_services.member_remove(tenant=request.tenant, membership_id=membership_id, actor=request.user)
    except ApplicationError as exc:
        if exc.status == 404:
            raise Http404 from exc
        messages.error(request, exc.message)
        if request.POST.get("from") == "profile":
            return redirect("accounts:profile")
        return _members_page(request, status=exc.status)
    if not request.user.memberships.filter(tenant=request.tenant).exists():
        request.session.pop(SESSION_TENANT_KEY, None)
        messages.success(request, f"You left {request.tenant.name}.")
        response = redirect("accounts:profile")
        if _is_htmx(request):
            response["HX-Redirect"] = response["Location"]
        return response
    messages.success(request, "Member removed.")
    return _members_page(request) if _is_htmx(request) else redirect("dashboard:members")


@require_POST
@tenant_page(Role.ADMIN)
def invitation_revoke(request, invitation_id: int):
    try:
        inv = account_services.invitation_revoke(tenant=request.tenant, invitation_id=invitation_id, actor=request.user)
    except ApplicationError as exc:
        raise Http404 from exc
    messages.success(request, f"Invitation to {inv.email} withdrawn.")
    return _members_page(request) if _is_htmx(request) else redirect("dashboard:members")


# --- tenants -----------------------------------------------------------------------------------


@require_POST
@login_required
def tenant_switch(request):
    """Make another of the person's tenants the active one (kept in the session)."""
    tenant_id = request.POST.get("tenant", "")
    tenant = tenant_list_for_user(user=request.user).filter(pk=tenant_id).first() if tenant_id.isdigit() else None
    if tenant is None:
        raise Http404
    request.session[SESSION_TENANT_KEY] = tenant.pk
    messages.info(request, f"Switched to {tenant.name}.")
    return redirect("dashboard:overview")


@login_required
def tenant_new(request):
    form = TenantCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            d = form.cleaned_data
            try:
                tenant = account_services.tenant_create_for_user(
                    user=request.user, slug=d["slug"], plan=d["plan"], name=d["name"]
                )
            except ApplicationError as exc:
                service_error_apply(form, exc)
            else:
                request.session[SESSION_TENANT_KEY] = tenant.pk
                messages.success(request, f"{tenant.name} is ready and is now your active tenant.")
                return redirect("dashboard:overview")
    has_tenants = tenant_list_for_user(user=request.user).exists()
    return render(request, "dashboard/tenant_new.html", {"form": form, "has_tenants": has_tenants}, status=status)


@require_POST
@tenant_page()
def token(request):
    """A short-lived access JWT for the active tenant: the dashboard's scripts use it for API and
    WebSocket calls (``Authorization: Bearer`` / ``?token=``)."""
    refresh = RefreshToken.for_user(request.user)
    access = refresh.access_token
    access["tenant_id"] = request.tenant.pk
    return JsonResponse({"access": str(access), "tenant": request.tenant.slug, "role": request.role})


# --- market data and features ----------------------------------------------------------------


def _sparkline(closes, width: int = 160, height: int = 32) -> str:
    """SVG polyline points for a small price line (server-rendered: no chart library to load)."""
    if len(closes) < 2:
        return ""
    return _polyline(closes, float(min(closes)), float(max(closes)), width, height)


def _instrument_list_spec() -> ListSpec:
    from marketdata.models import AssetClass

    return ListSpec(
        "instruments",
        "instruments",
        search=Search(("symbol", "name", "exchange"), "Symbol, name or exchange", "e.g. BTC"),
        filters=(Choice("asset_class", "Class", AssetClass.choices),),
    )


def _data_context(request, form=None, result=None, error=None) -> dict:
    from marketdata import selectors as md

    listed = _instrument_list_spec().apply(request, md.instrument_list())
    instruments = listed.rows  # coverage and sparklines for the page shown only
    coverage = md.coverage(instrument_ids=[i.pk for i in instruments])
    starts = [c["first"] for covs in coverage.values() for c in covs]
    ends = [c["last"] for covs in coverage.values() for c in covs]
    lo, hi = (min(starts), max(ends)) if starts else (None, None)
    total = (hi - lo).total_seconds() or 1 if lo else 1
    for inst in instruments:
        inst.cov = coverage.get(inst.pk, [])
        for c in inst.cov:  # the coverage bar: where this series sits on the common time axis
            c["left"] = round((c["first"] - lo).total_seconds() / total * 100, 2)
            c["width"] = max(round((c["last"] - c["first"]).total_seconds() / total * 100, 2), 0.5)
        if inst.cov:
            recent = md.bars_frame(instrument=inst, timeframe=inst.cov[-1]["timeframe"], limit=120)
            inst.spark = _sparkline(recent["close"].tolist())
    return {
        "instruments": listed,
        "range": (lo, hi),
        "form": form or DataImportForm(),
        "result": result,
        "error": error,
        "can_import": can(request, Role.ANALYST),
    }


@tenant_page()
def data(request):
    if request.method != "POST":
        return _page(request, "dashboard/data.html", "dashboard/_data_panel.html", _data_context(request))
    if not can(request, Role.ANALYST):
        return forbidden(request, Role.ANALYST)
    from marketdata import services as md_services
    from marketdata.validation import read_upload

    form = DataImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, "dashboard/data.html", "dashboard/_data_panel.html", _data_context(request, form), 400)
    d = form.cleaned_data
    upload = d["file"]
    try:
        result = md_services.bars_import(
            tenant=request.tenant,
            symbol=d["symbol"],
            timeframe=d["timeframe"],
            raw=read_upload(upload.name, upload.read()),
            on_conflict=d["on_conflict"],
            actor=request.user,
        )
    except ApplicationError as exc:
        context = _data_context(request, form, error=exc)
        return _page(request, "dashboard/data.html", "dashboard/_data_panel.html", context, exc.status)
    context = _data_context(request, result=result.as_dict())
    return _page(request, "dashboard/data.html", "dashboard/_data_panel.html", context, 201)


FEATURE_SET_LIST = ListSpec(
    "feature-sets",
    "feature sets",
    search=Search(("name", "description"), "Name or description"),
    filters=(
        Choice.either("locked", "Locked", ("yes", "Locked (a model uses it)"), ("no", "Not locked"),
                      Q(locked_at__isnull=False)),
        Dates("created_at", "Created"),
    ),
)  # fmt: skip


@tenant_page()
def features(request):
    from features import selectors as fs_selectors
    from features import services as fs_services

    form = FeatureSetForm(request.POST or None)
    status, created = 200, None
    if request.method == "POST":
        if not can(request, Role.ANALYST):
            return forbidden(request, Role.ANALYST)
        status = 400
        if form.is_valid():
            try:
                created, is_new = fs_services.feature_set_create(
                    name=form.cleaned_data["name"],
                    spec=form.cleaned_data["spec"],
                    description=form.cleaned_data["description"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                for e in exc.details.get("errors", []) or [{"path": "", "message": exc.message}]:
                    form.add_error(
                        "spec" if exc.code == "invalid_spec" else "name", f"{e['path']}: {e['message']}".lstrip(": ")
                    )
            else:
                messages.success(
                    request, f"Saved {created.ref}." if is_new else f"Unchanged: {created.ref} already has this spec."
                )
                return redirect("dashboard:features")
    from marketdata import selectors as md

    everything = fs_selectors.feature_set_list()
    context = {
        "feature_sets": FEATURE_SET_LIST.apply(request, everything),
        "all_feature_sets": list(everything.only("name", "version")),  # the preview's choice
        "instruments": list(md.instrument_list()),
        "form": form,
        "can_edit": can(request, Role.ANALYST),
    }
    return render(request, "dashboard/features.html", context, status=status)


PRICE_SCALE_PREFIXES = ("bb_upper", "bb_middle", "bb_lower", "sma_", "ema_", "vwap_")
PREVIEW_COLORS = ["#2f5bea", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285"]


def _polyline(values, lo: float, hi: float, width: int, height: int, top: int = 0) -> str:
    span = (hi - lo) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{top + height - (v - lo) / span * height:.1f}" for i, v in enumerate(values) if v == v
    )


@tenant_page()
def features_preview(request):
    """An SVG preview of a feature set over the last bars of an instrument: price-scale features
    (bands, moving averages) over the price, the others below, each on its own scale."""
    from features import selectors as fs_selectors
    from marketdata import selectors as md

    ref, symbol, timeframe = (request.GET.get(k, "") for k in ("ref", "symbol", "timeframe"))
    context: dict = {"instruments": list(md.instrument_list()), "ref": ref, "symbol": symbol, "timeframe": timeframe}
    try:
        fs = fs_selectors.feature_set_get(ref=ref)
        instrument = md.instrument_get(symbol=symbol)
        bars = md.bars_frame(instrument=instrument, timeframe=timeframe or "1d", limit=200)
        if bars.empty:
            raise ApplicationError("no_bars", f"{symbol} has no {timeframe} bars; import some first.")
        # the values the API, training and the live engine see: computed from the start of the series
        feats = fs_selectors.stored_features(instrument=instrument, timeframe=timeframe or "1d", fs=fs)
        feats = feats.reindex(bars.index)
    except ApplicationError as exc:
        context["error"] = exc.message
        return render(request, "dashboard/_features_preview.html", context, status=200)
    close = bars["close"]
    overlay = [c for c in feats.columns if c.startswith(PRICE_SCALE_PREFIXES)]
    lower = [c for c in feats.columns if c not in overlay][:6]
    lo = float(min(close.min(), *(feats[c].min() for c in overlay))) if overlay else float(close.min())
    hi = float(max(close.max(), *(feats[c].max() for c in overlay))) if overlay else float(close.max())
    width, h_top, h_low = 760, 220, 140
    lines = [{"label": "close", "color": "#172033", "points": _polyline(close.tolist(), lo, hi, width, h_top)}]
    for i, c in enumerate(overlay):
        lines.append(
            {"label": c, "color": PREVIEW_COLORS[i % 6], "points": _polyline(feats[c].tolist(), lo, hi, width, h_top)}
        )
    lower_lines = []
    for i, c in enumerate(lower):
        values = feats[c]
        lower_lines.append(
            {
                "label": c,
                "color": PREVIEW_COLORS[i % 6],
                "points": _polyline(
                    values.tolist(), float(values.min()), float(values.max()), width, h_low, h_top + 20
                ),
                "last": values.iloc[-1],
            }
        )
    context.update(
        fs=fs,
        lines=lines,
        lower_lines=lower_lines,
        width=width,
        height=h_top + h_low + 30,
        first=close.index[0],
        last=close.index[-1],
    )
    return render(request, "dashboard/_features_preview.html", context)
