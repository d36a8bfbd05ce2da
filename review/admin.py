"""Compliance review of every tenant's decisions (public schema): the index with filters, each
decision as stored in its tenant (opening it is audited there), review with a comment, export, and
the flag rules. Access: superusers, or staff holding the review permissions (the "compliance"
group has them, migration 0002); other staff get 403, non-staff the login page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from api.errors import ApplicationError
from tenants.models import Tenant

from . import services
from .models import FlagRule, ReviewItem


class ReviewForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=2000,
        help_text="Required: what you checked and what you concluded (it goes into each tenant's audit trail).",
    )

    def clean_comment(self):
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise forms.ValidationError("Write what you checked before marking reviewed.")
        return comment


# --- filters -----------------------------------------------------------------------------------


class TenantFilter(admin.SimpleListFilter):
    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        tenants = Tenant.objects.exclude(status=Tenant.Status.TEMPLATE).order_by("slug").values_list("pk", "slug")
        return [(str(pk), slug) for pk, slug in tenants]

    def queryset(self, request, queryset):
        return queryset.filter(tenant_id=self.value()) if self.value() else queryset


class SymbolFilter(admin.SimpleListFilter):
    """A text box: the symbols of every tenant are too many to list."""

    title = "symbol"
    parameter_name = "symbol"
    template = "admin/review/input_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def choices(self, changelist):
        keep = [(k, v) for k, values in changelist.get_filters_params().items() if k != self.parameter_name
                for v in (values if isinstance(values, list) else [values])]  # fmt: skip
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "keep": keep,
        }

    def queryset(self, request, queryset):
        return queryset.filter(symbol=self.value().strip().upper()) if self.value() else queryset


class ActionFilter(admin.SimpleListFilter):
    """Fixed choices: Django's field filter would scan the whole index for its distinct values."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(a, a) for a in ("BUY", "SELL", "HOLD")]

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(flags=[])
        if self.value() == "no":
            return queryset.filter(flags=[])
        return queryset


class FlagFilter(admin.SimpleListFilter):
    title = "flag"
    parameter_name = "flag"

    def lookups(self, request, model_admin):
        return [(code, code) for code in FlagRule.objects.values_list("code", flat=True)]

    def queryset(self, request, queryset):
        return queryset.filter(flags__contains=[self.value()]) if self.value() else queryset


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(reviewed_at__isnull=self.value() == "no")
        return queryset


