"""The starting flag rules, and the compliance group's permissions on the review index."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

RULES = [
    {"code": "against_risk", "kind": "against_risk",
     "description": "A BUY/SELL the risk agent vetoed or voted against."},
    {"code": "low_confidence", "kind": "low_confidence", "min_confidence": 0.55,
     "description": "A BUY/SELL decided with confidence below 0.55."},
    {"code": "unusual_size", "kind": "unusual_size", "size_multiple": 3.0, "median_window": 500, "size_cap": 0.25,
     "description": "Size above 3x the tenant's median of its last 500 trades, or above 25% of equity."},
    {"code": "control_block", "kind": "control_block", "veto_prefix": "control:",
     "description": "Blocked by a pre-trade control."},
]  # fmt: skip

GROUP_PERMISSIONS = [
    "view_reviewitem", "review_reviewitem", "export_reviewitem", "reflag_reviewitem",
    "view_flagrule", "change_flagrule", "add_flagrule",
]  # fmt: skip


def seed(apps, schema_editor):
    FlagRule = apps.get_model("review", "FlagRule")
    for rule in RULES:
        FlagRule.objects.get_or_create(code=rule["code"], defaults=rule)
    # permissions are otherwise created after the last migration; the group needs them now
    config = apps.get_app_config("review")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="compliance")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="review", codename__in=GROUP_PERMISSIONS))


class Migration(migrations.Migration):
    dependencies = [("review", "0001_initial"), ("accounts", "0003_compliance_group")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
