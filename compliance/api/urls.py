from django.urls import path

from . import views

urlpatterns = [
    path("audit/", views.AuditExportApi.as_view(), name="audit-export"),
]
