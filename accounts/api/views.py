from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import lockout
from accounts.services import login_success_record
from api.errors import ApplicationError
from api.schema import ERRORS
from tenants.models import Membership


class LoginThrottle(AnonRateThrottle):
    rate = "20/min"


class TokenObtainApi(APIView):
    """Exchange e-mail + password for a JWT pair whose ``tenant_id`` claim scopes every call."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        password = serializers.CharField(trim_whitespace=False)
        tenant = serializers.SlugField(help_text="Tenant slug the token is for.")

    class OutputSerializer(serializers.Serializer):
        access = serializers.CharField()
        refresh = serializers.CharField()
        tenant = serializers.CharField()
        role = serializers.CharField()

    @extend_schema(
        operation_id="auth_token_create", request=InputSerializer, responses={200: OutputSerializer, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        email, ip = v["email"].lower(), request.META.get("REMOTE_ADDR", "")
        lockout.lockout_check(username=email, ip=ip)  # 429 login_locked + Retry-After, even with the right password
        user = authenticate(request, email=email, password=v["password"])
        membership = (
            Membership.objects.select_related("tenant")
            .filter(user=user, tenant__slug=v["tenant"], tenant__status="active")
            .first()
            if user
            else None
        )
        if membership is None:
            lockout.failure_record(username=email, ip=ip, via="api")
            # one answer for every failure: never reveal which tenants or e-mails exist
            raise ApplicationError("invalid_credentials", "E-mail, password or tenant is wrong.", status=401)
        login_success_record(user=user, email=email)
        refresh = RefreshToken.for_user(user)
        refresh["tenant_id"] = membership.tenant_id
        access = refresh.access_token
        access["tenant_id"] = membership.tenant_id
        return Response(
            self.OutputSerializer(
                {
                    "access": str(access),
                    "refresh": str(refresh),
                    "tenant": membership.tenant.slug,
                    "role": membership.role,
                }
            ).data
        )


class TokenRefreshApi(APIView):
    """Exchange a refresh token for a new access token, while the person is still an active
    member of the token's tenant (removal or suspension ends refreshes at once)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    class InputSerializer(serializers.Serializer):
        refresh = serializers.CharField()

    class OutputSerializer(serializers.Serializer):
        access = serializers.CharField()

    @extend_schema(
        operation_id="auth_token_refresh", request=InputSerializer, responses={200: OutputSerializer, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            refresh = RefreshToken(data.validated_data["refresh"])
        except TokenError as exc:
            raise ApplicationError(
                "invalid_token", "The refresh token is malformed or expired; log in again.", status=401
            ) from exc
        still_member = Membership.objects.filter(
            user_id=refresh.get("user_id"),
            user__is_active=True,
            tenant_id=refresh.get("tenant_id"),
            tenant__status="active",
        ).exists()
        if not still_member:
            raise ApplicationError("invalid_token", "This token's membership has ended; log in again.", status=401)
        return Response(self.OutputSerializer({"access": str(refresh.access_token)}).data)
