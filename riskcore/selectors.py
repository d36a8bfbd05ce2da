"""Reads: risk per instrument and for the tenant's paper portfolio (computed from bars on request)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from api.errors import ApplicationError
from marketdata.models import TIMEFRAME_SECONDS, Instrument
from marketdata.selectors import bars_frame, instrument_get, only_timeframe

from . import metrics

DEFAULT_WINDOW = 500
MIN_BARS = 30

METHOD = {
    "returns": "simple close-to-close returns per bar",
    "var": "one-bar loss as a positive fraction of value; historical = empirical quantile (linear), "
    "CVaR = mean of returns at or beyond it; parametric = Gaussian with sample mean and sd (ddof=1)",
    "volatility": "sample sd of returns x sqrt(bars per year); 252 days for equity/index/future, 365 otherwise",
    "beta": "cov(r, r_benchmark) / var(r_benchmark) over shared bar times",
    "max_drawdown": "largest fall of the close from its running peak",
    "liquidity": "avg_dollar_volume = mean(close x volume); amihud = mean(|r| / dollar volume) x 1e6",
}


def _frame(instrument: Instrument, timeframe: str | None, window: int) -> tuple[str, pd.DataFrame]:
    tf = timeframe or only_timeframe(instrument=instrument, hint="pass ?timeframe=")
    frame = bars_frame(instrument=instrument, timeframe=tf, limit=window)
    return tf, frame


def _require_bars(instrument: Instrument, tf: str, frame: pd.DataFrame) -> None:
    if len(frame) < MIN_BARS:
        raise ApplicationError(
            "insufficient_bars",
            f"{instrument.symbol} has {len(frame)} bars in {tf}; risk needs at least {MIN_BARS}.",
            {"bars": len(frame), "required": MIN_BARS, "timeframe": tf},
        )


def instrument_risk(
    *,
    symbol: str,
    timeframe: str | None = None,
    window: int = DEFAULT_WINDOW,
    benchmark: str | None = None,
    drawdown_points: int = 0,
) -> dict:
    instrument = instrument_get(symbol=symbol)
    tf, frame = _frame(instrument, timeframe, window)
    _require_bars(instrument, tf, frame)
    bench_returns = None
    bench_symbol = None
    if benchmark:
        bench = instrument_get(symbol=benchmark)
        bench_symbol = bench.symbol
        bframe = bars_frame(instrument=bench, timeframe=tf, limit=window)
        joined = frame[["close"]].join(bframe[["close"]].rename(columns={"close": "b"}), how="inner")
        if len(joined) < MIN_BARS:
            raise ApplicationError(
                "insufficient_overlap",
                f"{instrument.symbol} and {bench.symbol} share {len(joined)} bars in {tf}; beta needs {MIN_BARS}.",
                {"shared_bars": len(joined), "required": MIN_BARS},
            )
        bench_returns = (joined["close"].to_numpy(), metrics.simple_returns(joined["b"].to_numpy()))
    close, volume = frame["close"].to_numpy(), frame["volume"].to_numpy()
    periods = metrics.periods_per_year(TIMEFRAME_SECONDS[tf], asset_class=instrument.asset_class)
    figures = metrics.risk_figures(close, volume, periods=periods)
    if bench_returns is not None:
        figures["beta"] = metrics.beta(metrics.simple_returns(bench_returns[0]), bench_returns[1])
    out = {
        "symbol": instrument.symbol,
        "timeframe": tf,
        "window": {"bars": len(frame), "first": frame.index[0].isoformat(), "last": frame.index[-1].isoformat()},
        "periods_per_year": periods,
        "benchmark": bench_symbol,
        **figures,
        "method": METHOD,
    }
    if drawdown_points:
        out["drawdown"] = _drawdown_points(frame, drawdown_points)
    return out


def _drawdown_points(frame: pd.DataFrame, points: int) -> list[dict]:
    dd = metrics.drawdown_series(frame["close"].to_numpy())
    step = max(1, len(dd) // points)
    idx = list(range(0, len(dd), step))
    if idx[-1] != len(dd) - 1:
        idx.append(len(dd) - 1)
    return [{"ts": frame.index[i].isoformat(), "drawdown": float(dd[i])} for i in idx]


def portfolio_risk(*, timeframe: str | None = None, window: int = DEFAULT_WINDOW) -> dict:
    """Risk of the paper ledger's open positions held as they are now: the P&L per bar is
    sum(qty x close change) over the bars every instrument shares; returns are that P&L over
    the gross exposure (sum |qty x last price|). VaR/CVaR also in money."""
    from intelligence.models import Position

    positions = [p for p in Position.objects.exclude(qty=0).order_by("symbol")]
    if not positions:
        return {"positions": [], "gross_exposure": 0.0, "net_exposure": 0.0, "risk": None, "method": METHOD}
    closes = {}
    tfs = set()
    rows = []
    for p in positions:
        inst = Instrument.objects.filter(symbol=p.symbol).first()
        if inst is None:
            continue
        tf, frame = _frame(inst, timeframe, window)
        tfs.add(tf)
        closes[p.symbol] = frame["close"]
        price = p.last_price or (float(frame["close"].iloc[-1]) if len(frame) else 0.0)
        rows.append({"symbol": p.symbol, "qty": p.qty, "price": price, "exposure": p.qty * price})
    if len(tfs) > 1:
        raise ApplicationError(
            "timeframe_required",
            "Positions have bars in several timeframes; pass ?timeframe=.",
            {"timeframes": sorted(tfs)},
        )
    gross = float(sum(abs(r["exposure"]) for r in rows))
    net = float(sum(r["exposure"] for r in rows))
    for r in rows:
        r["weight"] = r["exposure"] / gross if gross else 0.0
    table = pd.DataFrame(closes).dropna()
    out = {"positions": rows, "gross_exposure": gross, "net_exposure": net, "method": METHOD, "risk": None}
    if len(table) < MIN_BARS or gross == 0:
        out["risk"] = None
        out["note"] = f"{len(table)} shared bars; at least {MIN_BARS} needed"
        return out
    qty = np.array([next(r["qty"] for r in rows if r["symbol"] == s) for s in table.columns])
    pnl = (table.diff().iloc[1:].to_numpy() * qty).sum(axis=1)
    equity = gross + np.concatenate([[0.0], np.cumsum(pnl)])
    tf = tfs.pop()
    periods = metrics.periods_per_year(TIMEFRAME_SECONDS[tf])
    figures = metrics.risk_figures(equity, np.zeros_like(equity), periods=periods)
    figures.pop("liquidity")
    # returns over the constant gross exposure, not over the moving equity
    r = pnl / gross
    figures["volatility"] = metrics.volatility(r, periods=periods)
    for level in metrics.LEVELS:
        key = f"{round(level * 100)}"
        h, p = metrics.historical_var(r, level), metrics.parametric_var(r, level)
        figures["var"][key] = {
            "historical_var": h[0],
            "historical_cvar": h[1],
            "parametric_var": p[0],
            "parametric_cvar": p[1],
            "historical_var_money": h[0] * gross,
            "parametric_var_money": p[0] * gross,
        }
    out["timeframe"] = tf
    out["shared_bars"] = len(table)
    out["risk"] = figures
    return out


def risk_headlines(*, symbols: list[str] | None = None, window: int = 250) -> list[dict]:
    """A line per instrument (dashboard index): volatility, 95 % historical VaR, max drawdown;
    instruments without a single timeframe or enough bars get their reason instead."""
    rows = []
    qs = Instrument.objects.order_by("symbol")
    if symbols is not None:
        qs = qs.filter(symbol__in=symbols)
    for inst in qs:
        try:
            r = instrument_risk(symbol=inst.symbol, window=window)
        except ApplicationError as exc:
            rows.append({"symbol": inst.symbol, "error": exc.code})
            continue
        rows.append(
            {
                "symbol": inst.symbol,
                "timeframe": r["timeframe"],
                "volatility": r["volatility"],
                "var95": r["var"]["95"]["historical_var"],
                "max_drawdown": r["max_drawdown"],
            }
        )
    return rows


# --- anomalies, forecasts, valuation, batch jobs --------------------------------------------------


def anomaly_list(*, symbol: str | None = None, kind: str | None = None):
    from .models import Anomaly

    qs = Anomaly.objects.all()
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-ts", "-id")


def anomaly_dict(a) -> dict:
    return {
        "id": a.pk, "kind": a.kind, "symbol": a.symbol, "timeframe": a.timeframe, "ts": a.ts.isoformat(),
        "value": a.value, "score": a.score, "method": a.method, "detail": a.detail,
    }  # fmt: skip


FORECAST_MIN_BARS = 120


def instrument_forecast(
    *, symbol: str, timeframe: str | None = None, window: int = 1000, horizon: int = 1, level: float = 0.9
) -> dict:
    from . import forecast

    instrument = instrument_get(symbol=symbol)
    tf, frame = _frame(instrument, timeframe, window)
    if len(frame) < FORECAST_MIN_BARS:
        raise ApplicationError(
            "insufficient_bars",
            f"{instrument.symbol} has {len(frame)} bars in {tf}; a forecast needs at least {FORECAST_MIN_BARS}.",
            {"bars": len(frame), "required": FORECAST_MIN_BARS, "timeframe": tf},
        )
    return {"symbol": instrument.symbol, "timeframe": tf, "bars": len(frame),
            **forecast.forecast(frame, horizon=horizon, level=level)}  # fmt: skip


def _latest_close(symbol: str) -> float | None:
    from marketdata.models import Bar

    bar = Bar.objects.filter(instrument__symbol=symbol).order_by("-ts").values_list("close", flat=True).first()
    return float(bar) if bar is not None else None


def instrument_valuation(*, symbol: str) -> dict:
    from . import valuation
    from .models import Fundamentals

    instrument = instrument_get(symbol=symbol)
    fund = Fundamentals.objects.filter(symbol=instrument.symbol).first()
    if fund is None:
        raise ApplicationError(
            "no_fundamentals", f"No fundamentals posted for {instrument.symbol}; POST /api/v1/fundamentals/.",
            {"symbol": instrument.symbol}, status=404,
        )  # fmt: skip

    def row(f, price):
        m = valuation.multiples(price=price, shares=f.shares_outstanding, earnings=f.earnings, book=f.book_value,
                                dividends=f.dividends)  # fmt: skip
        return {"symbol": f.symbol, "sector": f.sector, "price": price, **m}

    price = _latest_close(instrument.symbol)
    if price is None:
        raise ApplicationError("insufficient_bars", f"{instrument.symbol} has no bars to price it.", {"bars": 0})
    subject = row(fund, price)
    others = []
    for f in Fundamentals.objects.exclude(symbol=instrument.symbol):
        p = _latest_close(f.symbol)
        if p is not None:
            others.append(row(f, p))
    same = [o for o in others if fund.sector and o["sector"] == fund.sector]
    peers, basis = (same, "sector") if same else (others, "all")
    if not peers:
        raise ApplicationError(
            "no_peers",
            "No other instrument has fundamentals and a price to compare with.",
            {"symbol": instrument.symbol},
        )
    return {
        **subject,
        "as_of": fund.as_of.isoformat() if fund.as_of else None,
        "peers": [{k: p[k] for k in ("symbol", "sector", "price", "pe", "pb")} for p in peers],
        "peer_basis": basis,
        **valuation.relative_value(subject, peers),
        "method": (valuation.__doc__ or "").strip(),
    }


def batch_get(*, batch_id: int):
    from api.errors import NotFound

    from .models import BatchJob

    job = BatchJob.objects.filter(pk=batch_id).first()
    if job is None:
        raise NotFound("batch job")
    return job
