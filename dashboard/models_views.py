"""The dashboard's Models area: train (with live progress), the registry, version reports, and
deploy / rollback for admins. Every rule lives in models_registry's services; these views only
render and forward."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from api.errors import ApplicationError, NotFound
from models_registry.models import JobState, VersionStatus
from tenants.models import Role

from .access import can, forbidden, start_form, tenant_page
from .forms import DeployForm, RollbackForm, TrainForm
from .paging import Choice, Dates, ListSpec, Search
from .views import _is_htmx


def _or_404(selector, **kwargs):
    try:
        return selector(**kwargs)
    except NotFound as exc:
        raise Http404(exc.message) from exc


MODEL_LIST = ListSpec(
    "models",
    "models",
    search=Search(("name", "description"), "Name or description"),
    filters=(
        Choice("deployed", "Deployed", (("production", "In production"), ("challenger", "Has a challenger"),
                                        ("none", "Not deployed")),
               when={"production": Q(aliases__name="production"), "challenger": Q(aliases__name="challenger"),
                     "none": Q(aliases__isnull=True)}),
    ),
)  # fmt: skip
JOB_LIST = ListSpec(
    "jobs",
    "training jobs",
    search=Search(("model_name", "created_by"), "Model or person"),
    filters=(Choice("state", "State", JobState.choices), Dates("created_at", "Started")),
    prefix="job_",
)
VERSION_LIST = ListSpec(
    "versions",
    "versions",
    search=Search(("symbol", "timeframe"), "Symbol or timeframe"),
    filters=(
        Choice.either("verdict", "Verdict", ("edge", "Edge"), ("no-edge", "No edge"), Q(no_edge=False)),
        Choice("status", "Status", VersionStatus.choices),
        Dates("created_at", "Trained"),
    ),
)  # fmt: skip

ALIAS_HISTORY_LIST = ListSpec(
    "alias-history",
    "alias moves",
    search=Search(("reason", "actor"), "Reason or person"),
    filters=(
        Choice("alias", "Alias", (("production", "production"), ("challenger", "challenger"))),
        Choice("action", "Action", [(a, a) for a in ("deploy", "rollback", "assign", "remove", "retrain")]),
        Dates("at", "Moved"),
    ),
    prefix="h_",
)


@tenant_page()
def models_home(request):
    from marketdata import selectors as md
    from models_registry import selectors, services

    form = TrainForm(request.POST or None)

    def start(d):
        target = {"kind": d["target"], "horizon": d["horizon"]}
        if d["target"] == "ternary":
            target.update(dead_band=(d["dead_band"] or 0) / 100, dead_band_unit="pct")
        elif d["target"] == "rl":
            target = {"kind": "rl", "algo": d["rl_algo"] or "q_learning"}
        job, _ = services.training_job_create(
            tenant=request.tenant, actor=request.user, model_name=d["model"], symbol=d["symbol"],
            timeframe=d["timeframe"], feature_set=d["feature_set"], target=target, families=d["families"] or None,
            n_trials=d["n_trials"],
        )  # fmt: skip
        return job, f"Training job started for {job.model_name}.", reverse("dashboard:training-job", args=[job.pk])

    response, status = start_form(request, form, start)
    if response is not None:
        return response
    context = {
        "models": MODEL_LIST.apply(request, selectors.model_list()),
        "jobs": JOB_LIST.apply(request, selectors.job_list()),
        "form": form,
        "instruments": list(md.instrument_list()),
        "can_train": can(request, Role.ANALYST),
    }
    latest = selectors.latest_versions(models=context["models"].rows)
    for model in context["models"].rows:
        model.alias_list = sorted((a.name, a.version.version) for a in model.aliases.all())
        model.latest = latest.get(model.pk)
    return render(request, "dashboard/models.html", context, status=status)


@tenant_page()
def training_job(request, job_id):
    from models_registry import selectors

    job = _or_404(selectors.job_get, job_id=job_id)
    version = getattr(job, "model_version", None) if job.state == "succeeded" else None
    context = {
        "job": job,
        "chart": _trials_chart(job.trials),
        "rl_chart": _rl_chart(version.report) if version is not None else None,
        "log": job.log.splitlines()[-30:],
    }
    template = "dashboard/_training_job_panel.html" if _is_htmx(request) else "dashboard/training_job.html"
    return render(request, template, context)


def _polyline(values: list[float], lo: float, hi: float, width: int, height: int) -> str:
    span = (hi - lo) or 1.0
    n = max(len(values) - 1, 1)
    return " ".join(
        f"{round(i / n * (width - 10) + 5, 1)},{round(height - 5 - (v - lo) / span * (height - 10), 1)}"
        for i, v in enumerate(values)
    )


def _rl_chart(report: dict | None, width: int = 600, height: int = 160) -> dict | None:
    """An RL version's curves as SVG coordinates: total reward per training episode, and the
    walk-forward out-of-sample equity of the policy against buy & hold (same scale)."""
    curves = (report or {}).get("curves") or {}
    if (report or {}).get("kind") != "rl" or not curves.get("episode_reward") or not curves.get("oos_equity"):
        return None
    ep = [float(x) for x in curves["episode_reward"]]
    lo, hi = min(min(ep), 0.0), max(max(ep), 0.0)
    policy, hold = [float(x) for x in curves["oos_equity"]], [float(x) for x in curves.get("buy_and_hold_equity") or []]
    elo, ehi = min(policy + hold + [1.0]), max(policy + hold + [1.0])

    def y(v: float, a: float, b: float) -> float:
        return round(height - 5 - (v - a) / ((b - a) or 1.0) * (height - 10), 1)

    episodes = {"points": _polyline(ep, lo, hi, width, height), "lo": min(ep), "hi": max(ep), "count": len(ep)}
    equity = {
        "policy": _polyline(policy, elo, ehi, width, height),
        "hold": _polyline(hold, elo, ehi, width, height),
        "one": y(1.0, elo, ehi),
        "policy_end": policy[-1],
        "hold_end": hold[-1] if hold else None,
    }
    return {
        "width": width,
        "height": height,
        "no_edge": bool(report.get("no_edge")),
        "episodes": {**episodes, "zero": y(0.0, lo, hi)},
        "equity": equity,
    }


def _trials_chart(trials: list[dict], width: int = 600, height: int = 160) -> dict | None:
    """Each finished trial's score (a dot) and the best so far (a line), as SVG coordinates."""
    scored = [t for t in trials if t.get("score") is not None]
    if not scored:
        return None
    scores = [t["score"] for t in scored]
    lo, hi = min(scores), max(scores)
    span = (hi - lo) or 1.0
    n = max(t["number"] for t in scored) or 1
    dots, best, line = [], None, []
    for t in scored:
        x = round(t["number"] / n * (width - 10) + 5, 1)
        y = round(height - 5 - (t["score"] - lo) / span * (height - 10), 1)
        dots.append({"x": x, "y": y, "family": t.get("family", ""), "score": t["score"], "number": t["number"]})
        if best is None or t["score"] < best:
            best = t["score"]
        line.append(f"{x},{round(height - 5 - (best - lo) / span * (height - 10), 1)}")
    return {"dots": dots, "best_line": " ".join(line), "width": width, "height": height, "lo": lo, "hi": hi}


