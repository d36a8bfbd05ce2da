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


# --- batch jobs --------------------------------------------------------------------------------------

_ANALYSES = (("risk", "Risk"), ("anomaly", "Anomaly"), ("forecast", "Forecast"), ("valuation", "Valuation"))
_BATCH_STATES = (("pending", "Pending"), ("running", "Running"), ("done", "Done"), ("failed", "Failed"))
BATCH_LIST = ListSpec(
    "batches", "batch jobs",
    filters=(Choice("analysis", "Analysis", _ANALYSES), Choice("state", "State", _BATCH_STATES, field="status")),
)  # fmt: skip


def _batch_form(data, symbols):
    from django import forms

    options = [(s, s) for s in symbols]

    class BatchForm(forms.Form):
        analysis = forms.ChoiceField(choices=_ANALYSES)
        symbols = forms.MultipleChoiceField(choices=options, required=False,
                                            widget=forms.CheckboxSelectMultiple)  # fmt: skip
        all = forms.BooleanField(required=False, label="All instruments")

        def clean(self):
            d = super().clean()
            if not d.get("all") and not d.get("symbols"):
                raise forms.ValidationError("Pick at least one instrument (or all).")
            return d

    return BatchForm(data)


@tenant_page()
def risk_batches(request):
    from django.contrib import messages
    from django.shortcuts import redirect

    from marketdata.selectors import instrument_list
    from riskcore import services
    from riskcore.models import BatchJob
    from tenants.models import Role

    from .access import can, forbidden

    symbols = [i.symbol for i in instrument_list()]
    form = _batch_form(request.POST or None, symbols)
    status = 200
    if request.method == "POST":
        if not can(request, Role.ANALYST):
            return forbidden(request, Role.ANALYST)
        status = 400
        if form.is_valid():
            d = form.cleaned_data
            try:
                job = services.batch_create(analysis=d["analysis"], symbols=symbols if d["all"] else d["symbols"],
                                            params={}, created_by=str(request.user.pk))  # fmt: skip
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Batch {job.pk} ({job.analysis}, {len(job.symbols)} symbols) started.")
                return redirect("dashboard:risk-batch", batch_id=job.pk)
    context = {"lv": BATCH_LIST.apply(request, BatchJob.objects.all()), "form": form,
               "can_run": can(request, Role.ANALYST), "symbols": symbols}  # fmt: skip
    return render(request, "dashboard/risk_batches.html", context, status=status)


def _headline(analysis: str, r: dict) -> str:
    if "error" in r:
        return ""
    try:
        if analysis == "risk":
            return f"volatility {r['volatility'] * 100:.2f} %" if r.get("volatility") is not None else "–"
        if analysis == "anomaly":
            return f"{len(r.get('anomalies', []))} anomalies"
        if analysis == "forecast":
            v = r.get("expected_return", r.get("mean"))
            return f"expected return {v * 100:.2f} %" if isinstance(v, int | float) else "forecast ready"
        v = r.get("fair_value", r.get("value"))
        return f"fair value {v:.2f}" if isinstance(v, int | float) else "valuation ready"
    except (TypeError, KeyError):
        return "–"


@tenant_page()
def risk_batch(request, batch_id: int):
    from riskcore.models import BatchJob

    from .views import _is_htmx

    job = BatchJob.objects.filter(pk=batch_id).first()
    if job is None:
        raise Http404("no such batch")
    rows = [{"symbol": s, "error": (r.get("error") or {}).get("code", ""), "headline": _headline(job.analysis, r)}
            for s, r in job.results.items()]  # fmt: skip
    running = job.status in (BatchJob.Status.PENDING, BatchJob.Status.RUNNING)
    context = {"job": job, "rows": rows, "running": running}
    if _is_htmx(request):
        return render(request, "dashboard/_risk_batch_panel.html", context)
    return render(request, "dashboard/risk_batch.html", context)
