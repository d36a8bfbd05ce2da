"""Market-data limits per plan: rows per import, upload size, instruments."""

from django.db import migrations

LIMITS = {
    "free": {"import_rows": 200_000, "upload_mb": 20, "instruments": 20},
    "pro": {"import_rows": 5_000_000, "upload_mb": 200, "instruments": 500},
    "enterprise": {"import_rows": None, "upload_mb": 1000, "instruments": None},
}


def add(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, extra in LIMITS.items():
        plan = Plan.objects.filter(code=code).first()
        if plan is not None:
            plan.limits = {**plan.limits, **{k: v for k, v in extra.items() if k not in plan.limits}}
            plan.save(update_fields=["limits"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0002_plans")]
    operations = [migrations.RunPython(add, migrations.RunPython.noop)]