# --- review items ------------------------------------------------------------------------------


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ("ts", "tenant", "decision_id", "symbol", "timeframe", "action", "confidence", "size",
                    "flag_list", "reviewed")  # fmt: skip
    list_filter = (TenantFilter, SymbolFilter, ActionFilter, FlaggedFilter, FlagFilter, ReviewedFilter)
    list_select_related = ("tenant",)
    search_fields = ("symbol", "decision_id")
    search_help_text = "A symbol (exact), or a decision id."
    date_hierarchy = "ts"
    list_per_page = 100
    show_full_result_count = False  # the index grows large: skip the second COUNT(*)
    change_form_template = "admin/review/reviewitem/change_form.html"
    fields = ("tenant", "decision_id", "ts", "decided_at", "symbol", "timeframe", "action", "confidence", "size",
              "flow", "model_version", "vetoed_by", "flag_list", "indexed_at", "reviewed_at", "reviewer",
              "review_comment")  # fmt: skip
    readonly_fields = fields
    actions = ("mark_reviewed", "export_csv", "export_json", "reflag")

    # permissions: view (Django's), review / export / reflag (custom); rows are never edited here
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _has(self, request, codename: str) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm(f"review.{codename}")

    def has_review_permission(self, request):
        return self._has(request, "review_reviewitem")

    def has_export_permission(self, request):
        return self._has(request, "export_reviewitem")

    def has_reflag_permission(self, request):
        return self._has(request, "reflag_reviewitem")

    def get_search_results(self, request, queryset, search_term):
        """Exact matches that use the indexes: a number is a decision id, anything else a symbol."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(decision_id=int(term)), False
        return queryset.filter(symbol=term.upper()), False

    @admin.display(description="Flags")
    def flag_list(self, obj: ReviewItem) -> str:
        return ", ".join(obj.flags) or "—"

    @admin.display(description="Reviewed", boolean=True, ordering="reviewed_at")
    def reviewed(self, obj: ReviewItem) -> bool:
        return obj.reviewed_at is not None

    @admin.display(description="Reviewed by")
    def reviewer(self, obj: ReviewItem) -> str:
        return obj.reviewed_by.email if obj.reviewed_by else "—"

    # the change page: the decision as stored in its tenant, read live and audited there
    def change_view(self, request, object_id, form_url="", extra_context=None):
        item = self.get_object(request, unquote(object_id))
        if item is not None and request.method == "GET" and self.has_view_permission(request, item):
            decision = services.review_item_open(item=item, actor=request.user)
            extra_context = {
                **(extra_context or {}),
                "decision": decision,
                "can_review": self.has_review_permission(request) and item.reviewed_at is None,
                "review_form": ReviewForm(),
                "review_url": reverse("admin:review_reviewitem_review", args=[item.pk]),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        review = self.admin_site.admin_view(self.review_view)
        return [path("<path:object_id>/review/", review, name="review_reviewitem_review"), *super().get_urls()]

    def review_view(self, request, object_id):
        """POST a comment: the item is marked reviewed (audited in its tenant)."""
        if not self.has_review_permission(request):
            raise PermissionDenied
        item = self.get_object(request, unquote(object_id))
        if item is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:review_reviewitem_change", args=[item.pk])
        if request.method != "POST":
            return redirect(change_url)
        form = ReviewForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Not marked reviewed: " + " ".join(form.errors.get("comment", [])))
            return redirect(change_url)
        marked, _ = services.review_mark(item_ids=[item.pk], actor=request.user, comment=form.cleaned_data["comment"])
        if marked:
            messages.success(request, f"Decision {item.tenant.slug}#{item.decision_id} marked reviewed.")
        else:
            messages.warning(request, "Already reviewed: the first review is kept.")
        return redirect(change_url)

    # bulk actions
    @admin.action(description="Mark selected reviewed (with a comment)", permissions=["review"])
    def mark_reviewed(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        form = ReviewForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            marked, already = services.review_mark(
                item_ids=ids, actor=request.user, comment=form.cleaned_data["comment"]
            )
            note = f"; {already} already reviewed (their first review is kept)" if already else ""
            self.message_user(request, f"Marked {marked} decision(s) reviewed{note}.")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Mark decisions reviewed",
            "opts": self.opts,
            "form": form,
            "ids": ids,
            "count": len(ids),
            "already": queryset.exclude(reviewed_at=None).count(),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/review/mark_reviewed.html", context, status=400 if form.errors else 200)

    def _export(self, request, queryset, fmt: str):
        try:
            body, ctype = services.review_export(
                item_ids=list(queryset.values_list("pk", flat=True)), actor=request.user, fmt=fmt
            )
        except ApplicationError as e:
            self.message_user(request, e.message, level=messages.ERROR)
            return None
        response = HttpResponse(body, content_type=ctype)
        name = f"decisions-review-{timezone.now():%Y%m%d-%H%M%S}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(description="Export selected as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.action(description="Export selected as JSON", permissions=["export"])
    def export_json(self, request, queryset):
        return self._export(request, queryset, "json")

    @admin.action(description="Re-flag selected with the current rules", permissions=["reflag"])
    def reflag(self, request, queryset):
        changed = services.review_reflag(item_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Flags recomputed; {changed} decision(s) changed.")


# --- flag rules --------------------------------------------------------------------------------


@admin.register(FlagRule)
class FlagRuleAdmin(admin.ModelAdmin):
    """A rule change applies to decisions indexed after it; "Re-flag selected" on the index
    recomputes older ones. Rules are disabled, not deleted: flagged items keep their codes."""

    list_display = ("code", "kind", "enabled", "min_confidence", "size_multiple", "median_window", "size_cap",
                    "veto_prefix", "updated_at")  # fmt: skip
    list_filter = ("kind", "enabled")
    fields = ("code", "kind", "enabled", "description", "min_confidence", "size_multiple", "median_window",
              "size_cap", "veto_prefix", "updated_at")  # fmt: skip
    readonly_fields = ("updated_at",)

    def get_readonly_fields(self, request, obj=None):
        return ("code", "kind", "updated_at") if obj is not None else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False
