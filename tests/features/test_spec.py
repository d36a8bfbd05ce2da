"""FeatureSpec: the default set's exact columns, validation errors a user can act on (with JSON
paths), canonical JSON and hash, and warm-up arithmetic."""

from __future__ import annotations

import json

import pytest

from api.errors import ApplicationError
from features.spec import DEFAULT_SPEC, FeatureSpec


def spec_errors(data) -> dict[str, str]:
    with pytest.raises(ApplicationError) as exc:
        FeatureSpec.from_json(data)
    assert exc.value.code == "invalid_spec"
    assert exc.value.message.startswith("Invalid feature spec")
    return {e["path"]: e["message"] for e in exc.value.details["errors"]}


def test_default_spec_columns_are_exactly_the_seed_set():
    assert DEFAULT_SPEC.columns() == [
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


def test_default_spec_warmup_is_the_longest_lookback_macd():
    assert DEFAULT_SPEC.warmup() == 33
    assert DEFAULT_SPEC.column_warmups()["adx_14"] == 27


def test_lags_and_diff_add_columns_grouped_by_output():
    spec = FeatureSpec.from_json(
        {"features": [{"indicator": "macd", "outputs": ["macd", "hist"], "lags": [1, 5], "transforms": ["diff"]}]}
    )
    assert spec.columns() == [
        "macd_12_26_9",
        "macd_12_26_9_lag1",
        "macd_12_26_9_lag5",
        "macd_12_26_9_diff",
        "macd_hist_12_26_9",
        "macd_hist_12_26_9_lag1",
        "macd_hist_12_26_9_lag5",
        "macd_hist_12_26_9_diff",
    ]
    assert spec.warmup() == 33 + 5
    assert spec.column_warmups()["macd_hist_12_26_9_diff"] == 34


def test_higher_timeframe_columns_carry_the_timeframe_and_a_worst_case_warmup():
    spec = FeatureSpec.from_json({"features": [{"indicator": "rsi", "timeframe": "1d", "lags": [1]}]})
    assert spec.columns() == ["rsi_14_1d", "rsi_14_1d_lag1"]
    # RSI needs 15 daily bars; on 1h bars starting one hour into a day, that day is discarded
    assert spec.warmup("1h") == (14 + 2) * 24 - 2 + 1
    with pytest.raises(ApplicationError):
        spec.warmup()  # no base timeframe known


def test_unknown_indicator_is_reported_with_its_path():
    errors = spec_errors({"features": [{"indicator": "rsi"}, {"indicator": "supertrend"}]})
    assert list(errors) == ["features[1].indicator"]
    assert "unknown indicator 'supertrend'" in errors["features[1].indicator"]
    assert "rsi" in errors["features[1].indicator"]  # lists what exists


@pytest.mark.parametrize(
    ("params", "path", "fragment"),
    [
        ({"length": 1}, "features[0].params.length", "must be >= 2"),
        ({"length": "14"}, "features[0].params.length", "must be an integer"),
        ({"length": 14.0}, "features[0].params.length", "must be an integer"),
        ({"length": True}, "features[0].params.length", "must be an integer"),
        ({"length": 10**9}, "features[0].params.length", "must be <="),
        ({"lenght": 14}, "features[0].params.lenght", "unknown parameter"),
    ],
)
def test_bad_parameters_are_reported_with_their_path(params, path, fragment):
    errors = spec_errors({"features": [{"indicator": "rsi", "params": params}]})
    assert fragment in errors[path]


def test_cross_parameter_rule_macd_fast_below_slow():
    errors = spec_errors({"features": [{"indicator": "macd", "params": {"fast": 30, "slow": 26}}]})
    assert "smaller than slow" in errors["features[0].params.fast"]


def test_float_and_choice_parameters():
    errors = spec_errors(
        {
            "features": [
                {"indicator": "bbands", "params": {"std": 0}},
                {"indicator": "cdl", "params": {"pattern": "dragon"}},
                {"indicator": "returns", "params": {"kind": "percent"}},
            ]
        }
    )
    assert "must be >= 0.1" in errors["features[0].params.std"]
    assert "engulfing" in errors["features[1].params.pattern"]
    assert "simple, log" in errors["features[2].params.kind"]


def test_duplicate_columns_are_rejected():
    errors = spec_errors({"features": [{"indicator": "rsi", "params": {"length": 14}}, {"indicator": "rsi"}]})
    assert errors == {"features[1]": "duplicates column 'rsi_14' of features[0]"}


def test_same_indicator_at_two_timeframes_is_not_a_duplicate():
    spec = FeatureSpec.from_json({"features": [{"indicator": "rsi"}, {"indicator": "rsi", "timeframe": "4h"}]})
    assert spec.columns() == ["rsi_14", "rsi_14_4h"]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"features": [{"indicator": "rsi", "timeframe": "2h"}]}, "features[0].timeframe", "1m, 5m, 15m"),
        ({"features": [{"indicator": "rsi", "timeframe": {"h": 1}}]}, "features[0].timeframe", "must be one of"),
        ({"timeframe": "1w", "features": [{"indicator": "rsi"}]}, "timeframe", "must be one of"),
        (
            {"timeframe": "1h", "features": [{"indicator": "rsi", "timeframe": "5m"}]},
            "features[0].timeframe",
            "finer than",
        ),
        (
            {"features": [{"indicator": "rsi", "transforms": ["zscore_20"]}]},
            "features[0].transforms[0]",
            "supported: diff",
        ),
        ({"features": [{"indicator": "rsi", "lags": [0]}]}, "features[0].lags[0]", "from 1 to"),
        ({"features": [{"indicator": "rsi", "lags": [2, 2]}]}, "features[0].lags[1]", "listed twice"),
        ({"features": [{"indicator": "rsi", "lags": 3}]}, "features[0].lags", "must be a list"),
        ({"features": [{"indicator": "adx", "outputs": ["di"]}]}, "features[0].outputs[0]", "plus_di"),
        ({"features": [{"indicator": "rsi", "colour": "red"}]}, "features[0].colour", "unknown key"),
        ({"features": []}, "features", "non-empty list"),
        ({"feature": [{"indicator": "rsi"}]}, "feature", "unknown key"),
        ({"features": ["rsi"]}, "features[0]", "must be an object"),
    ],
)
def test_structural_errors_have_paths(data, path, fragment):
    errors = spec_errors(data)
    assert fragment in errors[path], errors


