"""Django admin for platform staff: plans, tenants, memberships, API keys, and the per-tenant base.

Tenants live in the public schema, their data in one schema each. Public models are plain
ModelAdmins; models of TENANT_APPS register with ``TenantScopedModelAdmin``, which works only once
an active tenant is picked (``/admin/tenant-switch/``, stored in the session like the dashboard's
tenant switcher, so the tenant middleware points the connection at that schema).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_tenants.utils import schema_context

from . import resolution
from .middleware import SESSION_TENANT_KEY
from .models import ApiKey, Domain, KillSwitch, Membership, Plan, Tenant
from .services import api_key_revoke, tenant_status_audited, tenant_status_set

admin.site.site_header = "AI Trading Intelligence admin"
admin.site.site_title = "AI Trading Intelligence admin"
admin.site.index_title = "Platform administration"
admin.site.index_template = "admin/platform_index.html"  # adds "Current tenant: X (change)"

COMPLIANCE_GROUP = "compliance"  # staff in this Django group may view tenant data (read only)


# --- Active tenant for the admin -------------------------------------------------------------


class TenantSwitchForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.filter(status=Tenant.Status.ACTIVE).order_by("slug"),
        required=False,
        empty_label="— none (public schema) —",
        help_text="Tenant data (e.g. audit records) is shown for this tenant only. Suspended tenants can't be picked.",
    )


def tenant_switch_view(request):
    """Pick the tenant whose schema the admin works in (staff only: wrapped in ``admin_view``)."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    if request.method == "POST":
        form = TenantSwitchForm(request.POST)
        if form.is_valid():
            tenant = form.cleaned_data["tenant"]
            if tenant is None:
                request.session.pop(SESSION_TENANT_KEY, None)
                messages.success(request, "No active tenant: the admin works in the public schema.")
            else:
                request.session[SESSION_TENANT_KEY] = tenant.pk
                messages.success(request, f"Active tenant: {tenant.name} ({tenant.slug}).")
            return redirect(next_url or reverse("admin:index"))
    else:
        current = getattr(request, "tenant", None)
        form = TenantSwitchForm(initial={"tenant": current.pk if current is not None else None})
    context = {
        **admin.site.each_context(request),
        "title": "Choose the active tenant",
        "form": form,
        "next": next_url,
        "current_tenant": getattr(request, "tenant", None),
    }
    return TemplateResponse(request, "admin/tenant_switch.html", context)


def _get_urls_with_tenant_switch(get_urls):
    def get_urls_():
        view = admin.site.admin_view(tenant_switch_view)
        return [path("tenant-switch/", view, name="tenant-switch"), *get_urls()]

    return get_urls_


# admin.site is the project's site (config/urls_public.py); add the view to it rather than swap sites.
if not getattr(admin.site, "_tenant_switch_installed", False):
    admin.site.get_urls = _get_urls_with_tenant_switch(admin.site.get_urls)
    admin.site._tenant_switch_installed = True


# --- Base for TENANT_APPS models ---------------------------------------------------------------


