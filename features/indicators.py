"""The indicator registry: parameters, output columns, warm-up, batch and streaming implementations.

Batch values go through pandas-ta with TA-Lib as its backend wherever pandas-ta passes TA-Lib's
numbers through unchanged (RSI, MACD, Bollinger bands, ATR, SMA, EMA, OBV, returns, most
candlestick patterns). Three indicators call TA-Lib directly, because pandas-ta's path would
change the numbers or the cost:

- ``adx``: pandas-ta returns +DM/-DM (not +DI/-DI) and applies a Python function to every bar
  (1.4 s for 1M bars here, against 37 ms for TA-Lib's ADX + PLUS_DI + MINUS_DI);
- ``stoch``: pandas-ta's TA-Lib path passes ``d`` as TA-Lib's slow-%K period, ignoring
  ``smooth_k``;
- ``cdl`` with ``pattern="doji"``: pandas-ta substitutes its own doji for TA-Lib's.

``vwap``, ``volatility`` and ``zscore`` are our own definitions (pandas-ta's VWAP is anchored to
sessions, which bars without session data cannot have; pandas-ta's z-score divides by zero on a
flat window). VWAP's batch path uses pandas' compensated rolling sums; the rolling variance is a
compiled twin of the streaming one, because pandas' rolling std is off by up to ~1e-8 relative.

Warm-up is the number of leading bars whose value is NaN, derived from TA-Lib's lookback and
checked against it in the tests. An indicator's value on bar ``i`` depends on bars ``<= i`` only.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import talib
from talib import abstract as talib_abstract
from talib import stream as talib_stream

from api.errors import ApplicationError
from features import streaming as st

MAX_PERIOD = 100_000  # TA-Lib's own upper bound for a period

# pattern name -> TA-Lib function; every one has a bounded lookback and returns 0 / +-100
CANDLE_PATTERNS: dict[str, str] = {
    "engulfing": "CDLENGULFING",
    "doji": "CDLDOJI",
    "dojistar": "CDLDOJISTAR",
    "dragonflydoji": "CDLDRAGONFLYDOJI",
    "gravestonedoji": "CDLGRAVESTONEDOJI",
    "hammer": "CDLHAMMER",
    "invertedhammer": "CDLINVERTEDHAMMER",
    "hangingman": "CDLHANGINGMAN",
    "shootingstar": "CDLSHOOTINGSTAR",
    "morningstar": "CDLMORNINGSTAR",
    "eveningstar": "CDLEVENINGSTAR",
    "morningdojistar": "CDLMORNINGDOJISTAR",
    "eveningdojistar": "CDLEVENINGDOJISTAR",
    "harami": "CDLHARAMI",
    "haramicross": "CDLHARAMICROSS",
    "piercing": "CDLPIERCING",
    "darkcloudcover": "CDLDARKCLOUDCOVER",
    "3whitesoldiers": "CDL3WHITESOLDIERS",
    "3blackcrows": "CDL3BLACKCROWS",
    "3inside": "CDL3INSIDE",
    "3outside": "CDL3OUTSIDE",
    "marubozu": "CDLMARUBOZU",
    "spinningtop": "CDLSPINNINGTOP",
}
_PANDAS_TA_OWN_PATTERNS = {"doji", "inside"}  # pandas-ta computes these itself, not via TA-Lib

BAR_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int" | "float" | "choice"
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def clean(self, value: Any) -> tuple[Any, str | None]:
        """The value in canonical type, or an error message a user can act on."""
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return None, f"must be an integer, got {value!r}"
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return None, f"must be a number, got {value!r}"
            value = float(value)
        else:
            if value not in self.choices:
                return None, f"must be one of {', '.join(self.choices)}; got {value!r}"
            return value, None
        if self.minimum is not None and value < self.minimum:
            return None, f"must be >= {_fmt(self.minimum)}, got {_fmt(value)}"
        if self.maximum is not None and value > self.maximum:
            return None, f"must be <= {_fmt(self.maximum)}, got {_fmt(value)}"
        return value, None

    def describe(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default, "help": self.help}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _fmt(value: Any) -> str:
    """Column-name spelling of a parameter: integer-valued floats lose their '.0' (2.0 -> '2')."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


