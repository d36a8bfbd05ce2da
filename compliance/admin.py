"""Compliance review in the admin's active tenant: the append-only audit trail (read only) and the
tenant's credentials (hint and metadata only; secrets write-only)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from api.errors import ApplicationError
from tenants.admin import ReadOnlyAdminMixin, TenantScopedModelAdmin

from . import credentials
from .models import AuditRecord, Credential


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    """A database trigger rejects UPDATE and DELETE on audit records; the admin never offers them."""

    list_display = ("created_at", "actor", "action", "object_type", "object_id", "details_preview")
    list_filter = ("action",)
    search_fields = ("actor", "action", "object_id")
    date_hierarchy = "created_at"
    fields = ("created_at", "actor", "action", "object_type", "object_id", "details_json")
    readonly_fields = fields
    list_per_page = 100
    show_full_result_count = False  # audit trails grow large: skip the second COUNT(*)

    @admin.display(description="Details")
    def details_preview(self, obj: AuditRecord) -> str:
        text = json.dumps(obj.details, sort_keys=True, default=str)
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="Details")
    def details_json(self, obj: AuditRecord) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, default=str))


# --- Credentials (write-only secrets) ----------------------------------------------------------


class CredentialAdminForm(forms.ModelForm):
    """The secret is a password input that is never filled in (not even after a validation error)
    and never read back; on the change page, leaving it blank keeps the current secret."""

    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        required=False,
        strip=False,
        max_length=credentials.SECRET_MAX_LENGTH,
        help_text="Stored encrypted and never shown again. On a change: leave blank to keep it, or type a new one "
        "to rotate it.",
    )

    class Meta:
        model = Credential
        fields = ("name", "kind", "metadata")
        help_texts = {"metadata": f"Non-secret settings, per kind: {credentials.metadata_help()}."}

    def clean(self):
        data = super().clean()
        secret = data.get("secret") or ""
        adding = self.instance.pk is None
        try:
            if adding or secret:
                credentials.secret_check(secret)
            if adding and data.get("kind"):
                data["metadata"] = credentials.metadata_clean(data["kind"], data.get("metadata"), secret)
        except ApplicationError as exc:
            problems = exc.details.get("metadata")
            if isinstance(problems, dict):  # say what each key must be (the values are never shown)
                self.add_error("metadata", [f"{key}: {' '.join(msgs)}" for key, msgs in problems.items()])
            else:
                self.add_error("metadata" if problems else "secret", exc.message)
        return data


@admin.register(Credential)
class CredentialAdmin(TenantScopedModelAdmin):
    """A tenant's credentials: hint and metadata only. Adding, rotating (a new secret on the change
    page) and deleting go through ``compliance.credentials``, so each is audited in the tenant."""

    form = CredentialAdminForm
    list_display = ("name", "kind", "hint", "version", "created_by", "created_at", "rotated_at", "last_used_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    ordering = ("name",)
    info_fields = ("hint", "version", "created_by", "created_at", "rotated_at", "last_used_at")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("ciphertext")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "kind", "secret", "metadata")
        return ("name", "kind", "metadata", "secret", *self.info_fields)

    def get_readonly_fields(self, request, obj=None):
        # the name is part of the ciphertext's context; kind and metadata have no edit service (yet)
        return () if obj is None else ("name", "kind", "metadata", *self.info_fields)

    @method_decorator(sensitive_post_parameters("secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("secret") or ""
        if change:
            if secret:
                saved = credentials.credential_rotate(credential_id=obj.pk, secret=secret, actor=request.user)
                obj.version, obj.hint, obj.rotated_at = saved.version, saved.hint, saved.rotated_at
            return
        saved = credentials.credential_create(
            name=obj.name, kind=obj.kind, secret=secret, metadata=obj.metadata, actor=request.user
        )
        obj.pk, obj.created_at, obj.created_by, obj.hint = saved.pk, saved.created_at, saved.created_by, saved.hint

    def delete_model(self, request, obj):
        credentials.credential_delete(credential_id=obj.pk, actor=request.user)

    def delete_queryset(self, request, queryset):
        for pk in list(queryset.values_list("pk", flat=True)):
            credentials.credential_delete(credential_id=pk, actor=request.user)