def test_every_error_is_reported_at_once():
    errors = spec_errors(
        {
            "features": [
                {"indicator": "rsi", "params": {"length": 0}},
                {"indicator": "nope"},
                {"indicator": "sma", "lags": [-1]},
            ]
        }
    )
    assert set(errors) == {"features[0].params.length", "features[1].indicator", "features[2].lags[0]"}


def test_invalid_json_text_is_an_invalid_spec():
    with pytest.raises(ApplicationError) as exc:
        FeatureSpec.from_json('{"features": [')
    assert exc.value.code == "invalid_spec"


def test_validate_against_a_base_timeframe():
    spec = FeatureSpec.from_json({"features": [{"indicator": "rsi", "timeframe": "15m"}]})
    spec.validate("5m")
    with pytest.raises(ApplicationError) as exc:
        spec.validate("1h")
    assert exc.value.details["errors"][0]["path"] == "features[0].timeframe"
    pinned = FeatureSpec.from_json({"timeframe": "1h", "features": [{"indicator": "rsi"}]})
    with pytest.raises(ApplicationError):
        pinned.validate("5m")


def test_json_round_trip_and_canonical_hash():
    spec = FeatureSpec.from_json(
        {"features": [{"indicator": "bbands", "params": {"std": 2}, "outputs": ["percent_b"], "lags": [3, 1]}]}
    )
    again = FeatureSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert again.hash() == spec.hash()
    assert spec.to_json()["features"][0]["params"] == {"length": 20, "std": 2.0}
    # defaults spelled out or not, ints for floats: the same spec
    assert (
        FeatureSpec.from_json({"features": [{"indicator": "rsi"}]}).hash()
        == FeatureSpec.from_json(
            {"features": [{"indicator": "rsi", "params": {"length": 14}, "lags": [], "transforms": []}]}
        ).hash()
    )
    # different columns, different hash; lag order is column order, so it counts
    assert (
        spec.hash()
        != FeatureSpec.from_json(
            {"features": [{"indicator": "bbands", "outputs": ["percent_b"], "lags": [1, 3]}]}
        ).hash()
    )
    assert len(DEFAULT_SPEC.hash()) == 64


def test_validate_accepts_the_default_spec():
    assert DEFAULT_SPEC.validate("1m") is DEFAULT_SPEC
