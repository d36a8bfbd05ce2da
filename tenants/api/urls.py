from django.urls import path

from accounts.api import members

from . import views

urlpatterns = [
    path("tenant/", views.TenantDetailApi.as_view(), name="tenant-detail"),
    path("ws-tickets/", views.WsTicketApi.as_view(), name="ws-ticket-create"),
    path("kill-switch/", views.KillSwitchApi.as_view(), name="kill-switch"),
    path("api-keys/", views.ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("api-keys/<int:key_id>/", views.ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("members/", members.MemberListApi.as_view(), name="member-list"),
    path("members/<int:member_id>/", members.MemberDetailApi.as_view(), name="member-detail"),
    path("invitations/", members.InvitationListCreateApi.as_view(), name="invitation-list"),
    path("invitations/<int:invitation_id>/", members.InvitationDetailApi.as_view(), name="invitation-detail"),
]
