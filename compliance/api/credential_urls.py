from django.urls import path

from . import credentials as views

urlpatterns = [
    path("credentials/", views.CredentialListCreateApi.as_view(), name="credential-list"),
    path("credentials/<int:credential_id>/", views.CredentialDetailApi.as_view(), name="credential-detail"),
    path("credentials/<int:credential_id>/rotate/", views.CredentialRotateApi.as_view(), name="credential-rotate"),
]
