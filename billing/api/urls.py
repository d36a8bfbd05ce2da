from django.urls import path

from .views import BillingApi, InvoicePayApi, PlanChangeApi

urlpatterns = [
    path("billing/", BillingApi.as_view(), name="billing"),
    path("billing/plan/", PlanChangeApi.as_view(), name="billing-plan"),
    path("billing/invoices/<uuid:invoice_id>/pay/", InvoicePayApi.as_view(), name="billing-invoice-pay"),
]
