from .env import env_int, env_str

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# Main host for the dashboard and the public API; tenants also get `<slug>.<TENANT_BASE_DOMAIN>`.
TENANT_BASE_DOMAIN = env_str("TENANT_BASE_DOMAIN", "localhost")
# In-process cache TTL for tenant resolution (API-key prefix -> tenant, host -> tenant).
TENANT_RESOLUTION_TTL = env_int("TENANT_RESOLUTION_TTL", 30)
# New tenants are cloned from this fully migrated template schema (fast provisioning).
TENANT_TEMPLATE_SCHEMA = env_str("TENANT_TEMPLATE_SCHEMA", "tenant_template")
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False
# Issue `SET search_path` once per connection and schema switch instead of before every statement
# (13 round trips in one decision request). django-tenants forgets the cached path on set_tenant /
# set_schema, on close, and on ROLLBACK / ROLLBACK TO SAVEPOINT (which revert a SET), so a reused
# connection never answers for the wrong tenant (tested in tests/tenants).
TENANT_LIMIT_SET_CALLS = True
