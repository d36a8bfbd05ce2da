"""Celery wiring. tenant-schemas-celery carries the caller's schema in each task's headers and
switches the worker's connection to it before the task runs."""

import os

from tenant_schemas_celery.app import CeleryApp

import ops.logging  # noqa: F401  (workers keep Django's LOGGING; records carry task id and name)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = CeleryApp("ati", task_cls="tenants.tasks:TenantFairTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
