"""Next-bar return forecast with an interval, and an honest check of that interval.

Features per bar (known at its close): log returns of the last 1, 2, 3 and 5 bars, the sd of log
returns over 10 and 20 bars, and the log volume against its 20-bar mean. Target: the log return
over the next ``horizon`` bars. Linear quantile regression (scikit-learn ``QuantileRegressor``,
no penalty, HiGHS) at the interval's lower and upper quantiles and the median.

Evaluation: fit on the first 70 % of rows, score the last 30 % (never seen in the fit) — share of
targets inside the interval (coverage) and its mean width, next to a naive interval: the same
quantiles of the training targets, unconditionally. Then refit on every row and forecast the next
``horizon`` bars from the latest one."""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ("r1", "r2", "r3", "r5", "sd10", "sd20", "vol_z")
TRAIN_SHARE = 0.7


def feature_frame(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.Series]:
    logc = np.log(frame["close"])
    r = logc.diff()
    lv = np.log1p(frame["volume"])
    f = pd.DataFrame(
        {
            "r1": r,
            "r2": logc.diff(2),
            "r3": logc.diff(3),
            "r5": logc.diff(5),
            "sd10": r.rolling(10).std(),
            "sd20": r.rolling(20).std(),
            "vol_z": lv - lv.rolling(20).mean(),
        },  # fmt: skip
        index=frame.index,
    )
    target = logc.shift(-horizon) - logc
    return f, target


def _fit(x: np.ndarray, y: np.ndarray, q: float):
    from sklearn.linear_model import QuantileRegressor

    return QuantileRegressor(quantile=q, alpha=0.0, solver="highs").fit(x, y)


def _pinball(y: np.ndarray, pred: np.ndarray, q: float) -> float:
    d = y - pred
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def forecast(frame: pd.DataFrame, *, horizon: int = 1, level: float = 0.9) -> dict:
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    feats, target = feature_frame(frame, horizon)
    ok = feats.notna().all(axis=1) & target.notna()
    x, y = feats[ok].to_numpy(), target[ok].to_numpy()
    n_train = int(len(y) * TRAIN_SHARE)
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    # scale features on the training rows only
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    sd[sd == 0] = 1.0
    models = {q: _fit((xtr - mu) / sd, ytr, q) for q in (lo_q, 0.5, hi_q)}
    pred = {q: m.predict((xte - mu) / sd) for q, m in models.items()}
    lo, hi = np.minimum(pred[lo_q], pred[hi_q]), np.maximum(pred[lo_q], pred[hi_q])
    naive_lo, naive_hi, naive_med = (float(np.quantile(ytr, q)) for q in (lo_q, hi_q, 0.5))
    evaluation = {
        "train_rows": int(n_train),
        "test_rows": int(len(yte)),
        "model": {
            "coverage": float(np.mean((yte >= lo) & (yte <= hi))),
            "mean_width": float(np.mean(hi - lo)),
            "median_mae": float(np.mean(np.abs(yte - pred[0.5]))),
            "pinball_lower": _pinball(yte, pred[lo_q], lo_q),
            "pinball_upper": _pinball(yte, pred[hi_q], hi_q),
        },
        "naive": {
            "interval": [naive_lo, naive_hi],
            "coverage": float(np.mean((yte >= naive_lo) & (yte <= naive_hi))),
            "mean_width": naive_hi - naive_lo,
            "median_mae": float(np.mean(np.abs(yte - naive_med))),
            "pinball_lower": _pinball(yte, np.full(len(yte), naive_lo), lo_q),
            "pinball_upper": _pinball(yte, np.full(len(yte), naive_hi), hi_q),
        },
        "nominal_coverage": level,
    }
    # refit on everything, forecast from the latest complete feature row
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    latest = feats.dropna().iloc[[-1]].to_numpy()
    full = {q: float(_fit((x - mu) / sd, y, q).predict((latest - mu) / sd)[0]) for q in (lo_q, 0.5, hi_q)}
    lo_r, hi_r = min(full[lo_q], full[hi_q]), max(full[lo_q], full[hi_q])
    price = float(frame["close"].iloc[-1])
    return {
        "horizon": horizon,
        "level": level,
        "from_ts": feats.dropna().index[-1].isoformat(),
        "last_close": price,
        "log_return": {"median": full[0.5], "lower": lo_r, "upper": hi_r},
        "price": {"median": price * np.exp(full[0.5]), "lower": price * np.exp(lo_r), "upper": price * np.exp(hi_r)},
        "evaluation": evaluation,
        "method": "linear quantile regression on lagged returns, volatility and volume (features: "
        + ", ".join(FEATURES)
        + f"); interval = [{lo_q:.3f}, {hi_q:.3f}] quantiles; evaluated on the last 30 % of rows after a "
        "fit on the first 70 %, next to the training targets' unconditional quantiles (naive)",
    }
