"""Compliance staff review each tenant's configuration history (read only) in the admin's active
tenant: what each environment ran, since when, changed by whom and why."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from tenants.admin import ReadOnlyAdminMixin, TenantScopedModelAdmin

from .models import ConfigVersion


@admin.register(ConfigVersion)
class ConfigVersionAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("environment", "version", "source", "based_on", "created_by", "created_at", "comment")
    list_filter = ("environment", "source")
    search_fields = ("comment", "created_by", "based_on")
    date_hierarchy = "created_at"
    fields = ("environment", "version", "source", "based_on", "comment", "created_by", "created_at", "values_json")
    readonly_fields = fields

    @admin.display(description="Values")
    def values_json(self, obj: ConfigVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.values, indent=2, sort_keys=True))
