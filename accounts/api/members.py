"""Members and invitations of the request's tenant over REST (the dashboard's members page, for
API clients). The rules (who may change whom, the last owner) live in accounts.services."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from api.pagination import CreatedCursorPagination
from api.schema import ERRORS
from tenants.models import Role
from tenants.permissions import MANAGE, READ
from tenants.selectors import membership_list


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.get_full_name")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    invited_by = serializers.EmailField(source="invited_by.email", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class MemberListApi(APIView):
    """Everyone in the tenant with their role, newest first."""

    access = {"GET": READ}
    pagination_class = CreatedCursorPagination

    @extend_schema(operation_id="members_list", responses={200: MemberSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(membership_list(tenant=request.tenant), request, view=self)
        return paginator.get_paginated_response(MemberSerializer(page, many=True).data)


class MemberDetailApi(APIView):
    access = {"GET": READ, "PATCH": MANAGE, "DELETE": MANAGE}

    class RoleSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices)

    @extend_schema(operation_id="members_retrieve", responses={200: MemberSerializer, **ERRORS})
    def get(self, request, member_id: int):
        return Response(MemberSerializer(selectors.member_get(tenant=request.tenant, member_id=member_id)).data)

    @extend_schema(
        operation_id="members_role_update",
        request=RoleSerializer,
        responses={200: MemberSerializer, **ERRORS},
        description="Change a member's role. Only owners grant or take away `owner`; "
        "the last owner can't be demoted (409 `last_owner`).",
    )
    def patch(self, request, member_id: int):
        selectors.member_get(tenant=request.tenant, member_id=member_id)  # 404 before judging the body
        data = self.RoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.member_role_change(
            tenant=request.tenant, membership_id=member_id, role=data.validated_data["role"], actor=request.user
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(
        operation_id="members_remove",
        responses={204: None, **ERRORS},
        description="Remove a member. Only owners remove owners; the last owner stays (409 `last_owner`).",
    )
    def delete(self, request, member_id: int):
        services.member_remove(tenant=request.tenant, membership_id=member_id, actor=request.user)
        return Response(status=204)


class InvitationListCreateApi(APIView):
    access = {"GET": MANAGE, "POST": MANAGE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)

    class CreatedSerializer(InvitationSerializer):
        accept_url = serializers.CharField(help_text="The invitation link, also e-mailed. Shown only in this response.")

    @extend_schema(operation_id="invitations_list", responses={200: InvitationSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.invitation_list(tenant=request.tenant), request, view=self)
        return paginator.get_paginated_response(InvitationSerializer(page, many=True).data)

    @extend_schema(
        operation_id="invitations_create",
        request=InputSerializer,
        responses={201: CreatedSerializer, **ERRORS},
        description="Invite by e-mail with a role (valid 7 days, one use; re-inviting replaces the open "
        "invitation). Counts against the plan's member cap.",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = services.invitation_create(
            tenant=request.tenant,
            invited_by=request.user,
            base_url=request.build_absolute_uri("/"),
            **data.validated_data,
        )
        invitation.accept_url = request.build_absolute_uri(f"/accounts/invite/{token}/")
        return Response(self.CreatedSerializer(invitation).data, status=201, headers={"Cache-Control": "no-store"})


class InvitationDetailApi(APIView):
    access = {"DELETE": MANAGE}

    @extend_schema(
        operation_id="invitations_revoke",
        responses={200: InvitationSerializer, **ERRORS},
        description="Withdraw an invitation; its link stops working.",
    )
    def delete(self, request, invitation_id: int):
        invitation = services.invitation_revoke(tenant=request.tenant, invitation_id=invitation_id, actor=request.user)
        return Response(InvitationSerializer(invitation).data)
