from django.db import migrations

PLANS = [
    # code, name, monthly price (cents), limits (None = unlimited)
    ("free", "Free", 0, {"decisions_per_day": 500, "api_requests": 20000, "api_keys": 3, "members": 3,
                         "models": 3, "task_concurrency": 1, "agents": ["technical", "trend", "risk"]}),
    ("pro", "Pro", 9900, {"decisions_per_day": 20000, "api_requests": 500000, "api_keys": 20, "members": 20,
                          "models": 25, "task_concurrency": 2, "agents": "all"}),
    ("enterprise", "Enterprise", 99900, {"decisions_per_day": None, "api_requests": None, "api_keys": None,
                                         "members": None, "models": None, "task_concurrency": 4,
                                         "agents": "all"}),
]


def create(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, name, price, limits in PLANS:
        Plan.objects.update_or_create(code=code, defaults={"name": name, "monthly_price_cents": price,
                                                           "limits": limits})


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
