"""The dashboard's Risk pages (under Market data): every instrument with its headline risk, and one
instrument's figures, drawdown chart, anomalies and return forecast. Figures come from riskcore's
selectors, the same ones the API serves."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from api.errors import ApplicationError, NotFound

from .access import tenant_page
from .paging import Choice, ListSpec, Search

INSTRUMENT_LIST = ListSpec("risk", "instruments", search=Search(("symbol", "name"), "Symbol", "e.g. BTC-USD"))
_KINDS = (("bar_return", "Return"), ("bar_volume", "Volume"), ("bar_isolation", "Isolation"))
ANOMALY_LIST = ListSpec("anomalies", "anomalies", filters=(Choice("kind", "Kind", _KINDS),), prefix="a_")


def _drawdown_chart(points: list[dict], width: int = 720, height: int = 160) -> dict | None:
    """The drawdown curve as an SVG polyline: 0 at the top, the worst drawdown at the bottom."""
    if len(points) < 2:
        return None
    worst = min(p["drawdown"] for p in points) or -1.0
    n = len(points) - 1
    xy = " ".join(
        f"{round(i / n * (width - 10) + 5, 1)},{round(5 + p['drawdown'] / worst * (height - 10), 1)}"
        for i, p in enumerate(points)
    )
    area = f"5,5 {xy} {width - 5},5"
    return {"points": xy, "area": area, "width": width, "height": height, "worst_pct": worst * 100,
            "start": points[0]["ts"][:10], "end": points[-1]["ts"][:10]}  # fmt: skip


@tenant_page()
def risk_index(request):
    from marketdata.selectors import instrument_list
    from riskcore import selectors

    lv = INSTRUMENT_LIST.apply(request, instrument_list())
    page_symbols = [i.symbol for i in lv.rows]
    headlines = {r["symbol"]: r for r in selectors.risk_headlines(symbols=page_symbols)}
    rows = []
    for i in lv.rows:
        h = headlines.get(i.symbol, {})
        pct = {f"{k}_pct": h[k] * 100 for k in ("volatility", "var95", "max_drawdown") if h.get(k) is not None}
        rows.append({"instrument": i, **h, **pct})
    try:
        portfolio = selectors.portfolio_risk(window=250)
    except ApplicationError as exc:
        portfolio = {"error": exc.message}
    return render(request, "dashboard/risk_index.html", {"lv": lv, "rows": rows, "portfolio": portfolio})


@tenant_page()
def risk_detail(request, symbol: str):
    from marketdata.selectors import instrument_get
    from riskcore import selectors

    try:
        instrument = instrument_get(symbol=symbol)
    except NotFound as exc:
        raise Http404("no such instrument") from exc
    risk = forecast = None
    risk_error = forecast_error = ""
    try:
        risk = selectors.instrument_risk(symbol=instrument.symbol, window=500, drawdown_points=200)
    except ApplicationError as exc:
        risk_error = exc.message
    try:
        forecast = selectors.instrument_forecast(symbol=instrument.symbol)
    except ApplicationError as exc:
        forecast_error = exc.message
    var_rows = []
    if risk:
        for level, v in risk["var"].items():
            var_rows.append({"level": level, **{k: (x * 100 if x is not None else None) for k, x in v.items()}})
    anomalies = ANOMALY_LIST.apply(request, selectors.anomaly_list(symbol=instrument.symbol))
    context = {
        "instrument": instrument, "risk": risk, "risk_error": risk_error, "var_rows": var_rows,
        "chart": _drawdown_chart(risk["drawdown"]) if risk else None,
        "forecast": forecast, "forecast_error": forecast_error, "anomalies": anomalies,
    }  # fmt: skip
    return render(request, "dashboard/risk.html", context)