class Bars:
    """OHLCV as float64 arrays, with pandas views made on demand for pandas-ta."""

    __slots__ = ("open", "high", "low", "close", "volume", "_series")

    def __init__(self, open, high, low, close, volume):  # noqa: A002
        self.open, self.high, self.low, self.close, self.volume = open, high, low, close, volume
        self._series: dict[str, pd.Series] = {}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Bars:
        return cls(*(np.ascontiguousarray(frame[name].to_numpy(dtype=np.float64)) for name in BAR_COLUMNS))

    def __len__(self) -> int:
        return len(self.close)

    def series(self, name: str) -> pd.Series:
        s = self._series.get(name)
        if s is None:
            s = self._series[name] = pd.Series(getattr(self, name), copy=False)
        return s


Values = dict[str, np.ndarray]


@dataclass(frozen=True)
class Indicator:
    name: str
    summary: str
    params: tuple[Param, ...]
    outputs: tuple[tuple[str, str], ...]  # (output key used in specs, column stem)
    default_outputs: tuple[str, ...]
    lookback: Callable[[dict], dict[str, int]]  # output key -> warm-up bars
    batch: Callable[[Bars, dict], Values]  # output key -> values (all outputs)
    stream: Callable[[dict], Any]  # a features.streaming object yielding every output, in order
    check: Callable[[dict], list[tuple[str, str]]] = field(default=lambda p: [])  # cross-parameter rules
    # The TA-Lib call pandas-ta makes, made on the arrays: bit-identical to ``batch`` (tested), without
    # pandas-ta's Series round trips (~1 ms per indicator, which is the whole cost on 500 bars).
    direct: Callable[[Bars, dict], Values] | None = None

    def values(self, bars: Bars, params: dict, *, direct: bool = False) -> Values:
        """All outputs; ``direct`` takes the TA-Lib shortcut where there is one."""
        return (self.direct if direct and self.direct is not None else self.batch)(bars, params)

    @property
    def output_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.outputs)

    def clean_params(self, raw: Mapping[str, Any] | None) -> tuple[dict, list[tuple[str, str]]]:
        """Defaults filled in, types canonical; errors as (param name, message)."""
        raw = dict(raw or {})
        known = {p.name for p in self.params}
        errors = [
            (k, f"unknown parameter; {self.name} takes {', '.join(sorted(known)) or 'none'}")
            for k in raw
            if k not in known
        ]
        params: dict[str, Any] = {}
        for p in self.params:
            value, error = p.clean(raw[p.name]) if p.name in raw else (p.default, None)
            if error:
                errors.append((p.name, error))
            params[p.name] = value
        if not errors:
            errors.extend(self.check(params))
        return params, errors

    def resolve(self, params: Mapping[str, Any] | None) -> dict:
        cleaned, errors = self.clean_params(params)
        if errors:
            raise ApplicationError(
                "invalid_params",
                f"Invalid parameters for {self.name}: " + "; ".join(f"{k}: {m}" for k, m in errors),
                {"errors": [{"path": f"params.{k}", "message": m} for k, m in errors]},
            )
        return cleaned

    def column(self, key: str, params: Mapping[str, Any]) -> str:
        stem = dict(self.outputs)[key]
        return "_".join([stem, *(_fmt(params[p.name]) for p in self.params)])

    def warmup(self, params: Mapping[str, Any], outputs: tuple[str, ...] | None = None) -> int:
        """Leading NaN bars of the given outputs; ``params`` complete, as ``resolve`` returns them."""
        lookbacks = self.lookback(dict(params))
        return max(lookbacks[k] for k in (outputs or self.default_outputs))

    def compute(
        self, bars: pd.DataFrame, params: Mapping[str, Any] | None = None, outputs: tuple[str, ...] | None = None
    ) -> pd.DataFrame:
        """Batch values on a frame with float columns open/high/low/close/volume; one column per
        output (default outputs unless ``outputs`` says otherwise), NaN during warm-up."""
        params = self.resolve(params)
        outputs = tuple(outputs or self.default_outputs)
        unknown = [k for k in outputs if k not in self.output_keys]
        if unknown:
            raise ApplicationError(
                "invalid_params",
                f"{self.name} has no output(s) {', '.join(map(str, unknown))}; it has {', '.join(self.output_keys)}.",
            )
        values = self.batch(Bars.from_frame(bars), params)
        return pd.DataFrame({self.column(k, params): values[k] for k in outputs}, index=bars.index)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "params": [p.describe() for p in self.params],
            "outputs": list(self.output_keys),
            "default_outputs": list(self.default_outputs),
        }


# --- batch helpers -------------------------------------------------------------------------------


