"""Compliance staff review each tenant's AI-core records (read only) in the admin's active tenant:
batch jobs (who ran what over which instruments, how it ended), detected anomalies, posted
fundamentals."""

from __future__ import annotations

from django.contrib import admin

from tenants.admin import ReadOnlyAdminMixin, TenantScopedModelAdmin

from .models import Anomaly, BatchJob, Fundamentals


@admin.register(BatchJob)
class BatchJobAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("id", "analysis", "status", "percent", "done", "failed", "created_by", "created_at", "seconds")
    list_filter = ("analysis", "status")
    search_fields = ("created_by", "error")
    date_hierarchy = "created_at"
    fields = ("id", "analysis", "status", "percent", "done", "failed", "symbols", "params", "error", "created_by",
              "created_at", "started_at", "finished_at", "seconds")  # fmt: skip
    readonly_fields = fields


@admin.register(Anomaly)
class AnomalyAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("symbol", "kind", "timeframe", "ts", "value", "score", "method", "detected_at")
    list_filter = ("kind", "method")
    search_fields = ("symbol",)
    date_hierarchy = "ts"
    fields = ("id", "kind", "symbol", "timeframe", "ts", "value", "score", "method", "detail", "detected_at")
    readonly_fields = fields


@admin.register(Fundamentals)
class FundamentalsAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("symbol", "sector", "shares_outstanding", "earnings", "book_value", "dividends", "as_of")
    list_filter = ("sector",)
    search_fields = ("symbol", "sector")
    fields = ("symbol", "sector", "shares_outstanding", "earnings", "book_value", "dividends", "as_of", "updated_at")
    readonly_fields = fields
