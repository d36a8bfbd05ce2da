"""Compliance staff review each tenant's workflows (read only) in the admin's active tenant: who
started what, how each step ended, who approved or rejected it."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from tenants.admin import ReadOnlyAdminMixin, TenantScopedModelAdmin

from .models import Workflow


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("model_name", "kind", "state", "current_step", "version", "created_by", "created_at", "finished_at")
    list_filter = ("state", "kind")
    search_fields = ("model_name", "created_by", "error")
    date_hierarchy = "created_at"
    fields = ("id", "kind", "model_name", "state", "current_step", "version", "error", "created_by", "created_at",
              "started_at", "finished_at", "steps_table", "params_json")  # fmt: skip
    readonly_fields = fields

    @admin.display(description="Steps")
    def steps_table(self, obj: Workflow) -> str:
        steps = obj.steps.order_by("position")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((s.name, s.state, s.attempts, s.actor or "", s.error or s.message) for s in steps),
        )
        return format_html(
            "<table><tr><th>Step</th><th>State</th><th>Attempts</th><th>By</th><th>Outcome</th></tr>{}</table>", rows
        )

    @admin.display(description="Parameters")
    def params_json(self, obj: Workflow) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.params, indent=2, sort_keys=True))