class ReadOnlyAdminMixin:
    """For records written only by services (audit, invitations): review, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TenantScopedModelAdmin(admin.ModelAdmin):
    """Base admin for a model whose table exists only in tenant schemas.

    Without an active tenant (public schema) the model is hidden and its pages redirect to the
    tenant switch; with one, the connection is already on that tenant's schema, so every query
    sees that tenant's rows only. Access: superusers, or active staff in the "compliance" group
    (view only). Group membership is checked by name, not via per-model permissions, so it does
    not depend on content types or permissions rows of tenant models.
    """

    change_list_template = "admin/tenant_scoped_change_list.html"

    @staticmethod
    def active_tenant(request) -> Tenant | None:
        return getattr(request, "tenant", None)

    @staticmethod
    def is_reviewer(request) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser:
            return True
        cached = getattr(request, "_compliance_reviewer", None)
        if cached is None:
            cached = user.groups.filter(name=COMPLIANCE_GROUP).exists()
            request._compliance_reviewer = cached
        return cached

    def _can_write(self, request) -> bool:
        return self.active_tenant(request) is not None and request.user.is_active and request.user.is_superuser

    def has_module_permission(self, request):
        return self.active_tenant(request) is not None and self.is_reviewer(request)

    def has_view_permission(self, request, obj=None):
        return self.active_tenant(request) is not None and self.is_reviewer(request)

    def has_add_permission(self, request):
        return self._can_write(request)

    def has_change_permission(self, request, obj=None):
        return self._can_write(request)

    def has_delete_permission(self, request, obj=None):
        return self._can_write(request)

    def get_queryset(self, request):
        if self.active_tenant(request) is None:
            return self.model._default_manager.none()  # the table does not exist in the public schema
        return super().get_queryset(request)

    def _no_tenant_response(self, request):
        """A page of this model without an active tenant: pick one first (never touch the table)."""
        if self.active_tenant(request) is not None:
            return None
        if not self.is_reviewer(request):
            raise PermissionDenied
        messages.warning(
            request,
            f"{self.opts.verbose_name_plural.capitalize()} live in each tenant's schema: choose a tenant first.",
        )
        query = urlencode({"next": request.get_full_path()})
        return redirect(f"{reverse('admin:tenant-switch')}?{query}")

    def _viewed(self, request, object_id=None) -> None:
        """Staff reading a tenant's data is itself in that tenant's audit trail (which page, which
        object, what filter)."""
        from compliance.services import audit_record

        if request.method != "GET":
            return
        details = {"model": self.opts.label_lower, "object_id": str(object_id) if object_id else None}
        query = request.GET.urlencode()
        if query:
            details["query"] = query[:300]
        audit_record(request.user, "staff.admin_viewed", None, details)

    def changelist_view(self, request, extra_context=None):
        refused = self._no_tenant_response(request)
        if refused is not None:
            return refused
        response = super().changelist_view(request, extra_context)
        if getattr(response, "status_code", 200) == 200:
            self._viewed(request)
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        refused = self._no_tenant_response(request)
        if refused is not None:
            return refused
        response = super().changeform_view(request, object_id, form_url, extra_context)
        if getattr(response, "status_code", 200) == 200 and object_id:
            self._viewed(request, object_id)
        return response

    def delete_view(self, request, object_id, extra_context=None):
        return self._no_tenant_response(request) or super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        return self._no_tenant_response(request) or super().history_view(request, object_id, extra_context)


# --- Plans -------------------------------------------------------------------------------------


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "price", "currency", "tenant_count")
    search_fields = ("code", "name")
    ordering = ("price", "code")
    fields = ("code", "name", "price", "currency", "overage", "monthly_price_cents", "limits")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_tenant_count=Count("tenants", filter=~Q(tenants__status=Tenant.Status.TEMPLATE)))
        )

    @admin.display(description="Tenants", ordering="_tenant_count")
    def tenant_count(self, obj: Plan) -> int:
        return obj._tenant_count

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        transaction.on_commit(resolution.invalidate)  # cached tenants carry their plan (limits)


# --- Tenants -----------------------------------------------------------------------------------


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0
    fields = ("domain", "is_primary")


class TenantMembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


def _tenant_status_set(request, queryset, status: str) -> list[Tenant]:
    with transaction.atomic():
        return [t for t in queryset if tenant_status_set(tenant=t, status=status, actor=request.user)]


class TenantStatusFilter(admin.SimpleListFilter):
    """Status without "template": that row is never listed."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(v, label) for v, label in Tenant.Status.choices if v != Tenant.Status.TEMPLATE]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Tenants are created by sign-up or ``manage.py provision_tenant`` (they clone a schema), so no
    "add" here. No delete either: deleting a tenant drops its PostgreSQL schema with all its data."""

    list_display = ("slug", "name", "plan", "status", "created_at", "member_count")
    list_filter = ("plan", TenantStatusFilter)
    search_fields = ("slug", "name")
    list_select_related = ("plan",)
    ordering = ("slug",)
    readonly_fields = ("slug", "schema_name", "created_at")
    fieldsets = (
        (None, {"fields": ("slug", "name", "plan", "status")}),
        (
            "Schema",
            {
                "fields": ("schema_name", "created_at"),
                "description": (
                    "Tenants cannot be deleted here: deleting a tenant drops its PostgreSQL schema "
                    "and every row in it. Suspend it instead."
                ),
            },
        ),
    )
    inlines = (DomainInline, TenantMembershipInline)
    actions = ("suspend", "reactivate")

    def get_queryset(self, request):
        # the template schema's row is plumbing (new tenants are cloned from it): never listed or edited
        return (
            super()
            .get_queryset(request)
            .exclude(status=Tenant.Status.TEMPLATE)
            .annotate(_member_count=Count("memberships"))
        )

    @admin.display(description="Members", ordering="_member_count")
    def member_count(self, obj: Tenant) -> int:
        return obj._member_count

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "status":
            kwargs["choices"] = [(v, label) for v, label in Tenant.Status.choices if v != Tenant.Status.TEMPLATE]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting a tenant drops its schema (auto_drop_schema): never from the admin

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "status" in form.changed_data:
            tenant_status_audited(tenant=obj, actor=request.user)
        transaction.on_commit(resolution.invalidate)  # status/plan/domains feed the resolution cache

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend(self, request, queryset):
        changed = _tenant_status_set(request, queryset, Tenant.Status.SUSPENDED)
        for tenant in changed:
            self.log_change(request, tenant, "Suspended.")
        self.message_user(request, f"Suspended {len(changed)} tenant(s): their API keys and sessions stop working.")

    @admin.action(description="Reactivate selected tenants", permissions=["change"])
    def reactivate(self, request, queryset):
        changed = _tenant_status_set(request, queryset, Tenant.Status.ACTIVE)
        for tenant in changed:
            self.log_change(request, tenant, "Reactivated.")
        self.message_user(request, f"Reactivated {len(changed)} tenant(s).")


# --- Memberships -------------------------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__email", "tenant__slug")
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user", "tenant")
    readonly_fields = ("created_at",)
    ordering = ("tenant__slug", "user__email")


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created in the dashboard or the API, where the raw key is shown once; only the name
    is editable here. The stored hash is never displayed, searched or put in a form."""

    list_display = ("name", "tenant", "prefix", "scope_list", "created_by", "created_at", "last_used_at", "active")
    list_filter = (ApiKeyStatusFilter, ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "prefix", "tenant__slug")
    list_select_related = ("tenant", "created_by")
    ordering = ("-created_at",)
    fields = ("name", "tenant", "prefix", "scopes", "created_by", "created_at", "last_used_at", "revoked_at")
    exclude = ("hashed_key",)
    readonly_fields = ("tenant", "prefix", "scopes", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("hashed_key")

    @admin.display(description="Scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="Active", boolean=True, ordering="revoked_at")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the audit trail refers to the key

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("tenant"):
            # the service writes an audit record in the current schema: the key's tenant's
            with schema_context(key.tenant.schema_name):
                api_key_revoke(tenant=key.tenant, key_id=key.pk, actor=request.user)
            self.log_change(request, key, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s); they stop working at once.")


@admin.register(KillSwitch)
class KillSwitchAdmin(admin.ModelAdmin):
    """Engaged and past kill switches; staff lift them here (a tenant cannot lift its own)."""

    list_display = ("__str__", "tenant", "reason", "engaged_by", "engaged_at", "lifted_by", "lifted_at")
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter),)
    readonly_fields = ("engaged_by", "engaged_at", "lifted_by", "lifted_at")
    fields = ("tenant", "reason", "engaged_by", "engaged_at", "lifted_by", "lifted_at")
    actions = ("lift",)

    def has_delete_permission(self, request, obj=None):
        return False  # the record of a halt is kept

    def has_change_permission(self, request, obj=None):
        return obj is None  # engaged through "add" (staff); lifted through the action

    def save_model(self, request, obj, form, change):
        from compliance import controls

        switch = controls.kill_engage(tenant=obj.tenant, reason=obj.reason, actor=request.user)
        obj.pk, obj.engaged_by, obj.engaged_at = switch.pk, switch.engaged_by, switch.engaged_at

    @admin.action(description="Lift the selected kill switches", permissions=["view"])
    def lift(self, request, queryset):
        from compliance import controls

        lifted = sum(controls.kill_lift(tenant=s.tenant, actor=request.user) for s in queryset.filter(lifted_at=None))
        self.message_user(request, f"Lifted {lifted} kill switch(es): trading resumes within 100 ms.")
