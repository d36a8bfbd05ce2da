"""Training limits per plan: AutoML trials per job and training jobs per day."""

from django.db import migrations

LIMITS = {
    "free": {"trials_per_job": 30, "training_jobs_per_day": 5},
    "pro": {"trials_per_job": 200, "training_jobs_per_day": 50},
    "enterprise": {"trials_per_job": 1000, "training_jobs_per_day": None},
}


def add(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, extra in LIMITS.items():
        plan = Plan.objects.filter(code=code).first()
        if plan is not None:
            plan.limits = {**plan.limits, **{k: v for k, v in extra.items() if k not in plan.limits}}
            plan.save(update_fields=["limits"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_plan_data_limits")]
    operations = [migrations.RunPython(add, migrations.RunPython.noop)]