@tenant_page()
def model_detail(request, name: str):
    from models_registry import selectors, services

    model = _or_404(selectors.model_get, name=name)
    deploy_form, rollback_form = DeployForm(prefix="deploy"), RollbackForm(prefix="rollback")
    status = 200
    if request.method == "POST":
        if not can(request, Role.ADMIN):
            return forbidden(request, Role.ADMIN)
        status = 400
        action = request.POST.get("action")
        try:
            if action == "deploy":
                deploy_form = DeployForm(request.POST, prefix="deploy")
                if deploy_form.is_valid():
                    d = deploy_form.cleaned_data
                    version = selectors.version_get(model=model, version=d["version"])
                    alias = d["alias"] or "production"
                    services.model_deploy(
                        model=model, version=version, alias=alias, reason=d["reason"], actor=request.user
                    )
                    messages.success(request, f"{alias} now points at {version.ref}.")
                    return redirect("dashboard:model", name=model.name)
            elif action in ("ab_promote", "ab_abort"):
                from intelligence import learning

                if action == "ab_promote":
                    alias = learning.ab_promote(
                        model=model, actor=request.user, reason="A/B: promoted from the dashboard"
                    )
                    messages.success(request, f"Challenger promoted: production is now {alias.version.ref}.")
                else:
                    learning.ab_abort(model=model, actor=request.user, reason="A/B: aborted from the dashboard")
                    messages.success(request, "A/B test aborted: all traffic is back on production.")
                return redirect("dashboard:model", name=model.name)
            elif action == "rollback":
                rollback_form = RollbackForm(request.POST, prefix="rollback")
                if rollback_form.is_valid():
                    d = rollback_form.cleaned_data
                    version = selectors.version_get(model=model, version=d["version"]) if d["version"] else None
                    alias = services.model_rollback(
                        model=model, version=version, reason=d["reason"], actor=request.user
                    )
                    messages.success(request, f"production rolled back to {alias.version.ref}.")
                    return redirect("dashboard:model", name=model.name)
        except ApplicationError as exc:
            if action in ("ab_promote", "ab_abort"):
                messages.error(request, exc.message)
                return redirect("dashboard:model", name=model.name)
            form = deploy_form if action == "deploy" else rollback_form
            form.add_error(None, exc.message)
            status = exc.status
    versions = VERSION_LIST.apply(
        request, selectors.version_list(model=model).defer(None).defer("artifact", "reference")
    )
    ab = _ab(model)
    for v in versions.rows:
        v.oos = (v.report or {}).get("oos") or {}
        v.best_baseline = _best_baseline(v.report or {})
    context = {
        "model": model,
        "aliases": selectors.alias_map(model=model),
        "versions": versions,
        "history": ALIAS_HISTORY_LIST.apply(request, selectors.alias_history(model=model, limit=None)),
        "ab": ab,
        "ab_rows": [("production", ab["production"]), ("challenger", ab["challenger"])],
        "production_share": 100 - (ab["challenger_percent"] if ab["challenger"] else 0),
        "policy": model.deploy_policy or {},
        "deploy_form": deploy_form,
        "rollback_form": rollback_form,
        "can_deploy": can(request, Role.ADMIN),
        "api_url": reverse("model-detail", kwargs={"name": model.name}),
    }
    return render(request, "dashboard/model.html", context, status=status)


