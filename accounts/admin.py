"""Django admin for people (e-mail login, no username) and tenant invitations."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import Count
from django.template.response import TemplateResponse

from api.errors import ApplicationError
from tenants.admin import ReadOnlyAdminMixin
from tenants.models import Membership

from .models import Invitation, User


class UserCreationAdminForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)
        field_classes: dict = {}

    def clean_email(self) -> str:
        # the manager stores e-mails lowercased; keep one account per address whatever its case
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("A user with this e-mail address already exists.", code="unique")
        return email


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes: dict = {}


class UserMembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ("tenant", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("tenant",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display = ("email", "name", "is_staff", "is_active", "last_login", "tenant_count")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),)
    readonly_fields = ("last_login", "date_joined")
    inlines = (UserMembershipInline,)
    actions = ("gdpr_erase",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_tenant_count=Count("memberships"))

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()  # memberships once the user exists

    @admin.display(description="Name", ordering="last_name")
    def name(self, obj: User) -> str:
        return obj.get_full_name()

    @admin.display(description="Tenants", ordering="_tenant_count")
    def tenant_count(self, obj: User) -> int:
        return obj._tenant_count

    @admin.action(description="GDPR: erase selected people (irreversible)", permissions=["gdpr_erase"])
    def gdpr_erase(self, request, queryset):
        """Asks for confirmation first; then ``compliance.gdpr.gdpr_erase`` per person."""
        from compliance.gdpr import gdpr_erase

        if request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/accounts/user/gdpr_erase_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Erase personal data?",
                    "people": list(queryset),
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        erased = 0
        for user in queryset:
            try:
                report = gdpr_erase(user=user, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"user:{user.pk}: {exc.message}", level="error")
                continue
            self.log_change(request, user, f"GDPR erased ({report['subject']}).")
            erased += 1
        self.message_user(
            request, f"Erased {erased} person(s): accounts scrubbed, sessions and their API keys revoked."
        )

    def has_gdpr_erase_permission(self, request) -> bool:
        """Staff allowed to change users (superusers included); never anyone else."""
        return request.user.is_staff and request.user.has_perm("accounts.change_user")


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read only: invitations are sent, accepted and revoked in the dashboard. The token's hash is
    never shown."""

    list_display = ("tenant", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at")
    list_display_links = ("email",)
    list_filter = ("role", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("email", "tenant__slug")
    list_select_related = ("tenant", "invited_by")
    ordering = ("-created_at",)
    fields = ("tenant", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at")
    exclude = ("token_hash",)
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("token_hash")
