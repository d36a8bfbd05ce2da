"""django-tenants' PostgreSQL backend, minus two round trips per request.

1. ``SET search_path`` only when the session's path actually changes. django-tenants forgets
   what it set whenever ``set_tenant`` is called, and the tenant middleware calls it (public, the
   request's tenant, public again) on every request, so every request re-sent the same ``SET``.
   Here the path last applied to the session is remembered separately and reused when the
   wanted path is the same; it is forgotten exactly where django-tenants forgets its own copy
   (close, rollback, savepoint rollback, a failed ``SET``), since those may have reverted it.
2. The per-request health check (``CONN_HEALTH_CHECKS``) looks at the connection's state instead
   of sending ``SELECT 1``. A connection the server dropped (PostgreSQL restarted) fails its next
   query (that request fails); Django then sees the broken connection and closes it, and the
   next request reconnects.
"""

from __future__ import annotations

from django_tenants.postgresql_backend import base as tenants_base
from psycopg import pq


class DatabaseWrapper(tenants_base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        self._applied_search_path = None  # what the session has, as far as we know
        super().__init__(*args, **kwargs)

    def set_tenant(self, tenant, include_public=True):
        super().set_tenant(tenant, include_public)
        if self._applied_search_path is not None and self._applied_search_path == self._get_cursor_search_paths():
            self.search_path_set_schemas = self._applied_search_path

    def _handle_search_path(self, cursor=None):
        nested = self._setting_search_path
        super()._handle_search_path(cursor)
        if not nested:
            self._applied_search_path = self.search_path_set_schemas

    def close(self):
        try:
            super().close()
        finally:  # after: the call itself may have issued a SET that it then reverted
            self._applied_search_path = None

    def rollback(self):
        try:
            super().rollback()
        finally:  # after: the call itself may have issued a SET that it then reverted
            self._applied_search_path = None

    def savepoint_rollback(self, sid):
        try:
            super().savepoint_rollback(sid)
        finally:  # after: the call itself may have issued a SET that it then reverted
            self._applied_search_path = None

    def is_usable(self):
        conn = self.connection
        return conn is not None and not conn.closed and conn.pgconn.status == pq.ConnStatus.OK