@functools.cache
def _pandas_ta():
    with warnings.catch_warnings():  # its import-time pandas deprecation notices are not ours to fix
        warnings.simplefilter("ignore")
        import pandas_ta
    return pandas_ta


class _LazyPandasTa:
    """pandas-ta costs ~0.4 s to import (it loads numba): only the batch path pays for it, not a web
    process that merely validates specs."""

    def __getattr__(self, name: str):
        return getattr(_pandas_ta(), name)


ta = _LazyPandasTa()


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _np(series: pd.Series | None, n: int) -> np.ndarray:
    """pandas-ta answers None (not NaNs) when the input is shorter than it wants."""
    if series is None:
        return _nan(n)
    return series.to_numpy(dtype=np.float64, copy=True)


def _pick(frame: pd.DataFrame | None, prefix: str, n: int) -> np.ndarray:
    if frame is None:
        return _nan(n)
    (name,) = [c for c in frame.columns if c.startswith(prefix)]
    return frame[name].to_numpy(dtype=np.float64, copy=True)


def _period(name: str, default: int, minimum: int = 2, help: str = "bars") -> Param:  # noqa: A002
    return Param(name, "int", default, minimum, MAX_PERIOD, help=help)


# --- indicators ----------------------------------------------------------------------------------


def _rsi(b: Bars, p: dict) -> Values:
    return {"rsi": _np(ta.rsi(b.series("close"), length=p["length"], talib=True), len(b))}


def _macd(b: Bars, p: dict) -> Values:
    n = len(b)
    df = ta.macd(b.series("close"), fast=p["fast"], slow=p["slow"], signal=p["signal"], talib=True)
    return {"macd": _pick(df, "MACD_", n), "signal": _pick(df, "MACDs_", n), "hist": _pick(df, "MACDh_", n)}


def bbands_derived(close: np.ndarray, upper: np.ndarray, mid: np.ndarray, lower: np.ndarray):
    """Vector twin of :func:`features.streaming.bbands_derived` (same operations, same order)."""
    span = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        percent_b = np.where(span > st.FLAT * np.abs(mid), (close - lower) / span, 0.5)
        width = np.where(mid != 0.0, span / mid, 0.0)
    nan = np.isnan(mid)
    percent_b[nan] = np.nan
    width[nan] = np.nan
    return percent_b, width


def _bbands(b: Bars, p: dict) -> Values:
    n = len(b)
    df = ta.bbands(b.series("close"), length=p["length"], lower_std=p["std"], upper_std=p["std"], talib=True)
    upper, mid, lower = _pick(df, "BBU_", n), _pick(df, "BBM_", n), _pick(df, "BBL_", n)
    percent_b, width = bbands_derived(b.close, upper, mid, lower)
    return {"upper": upper, "middle": mid, "lower": lower, "percent_b": percent_b, "width": width}


def _atr(b: Bars, p: dict) -> Values:
    out = ta.atr(b.series("high"), b.series("low"), b.series("close"), length=p["length"], talib=True)
    return {"atr": _np(out, len(b))}


def _adx(b: Bars, p: dict) -> Values:
    n = p["length"]
    return {
        "adx": talib.ADX(b.high, b.low, b.close, n),
        "plus_di": talib.PLUS_DI(b.high, b.low, b.close, n),
        "minus_di": talib.MINUS_DI(b.high, b.low, b.close, n),
    }


def _sma(b: Bars, p: dict) -> Values:
    return {"sma": _np(ta.sma(b.series("close"), length=p["length"], talib=True), len(b))}


def _ema(b: Bars, p: dict) -> Values:
    return {"ema": _np(ta.ema(b.series("close"), length=p["length"], talib=True), len(b))}


def _stoch(b: Bars, p: dict) -> Values:
    k, d = talib.STOCH(b.high, b.low, b.close, p["k"], p["smooth_k"], talib.MA_Type.SMA, p["d"], talib.MA_Type.SMA)
    return {"k": k, "d": d}


def _obv(b: Bars, p: dict) -> Values:
    return {"obv": _np(ta.obv(b.series("close"), b.series("volume"), talib=True), len(b))}


# Direct twins of the pandas-ta paths above: the same TA-Lib function with the same arguments.
def _rsi_direct(b: Bars, p: dict) -> Values:
    return {"rsi": talib.RSI(b.close, p["length"])}


def _macd_direct(b: Bars, p: dict) -> Values:
    macd, signal, hist = talib.MACD(b.close, p["fast"], p["slow"], p["signal"])
    return {"macd": macd, "signal": signal, "hist": hist}