def _ab(model) -> dict:
    """Live accuracy of production (and the challenger, in an A/B test) from resolved decisions."""
    from intelligence import learning

    return learning.ab_metrics(model, window=500)


def _best_baseline(report: dict) -> dict | None:
    baselines = report.get("baselines") or {}
    scored = [(name, b.get("accuracy")) for name, b in baselines.items() if isinstance(b, dict)]
    scored = [(n, a) for n, a in scored if a is not None]
    if not scored:
        return None
    name, accuracy = max(scored, key=lambda kv: kv[1])
    return {"name": name, "accuracy": accuracy}


@tenant_page()
def model_version(request, name: str, version: int):
    from models_registry import selectors

    model = _or_404(selectors.model_get, name=name)
    v = _or_404(selectors.version_get, model=model, version=version)
    report = v.report or {}
    oos = report.get("oos") or {}
    baselines = report.get("baselines") or {}
    metric_names = [k for k, val in oos.items() if isinstance(val, int | float)]
    rows = [
        {
            "metric": k,
            "model": oos.get(k),
            "baselines": [(b, (baselines[b] or {}).get(k)) for b in baselines],
        }
        for k in metric_names
    ]
    importance = report.get("importance") or {}
    names = importance.get("features") or []
    gain = dict(zip(names, importance.get("gain") or [], strict=False))
    top = sorted(gain.items(), key=lambda kv: -(kv[1] or 0))[:15]
    peak = max((val or 0 for _, val in top), default=1) or 1
    permutation = [
        {"name": n, "mean": m, "std": sd}
        for n, m, sd in zip(
            names, importance.get("permutation_mean") or [], importance.get("permutation_std") or [], strict=False
        )
    ]
    permutation.sort(key=lambda p: -(p["mean"] or 0))
    context = {
        "model": model,
        "v": v,
        "report": report,
        "rows": rows,
        "baseline_names": list(baselines),
        "importance": [{"name": n, "value": val, "pct": round((val or 0) / peak * 100, 1)} for n, val in top],
        "permutation": permutation[:15],
        "permutation_metric": importance.get("permutation_metric", ""),
        "calibration": _calibration_chart(report.get("calibration") or {}),
        "rl_chart": _rl_chart(report),
        "confusion": report.get("confusion"),
        "confusion_rows": [
            {"label": label, "cells": cells}
            for label, cells in zip(
                (report.get("confusion") or {}).get("labels", []),
                (report.get("confusion") or {}).get("matrix", []),
                strict=False,
            )
        ],
        "trading": _trading_rows(report.get("trading") or {}),
        "significance": _significance_text(report.get("significance") or {}),
        # the aliases on this version, and (admins) a deploy form posting to the model page
        "version_aliases": sorted(a for a, n in selectors.alias_map(model=model).items() if n == v.version),
        "can_deploy": can(request, Role.ADMIN) and v.status == "ready" and v.pruned_at is None,
        "deploy_form": DeployForm(prefix="deploy", initial={"version": v.version, "alias": "production"}),
    }
    return render(request, "dashboard/model_version.html", context)


