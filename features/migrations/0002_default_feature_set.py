"""The built-in ``default@1`` feature set (the five seed indicators) in every tenant schema.

The spec is frozen here as data: a later change to features.spec.DEFAULT_SPEC must become a new
version, never rewrite this one (a test checks the two still agree)."""

from django.db import migrations

SPEC = {
    "timeframe": None,
    "features": [
        {"indicator": "rsi", "params": {"length": 14}},
        {"indicator": "macd", "params": {"fast": 12, "slow": 26, "signal": 9}},
        {"indicator": "bbands", "params": {"length": 20, "std": 2.0}, "outputs": ["upper", "middle", "lower"]},
        {"indicator": "atr", "params": {"length": 14}},
        {"indicator": "adx", "params": {"length": 14}, "outputs": ["adx"]},
    ],
}
COLUMNS = [
    "rsi_14",
    "macd_12_26_9",
    "macd_signal_12_26_9",
    "macd_hist_12_26_9",
    "bb_upper_20_2",
    "bb_middle_20_2",
    "bb_lower_20_2",
    "atr_14",
    "adx_14",
]


def create(apps, schema_editor):
    FeatureSet = apps.get_model("features", "FeatureSet")
    FeatureSet.objects.get_or_create(
        name="default",
        version=1,
        defaults={
            "description": "The five seed indicators with standard parameters: RSI 14, MACD 12/26/9, "
            "Bollinger Bands 20/2, ATR 14, ADX 14.",
            "spec": SPEC,
            "spec_hash": "65561eafc90ebed36c00091c636cc67da9b1bc58eef97046a3be49cf915a799d",
            "columns": COLUMNS,
            "warmup": 33,
            "created_by": "system",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("features", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
