"""Django admin for people (e-mail login, no username) and tenant invitations."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import Count

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
