"""Compliance review: each tenant's append-only audit trail, read only, in the admin's active tenant."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from tenants.admin import ReadOnlyAdminMixin, TenantScopedModelAdmin

from .models import AuditRecord


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