def _bbands_direct(b: Bars, p: dict) -> Values:
    upper, mid, lower = talib.BBANDS(b.close, p["length"], p["std"], p["std"], talib.MA_Type.SMA)
    percent_b, width = bbands_derived(b.close, upper, mid, lower)
    return {"upper": upper, "middle": mid, "lower": lower, "percent_b": percent_b, "width": width}


def _atr_direct(b: Bars, p: dict) -> Values:
    return {"atr": talib.ATR(b.high, b.low, b.close, p["length"])}


def _sma_direct(b: Bars, p: dict) -> Values:
    return {"sma": talib.SMA(b.close, p["length"])}


def _ema_direct(b: Bars, p: dict) -> Values:
    return {"ema": talib.EMA(b.close, p["length"])}


def _obv_direct(b: Bars, p: dict) -> Values:
    return {"obv": talib.OBV(b.close, b.volume)}


def _returns_direct(b: Bars, p: dict) -> Values:
    n = p["length"]
    r = b.close / np.roll(b.close, n)
    r[:n] = np.nan
    return {"returns": np.log(r) if p["kind"] == "log" else r - 1}


def _vwap(b: Bars, p: dict) -> Values:
    n = p["length"]
    tp = (b.high + b.low + b.close) / 3.0
    pv = pd.Series(tp * b.volume).rolling(n).sum().to_numpy()
    vol = pd.Series(b.volume).rolling(n).sum().to_numpy()
    mean_tp = pd.Series(tp).rolling(n).sum().to_numpy() / n
    with_volume = pd.Series((b.volume > 0.0).astype(np.float64)).rolling(n).sum().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(with_volume > 0.0, pv / vol, mean_tp)
    out[: n - 1] = np.nan
    return {"vwap": out}


def _returns(b: Bars, p: dict) -> Values:
    fn = ta.log_return if p["kind"] == "log" else ta.percent_return
    return {"returns": _np(fn(b.series("close"), length=p["length"]), len(b))}


def _log_returns(close: np.ndarray) -> np.ndarray:
    out = np.empty_like(close)
    out[:1] = np.nan
    out[1:] = np.log(close[1:] / close[:-1])
    return out


def _rolling_moments_py(x: np.ndarray, p: int, ddof: int):  # pragma: no cover - runs compiled
    n = x.shape[0]
    mean = np.full(n, np.nan)
    var = np.full(n, np.nan)
    shift = 0.0
    s1 = 0.0
    s2 = 0.0
    since = 0
    count = 0
    for i in range(n):
        xi = x[i]
        if count == p:
            d = x[i - p] - shift
            s1 -= d
            s2 -= d * d
        else:
            if count == 0:
                shift = xi
            count += 1
        d = xi - shift
        s1 += d
        s2 += d * d
        since += 1
        if count < p:
            continue
        off = s1 / p
        off2 = off * off
        if since >= p or off2 > 1e4 * (s2 / p - off2):
            window = x[i - p + 1 : i + 1]
            lo = window.min()
            if lo == window.max():
                shift = lo
            else:
                shift = _neumaier(window) / p
            dev = window - shift
            s1 = _neumaier(dev)
            s2 = _neumaier(dev * dev)
            since = 0
        mean[i] = shift + s1 / p
        v = (s2 - s1 * s1 / p) / (p - ddof)
        var[i] = v if v > 0.0 else 0.0
    return mean, var


# the streaming engine's compensated sum, compiled for the batch kernel: one loop serves both
_neumaier = st.neumaier_sum


@functools.cache
def _rolling_moments_kernel():
    """Compiled on first use (and cached on disk by numba), so importing the registry stays cheap."""
    import numba

    global _neumaier
    if not isinstance(_neumaier, numba.core.dispatcher.Dispatcher):
        _neumaier = numba.njit(cache=True)(_neumaier)  # the kernel calls it by its global name
    return numba.njit(cache=True)(_rolling_moments_py)


