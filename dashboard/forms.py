"""Forms of the dashboard's data and feature pages (the rules live in the services)."""

import json

from django import forms

from marketdata.models import Timeframe
from models_registry.ml.families import FAMILIES, TABULAR

FAMILY_LABELS = {
    "xgboost": "XGBoost (gradient-boosted trees)",
    "logistic": "Logistic / ridge regression",
    "random_forest": "Random forest",
    "extra_trees": "Extra trees",
    "mlp_window": "Sequence model: neural network over the last bars (trains on <feature set>-seq)",
}


def families_field() -> forms.MultipleChoiceField:
    """The AutoML families to search (every family the training service knows); none ticked = the
    tabular defaults."""
    return forms.MultipleChoiceField(
        choices=[(f, FAMILY_LABELS.get(f, f)) for f in FAMILIES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Model families",
        help_text=f"None ticked: {', '.join(TABULAR)}.",
    )


EXAMPLE_SPEC = {
    "features": [
        {"indicator": "rsi", "params": {"length": 14}, "lags": [1]},
        {"indicator": "ema", "params": {"length": 50}},
        {"indicator": "rsi", "params": {"length": 14}, "timeframe": "1d"},
    ]
}


class DataImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with the header timestamp,open,high,low,close,volume, or Parquet.")
    symbol = forms.CharField(max_length=32, help_text="Created with editable defaults if new.")
    timeframe = forms.ChoiceField(choices=Timeframe.choices, initial="1d")
    on_conflict = forms.ChoiceField(
        choices=[("error", "Stop if bars already exist"), ("skip", "Keep existing bars"), ("replace", "Replace them")],
        initial="error",
        label="If bars already exist",
    )


class FeatureSetForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Saving a changed spec under a name creates its next version.")
    description = forms.CharField(max_length=500, required=False)
    spec = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "mono"}),
        initial=json.dumps(EXAMPLE_SPEC, indent=2),
        help_text="JSON: a list of features, each an indicator with params, optional lags, diff and timeframe.",
    )

    def clean_spec(self):
        try:
            return json.loads(self.cleaned_data["spec"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc


class TrainForm(forms.Form):
    model = forms.SlugField(max_length=64, help_text="The registered model; a new name creates it.")
    symbol = forms.CharField(max_length=32)
    timeframe = forms.ChoiceField(choices=Timeframe.choices, initial="1d")
    feature_set = forms.CharField(max_length=80, initial="default", help_text="name or name@version")
    target = forms.ChoiceField(
        choices=[
            ("direction", "Direction (up / down)"),
            ("ternary", "Direction with a flat band"),
            ("return", "Return"),
            ("rl", "RL trading policy (trials = episodes)"),
        ],
        initial="direction",
    )
    rl_algo = forms.ChoiceField(
        choices=[("q_learning", "Q-learning (tabular)"), ("dqn", "DQN"), ("actor_critic", "Actor-critic")],
        initial="q_learning",
        required=False,
        label="RL algorithm",
        help_text="RL target only; evaluated walk-forward against buy & hold and flat.",
    )
    horizon = forms.IntegerField(min_value=1, max_value=500, initial=1, help_text="Bars ahead.")
    dead_band = forms.FloatField(min_value=0, initial=0.0, required=False, help_text="Flat band in % (ternary).")
    n_trials = forms.IntegerField(min_value=1, max_value=2000, initial=20, label="Trials")
    families = families_field()


class DeployForm(forms.Form):
    version = forms.IntegerField(min_value=1)
    alias = forms.SlugField(max_length=32, initial="production", required=False, help_text="Empty: production.")
    reason = forms.CharField(max_length=500, required=False)


class RollbackForm(forms.Form):
    version = forms.IntegerField(min_value=1, required=False, help_text="Empty: the version before the last move.")
    reason = forms.CharField(max_length=500, required=False)


class FlowForm(forms.Form):
    """A new flow version; the config's rules (ranges, agents, the plan) live in the service."""

    name = forms.SlugField(max_length=64, help_text="Saving under an existing name stores its next version.")
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 22, "spellcheck": "false", "class": "mono"}),
        help_text="JSON object: agents, settings, weights, thresholds. Keys left out take the defaults.",
    )
    activate = forms.BooleanField(required=False, initial=True, label="Make it the active flow")

    def clean_config(self):
        try:
            value = json.loads(self.cleaned_data["config"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}", code="invalid_json") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("The config must be a JSON object ({...}).", code="invalid_json")
        return value


class BacktestForm(forms.Form):
    strategy = forms.ChoiceField(choices=[])
    symbol = forms.CharField(max_length=32)
    timeframe = forms.ChoiceField(choices=Timeframe.choices, initial="1d")
    params = forms.CharField(
        max_length=200, required=False, label="Parameters",
        help_text="name=value, comma separated (e.g. fast=10, slow=30); empty: the strategy's defaults.",
    )  # fmt: skip
    cash = forms.FloatField(min_value=1, initial=10_000)
    commission = forms.FloatField(min_value=0, max_value=9.99, initial=0.1, help_text="% of notional per side.")
    fill = forms.ChoiceField(choices=[("next_open", "Next bar's open"), ("close", "Signal bar's close")])
    stop_loss = forms.FloatField(min_value=0.01, max_value=99, required=False, help_text="% below entry; optional.")
    model = forms.CharField(
        max_length=80, required=False, help_text="For a model version: name or name@version (walk-forward)."
    )
    window = forms.IntegerField(min_value=20, initial=500, required=False, help_text="Training bars per segment.")
    step = forms.IntegerField(min_value=1, initial=100, required=False, help_text="Bars predicted per model.")
    grid = forms.CharField(
        max_length=300, required=False, label="Sweep",
        help_text="Optional: values to sweep, e.g. fast=5,10,20; slow=30,60. Every combination is ranked.",
    )  # fmt: skip
    metric = forms.ChoiceField(choices=[], required=False, help_text="Ranks a sweep.")

    def __init__(self, *args, **kwargs):
        from backtesting.strategies import STRATEGIES
        from backtesting.sweep import METRICS

        super().__init__(*args, **kwargs)
        self.fields["strategy"].choices = [(s.name, s.title) for s in STRATEGIES.values()] + [
            ("model", "A model version, retrained walk-forward"),
            ("consensus", "The live consensus (active flow's agents), bar by bar"),
            ("replay", "The live period replayed from its recorded state (checks every decision)"),
        ]
        self.fields["metric"].choices = [(m, m) for m in METRICS]

    def clean_grid(self) -> dict | None:
        text = self.cleaned_data["grid"].strip()
        if not text:
            return None
        grid = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, values = part.partition("=")
            try:
                grid[name.strip()] = [float(v) for v in values.split(",") if v.strip()]
            except ValueError:
                raise forms.ValidationError(f"'{part}': values are numbers separated by commas.") from None
            if not sep or not name.strip() or not grid[name.strip()]:
                raise forms.ValidationError(f"'{part}' is not name=value,value.")
        return {k: [int(v) if v.is_integer() else v for v in vs] for k, vs in grid.items()}

    def clean(self):
        data = super().clean()
        if data.get("strategy") == "model" and not data.get("model"):
            self.add_error("model", "Say which model (name or name@version).")
        return data

    def clean_params(self) -> dict:
        out = {}
        for part in filter(None, (p.strip() for p in self.cleaned_data["params"].split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"'{part}' is not name=value.")
            out[name.strip()] = value.strip()
        return out
