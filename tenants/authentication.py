"""DRF authentication that reads what TenantResolutionMiddleware already verified."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from rest_framework.authentication import BaseAuthentication

from .resolution import KeyInfo


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """``request.user`` for API-key requests: the key, not a person; its scopes decide access."""

    key: KeyInfo
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_superuser: bool = False
    is_active: bool = True
    pk: None = None
    id: None = None

    @property
    def audit_name(self) -> str:
        return f"apikey:{self.key.prefix}"

    def __str__(self) -> str:
        return self.audit_name


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = getattr(request._request, "api_key", None)
        if key is None:
            return None
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request):
        return 'Api-Key realm="api"'


class TenantJWTAuthentication(BaseAuthentication):
    def authenticate(self, request):
        token = getattr(request._request, "jwt_token", None)
        if token is None:
            return None
        user = get_user_model().objects.filter(pk=token.get("user_id"), is_active=True).first()
        if user is None:
            from rest_framework.exceptions import AuthenticationFailed

            raise AuthenticationFailed("The token's user no longer exists or is inactive.")
        return user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