def _calibration_chart(calibration, size: int = 220) -> dict | None:
    """Reliability diagram: mean predicted probability (x) against observed frequency (y)."""
    points = []
    bins = calibration.get("bins", []) if isinstance(calibration, dict) else []
    for b in bins:
        p, f = b.get("mean_predicted"), b.get("observed_frequency")
        if p is None or f is None:
            continue
        points.append(f"{round(p * size, 1)},{round(size - f * size, 1)}")
    return {"points": " ".join(points), "size": size} if points else None


def _pct(x) -> str:
    return "—" if x is None else f"{x * 100:+.1f} %"


def _trading_rows(t: dict) -> list[tuple[str, str]]:
    """The trading readout in words and units (compounded returns of the model's long/short signal)."""
    if not t:
        return []
    rows = [
        ("Net return (after fees)", _pct(t.get("total_return"))),
        ("Gross return", _pct(t.get("gross_return"))),
        ("Buy and hold", _pct(t.get("buy_and_hold_return"))),
        ("Fees paid", _pct(t.get("fees_paid")).lstrip("+")),
        ("Position changes", str(t.get("trades", "—"))),
        ("Hit rate", "—" if t.get("hit_rate") is None else f"{t['hit_rate'] * 100:.1f} %"),
        ("Sharpe per bar", "—" if t.get("sharpe_per_bar") is None else f"{t['sharpe_per_bar']:.3f}"),
        ("Periods (bars)", f"{t.get('periods', '—')} ({t.get('fee_bps', '—')} bps per side)"),
    ]
    return rows


def _significance_text(sig: dict) -> str:
    if not sig:
        return ""
    p = sig.get("p_value")
    test = str(sig.get("test", "")).replace("_", " ")
    if p is None:
        return ""
    if sig.get("test") == "t_test_excess_vs_best_baseline":  # an RL policy's per-bar returns
        against = str(sig.get("baseline")).replace("_", " ")
        return f"net return per bar above {against}; p = {p:.2g} (one-sided t test, n = {sig.get('n')})"
    model, base = sig.get("model_accuracy", 0), sig.get("baseline_accuracy", 0)
    return f"accuracy {model:.3f} against {sig.get('against')} {base:.3f}; p = {p:.2g} ({test}, n = {sig.get('n')})"
