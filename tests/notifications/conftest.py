import itertools

import pytest

from .telegram_helpers import sandbox  # noqa: F401 - the Telegram tests' sandbox Bot API


@pytest.fixture(scope="module")
def own_tenant(django_db_setup, django_db_blocker):
    """A tenant of the module's own, committed (a worker's threads must see its rows), dropped after."""
    import time

    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_template_ensure

    stamp = f"{int(time.time())}{next(_tenant_numbers)}"
    with django_db_blocker.unblock():
        tenant_template_ensure()
        tenant, _ = tenant_provision(
            slug=f"notify{stamp}", plan="pro", owner_email=f"owner{stamp}@notify.test",
            owner_password="correct-horse-battery-9",
        )  # fmt: skip
    yield tenant
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


_tenant_numbers = itertools.count(1)
