"""Teach drf-spectacular our authentication classes (imported from tenants.apps.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` — create keys in the dashboard or with provision_tenant.",
        }


class JwtScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantJWTAuthentication"
    name = "BearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "From POST /api/v1/auth/token/; carries the tenant.",
        }
