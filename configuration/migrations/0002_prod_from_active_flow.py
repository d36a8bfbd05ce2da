"""Tenants from before environments: their active flow becomes prod's first configuration."""

from django.db import migrations


def forwards(apps, schema_editor):
    Flow = apps.get_model("intelligence", "Flow")
    ConfigVersion = apps.get_model("configuration", "ConfigVersion")
    active = Flow.objects.filter(active=True).first()
    if active is None or ConfigVersion.objects.filter(environment="prod").exists():
        return
    ConfigVersion.objects.create(
        environment="prod",
        version=1,
        values={"flow": f"{active.name}@{active.version}"},
        source="flow",
        comment="the flow active before environments",
        created_by="system",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("configuration", "0001_initial"),
        ("intelligence", "0004_decision_brin_ts_resolved"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
