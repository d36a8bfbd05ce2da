"""The base task class: runs in the caller's schema and keeps one tenant from starving the others.

Every task is a :class:`TenantFairTask`. Before running in a tenant schema it takes one of that
tenant's worker slots (plan limit ``task_concurrency``, default TENANT_TASK_CONCURRENCY) from a
Redis sorted set; with none free it re-queues itself after a short delay, so the worker moves on
to other tenants' tasks. Slots expire after the task time limit, so a killed worker cannot leak
them.
"""

from __future__ import annotations

import random
import time
import uuid

from django.conf import settings
from django.db import connection
from tenant_schemas_celery.task import TenantTask

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_script = None


def _slots():
    global _script
    if _script is None:
        from tenants.resolution import redis_client

        _script = redis_client().register_script(_ACQUIRE)
    return _script


def tenant_concurrency(schema: str) -> int:
    from tenants.models import Tenant

    tenant = Tenant.objects.select_related("plan").filter(schema_name=schema).first()
    limit = (tenant.plan.limits or {}).get("task_concurrency") if tenant else None
    return int(limit or settings.TENANT_TASK_CONCURRENCY)


class TenantFairTask(TenantTask):
    abstract = True
    fair = True  # set False on tiny housekeeping tasks

    def __call__(self, *args, **kwargs):
        schema = connection.schema_name
        if not self.fair or schema == "public" or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        key = f"fair:{schema}"
        token = f"{self.request.id or uuid.uuid4().hex}"
        now = time.time()
        ttl = int(settings.CELERY_TASK_TIME_LIMIT)
        if not _slots()(keys=[key], args=[now, tenant_concurrency(schema), now + ttl, token, ttl * 2]):
            raise self.retry(countdown=0.5 + random.random(), max_retries=None)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            from tenants.resolution import redis_client

            redis_client().zrem(key, token)


def fan_out(task) -> int:
    """Queue ``task`` once per active tenant, each in that tenant's schema (for beat jobs that run
    tenant by tenant); how many were queued."""
    from django_tenants.utils import schema_context

    from tenants.models import Tenant

    schemas = list(Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True))
    for schema in schemas:
        with schema_context(schema):
            task.delay()
    return len(schemas)