def rolling_moments(x: np.ndarray, length: int, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and variance; the compiled twin of ``streaming._RollingMoments`` (same
    operations, same order), so batch and streaming values are identical, not merely close."""
    kernel = _rolling_moments_kernel()
    return kernel(np.ascontiguousarray(x, dtype=np.float64), int(length), int(ddof))


def _volatility(b: Bars, p: dict) -> Values:
    out = np.full(len(b), np.nan)
    if len(b) > 1:
        _, var = rolling_moments(_log_returns(b.close)[1:], p["length"], 1)
        out[1:] = np.sqrt(var)
    return {"volatility": out}


def _zscore(b: Bars, p: dict) -> Values:
    mean, var = rolling_moments(b.close, p["length"], 1)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std <= st.FLAT * np.abs(mean), 0.0, (b.close - mean) / std)
    z[np.isnan(mean)] = np.nan
    return {"zscore": z}


def candle_lookback(pattern: str) -> int:
    return int(talib_abstract.Function(CANDLE_PATTERNS[pattern]).lookback)


def _cdl(b: Bars, p: dict) -> Values:
    pattern = p["pattern"]
    if pattern in _PANDAS_TA_OWN_PATTERNS:
        return _cdl_direct(b, p)
    df = ta.cdl_pattern(b.series("open"), b.series("high"), b.series("low"), b.series("close"), name=pattern)
    return {"cdl": _cdl_signs(_pick(df, "CDL_", len(b)), pattern)}


def _cdl_direct(b: Bars, p: dict) -> Values:
    pattern = p["pattern"]
    raw = getattr(talib, CANDLE_PATTERNS[pattern])(b.open, b.high, b.low, b.close).astype(np.float64)
    return {"cdl": _cdl_signs(raw, pattern)}


def _cdl_signs(raw: np.ndarray, pattern: str) -> np.ndarray:
    out = np.sign(raw)
    out[: candle_lookback(pattern)] = np.nan  # TA-Lib writes 0 there, but nothing was evaluated
    return out


def _macd_check(p: dict) -> list[tuple[str, str]]:
    if p["fast"] >= p["slow"]:
        return [("fast", f"must be smaller than slow ({p['slow']}), got {p['fast']}")]
    return []


def _candle_stream(p: dict):
    return st.CandleStream(getattr(talib_stream, CANDLE_PATTERNS[p["pattern"]]), candle_lookback(p["pattern"]))


def _all(n: int, *keys: str) -> dict[str, int]:
    return dict.fromkeys(keys, n)


REGISTRY: dict[str, Indicator] = {
    ind.name: ind
    for ind in (
        Indicator(
            "rsi",
            "Relative Strength Index (Wilder), TA-Lib RSI",
            (_period("length", 14),),
            (("rsi", "rsi"),),
            ("rsi",),
            lambda p: _all(p["length"], "rsi"),
            _rsi,
            lambda p: st.RsiStream(p["length"]),
            direct=_rsi_direct,
        ),
        Indicator(
            "macd",
            "MACD line, signal and histogram, TA-Lib MACD (SMA-seeded EMAs)",
            (_period("fast", 12), _period("slow", 26), _period("signal", 9, minimum=1)),
            (("macd", "macd"), ("signal", "macd_signal"), ("hist", "macd_hist")),
            ("macd", "signal", "hist"),
            lambda p: _all(p["slow"] + p["signal"] - 2, "macd", "signal", "hist"),
            _macd,
            lambda p: st.MacdStream(p["fast"], p["slow"], p["signal"]),
            _macd_check,
            direct=_macd_direct,
        ),
        Indicator(
            "bbands",
            "Bollinger bands (SMA, population std), TA-Lib BBANDS; percent_b = (close - lower) / "
            "(upper - lower), 0.5 on a flat window; width = (upper - lower) / middle",
            (_period("length", 20), Param("std", "float", 2.0, 0.1, 10.0, help="band width in standard deviations")),
            (
                ("upper", "bb_upper"),
                ("middle", "bb_middle"),
                ("lower", "bb_lower"),
                ("percent_b", "bb_percent_b"),
                ("width", "bb_width"),
            ),
            ("upper", "middle", "lower"),
            lambda p: _all(p["length"] - 1, "upper", "middle", "lower", "percent_b", "width"),
            _bbands,
            lambda p: st.BbandsStream(p["length"], p["std"]),
            direct=_bbands_direct,
        ),
        Indicator(
            "atr",
            "Average True Range (Wilder), TA-Lib ATR",
            (_period("length", 14),),
            (("atr", "atr"),),
            ("atr",),
            lambda p: _all(p["length"], "atr"),
            _atr,
            lambda p: st.AtrStream(p["length"]),
            direct=_atr_direct,
        ),
        Indicator(
            "adx",
            "Average Directional Index with +DI/-DI, TA-Lib ADX / PLUS_DI / MINUS_DI",
            (_period("length", 14),),
            (("adx", "adx"), ("plus_di", "plus_di"), ("minus_di", "minus_di")),
            ("adx",),
            lambda p: {"adx": 2 * p["length"] - 1, "plus_di": p["length"], "minus_di": p["length"]},
            _adx,
            lambda p: st.AdxStream(p["length"]),
        ),
        Indicator(
            "sma",
            "Simple moving average of close, TA-Lib SMA",
            (_period("length", 20),),
            (("sma", "sma"),),
            ("sma",),
            lambda p: _all(p["length"] - 1, "sma"),
            _sma,
            lambda p: st.SmaStream(p["length"]),
            direct=_sma_direct,
        ),
        Indicator(
            "ema",
            "Exponential moving average of close (seeded with the SMA), TA-Lib EMA",
            (_period("length", 20),),
            (("ema", "ema"),),
            ("ema",),
            lambda p: _all(p["length"] - 1, "ema"),
            _ema,
            lambda p: st.EmaStream(p["length"]),
            direct=_ema_direct,
        ),
        Indicator(
            "stoch",
            "Slow stochastic %K/%D with SMA smoothing, TA-Lib STOCH(k, smooth_k, SMA, d, SMA)",
            (
                _period("k", 14, minimum=1, help="raw %K window"),
                _period("d", 3, minimum=1, help="%D smoothing of slow %K"),
                _period("smooth_k", 3, minimum=1, help="slow %K smoothing of raw %K"),
            ),
            (("k", "stoch_k"), ("d", "stoch_d")),
            ("k", "d"),
            lambda p: _all(p["k"] + p["d"] + p["smooth_k"] - 3, "k", "d"),
            _stoch,
            lambda p: st.StochStream(p["k"], p["d"], p["smooth_k"]),
        ),
        Indicator(
            "obv",
            "On-balance volume, TA-Lib OBV. Cumulative from the first bar given, so its level depends "
            "on where the data starts: feed models its diff, not its level",
            (),
            (("obv", "obv"),),
            ("obv",),
            lambda p: _all(0, "obv"),
            _obv,
            lambda p: st.ObvStream(),
            direct=_obv_direct,
        ),
        Indicator(
            "vwap",
            "Rolling VWAP of the typical price (h+l+c)/3 over `length` bars. Not session-anchored: "
            "bars carry no session boundaries. A window without volume gives the mean typical price",
            (_period("length", 20, minimum=1),),
            (("vwap", "vwap"),),
            ("vwap",),
            lambda p: _all(p["length"] - 1, "vwap"),
            _vwap,
            lambda p: st.VwapStream(p["length"]),
        ),
        Indicator(
            "returns",
            "Return of close over `length` bars: simple close/close[-n] - 1, or log ln(close/close[-n])",
            (Param("kind", "choice", "simple", choices=("simple", "log")), _period("length", 1, minimum=1)),
            (("returns", "returns"),),
            ("returns",),
            lambda p: _all(p["length"], "returns"),
            _returns,
            lambda p: st.ReturnsStream(p["kind"], p["length"]),
            direct=_returns_direct,
        ),
        Indicator(
            "volatility",
            "Sample standard deviation (ddof=1) of one-bar log returns over `length` bars; not annualised",
            (_period("length", 20),),
            (("volatility", "volatility"),),
            ("volatility",),
            lambda p: _all(p["length"], "volatility"),
            _volatility,
            lambda p: st.VolatilityStream(p["length"]),
        ),
        Indicator(
            "zscore",
            "(close - mean) / std of close over `length` bars (sample std, ddof=1); 0 on a flat window",
            (_period("length", 20),),
            (("zscore", "zscore"),),
            ("zscore",),
            lambda p: _all(p["length"] - 1, "zscore"),
            _zscore,
            lambda p: st.ZscoreStream(p["length"]),
        ),
        Indicator(
            "cdl",
            "TA-Lib candlestick pattern as -1 (bearish) / 0 / +1 (bullish), from TA-Lib's -100/0/+100",
            (Param("pattern", "choice", "engulfing", choices=tuple(CANDLE_PATTERNS)),),
            (("cdl", "cdl"),),
            ("cdl",),
            lambda p: _all(candle_lookback(p["pattern"]), "cdl"),
            _cdl,
            _candle_stream,
            direct=_cdl_direct,
        ),
    )
}


def get_indicator(name: str) -> Indicator:
    return REGISTRY[name]


def registry_describe() -> list[dict]:
    """The registry as data, for an API or a form: names, parameters with ranges, outputs."""
    return [ind.describe() for ind in REGISTRY.values()]
