"""What the decision side does with its events (run by ``manage.py run_event_consumers``).

- ``trade.executed`` (group ``performance``): a ``performance.update`` snapshot of the paper
  ledger (equity, realised / unrealised P&L, drawdown, exposure, trades) after each batch of fills;
- ``feedback.prediction.outcome`` (group ``performance-feedback``): ``feedback.performance``, the
  consensus's and each agent's accuracy over the last resolved decisions, and a snapshot with it;
- ``performance.update`` and ``ml.threshold.adjusted`` (group ``risk-limits``): the limit in force
  stated once at a tenant's first snapshot (``initial limit``); then the exposure
  limit adapts, within [``EXPOSURE_MIN``, ``EXPOSURE_MAX``]: halved when the drawdown passes
  ``DRAWDOWN_TIGHTEN`` or conservative mode is entered, restored one step at a time once the
  drawdown is back under ``DRAWDOWN_RELAX`` and conservative mode was left: ``ml.risk.limit.update``;
- ``feedback.performance`` (group ``risk-limits``): the consensus worse than a coin over
  ``MIN_RESOLVED`` resolved calls halves the exposure limit too;
- ``position.opened`` / ``position.closed`` (group ``performance``): a snapshot as for fills;
- ``ml.prediction.ready`` (group ``prediction-monitor``): a served classifier predicting one class
  for ``DEGENERATE_SHARE`` of ``DEGENERATE_MIN``+ bars raises a drift alert on its version (once per
  window of ``PREDICTION_WINDOW`` predictions; counts are approximate under redelivery);
- ``ml.risk.limit.update`` (group ``apply``): the limit is stored (:func:`risk_limits`) and audited;
- ``rl.signal.generated`` (group ``policy-monitor``): a deployed RL policy choosing one action for
  ``DEGENERATE_SHARE`` of its bars raises the same drift alert;
- ``rl.confidence.update`` (group ``policy-monitor``): its mean confidence over ``CONFIDENCE_WINDOW``
  votes below ``CONFIDENCE_FLOOR`` raises a drift alert;
- ``rl.action.recommended`` (group ``notify``): the ``rl.recommendation`` notification, for those
  who subscribed to it.

Every handler is idempotent per batch: a snapshot is recomputed from the database, a limit is set,
not added to.
"""

from __future__ import annotations

import time

from django.db import connection, transaction

from eventbus import bus
from eventbus.runner import consumes

from .ledger import LedgerConfig, position_state
from .models import Decision, Fill, Flow, Position

WINDOW = 200  # resolved decisions behind feedback.performance
EXPOSURE_MAX = 1.0  # gross exposure, fraction of the paper equity
EXPOSURE_MIN = 0.1
DRAWDOWN_TIGHTEN = 0.10
DRAWDOWN_RELAX = 0.03
RELAX_STEP = 0.1
MIN_RESOLVED = 30  # resolved decisions before the consensus's accuracy counts (learning.MIN_SAMPLES)
COIN = 0.5
DEGENERATE_SHARE = 0.95
DEGENERATE_MIN = 200
PREDICTION_WINDOW = 1000
CONFIDENCE_WINDOW = 100
CONFIDENCE_FLOOR = 0.4


def _ledger_config() -> LedgerConfig:
    flow = Flow.objects.filter(active=True).values_list("config", flat=True).first()
    return LedgerConfig.from_flow(flow or {})


def performance_snapshot(reason: str, *, accuracy: float | None = None, resolved: int | None = None) -> dict:
    """The tenant's paper performance now, as a ``performance.update`` payload."""
    cfg = _ledger_config()
    positions = list(Position.objects.all())
    realized = sum(p.realized_pnl for p in positions)
    unrealized = sum(p.unrealized_pnl for p in positions)
    equity = cfg.equity + realized + unrealized
    peak = max([cfg.equity, equity, *(p.peak_equity or 0.0 for p in positions)])
    closing = Fill.objects.exclude(realized_pnl=0)
    wins = closing.filter(realized_pnl__gt=0).count()
    closed = closing.count()
    out = {
        "ts": int(time.time()),
        "equity": equity,
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "drawdown": (peak - equity) / peak if peak > 0 else 0.0,
        "exposure": sum(position_state(p, cfg)["exposure"] for p in positions),
        "trades": Fill.objects.count(),
        "open_positions": sum(1 for p in positions if p.qty),
        "reason": reason,
    }
    if closed:
        out["win_rate"] = wins / closed
    if accuracy is not None:
        out["accuracy"] = accuracy
    if resolved is not None:
        out["resolved"] = resolved
    return out


def feedback_performance(window: int = WINDOW) -> dict:
    rows = list(
        Decision.objects.filter(resolved_at__isnull=False)
        .exclude(realized=None)
        .order_by("-id")
        .values_list("action", "realized", "votes")[:window]
    )
    n = hits = 0
    agents: dict[str, dict] = {}
    for action, realized, votes in rows:
        if action in ("BUY", "SELL"):
            n += 1
            hits += (1 if action == "BUY" else -1) == realized
        for vote in votes or ():
            if vote.get("action") in ("BUY", "SELL"):
                t = agents.setdefault(vote["agent"], {"n": 0, "hits": 0})
                t["n"] += 1
                t["hits"] += (1 if vote["action"] == "BUY" else -1) == realized
    for t in agents.values():
        t["accuracy"] = t["hits"] / t["n"]
    out = {"ts": int(time.time()), "window": window, "agents": agents, "resolved": len(rows)}
    if n:
        out["accuracy"] = hits / n
    return out


@consumes("trade.executed", "performance")
def on_trades(entries: list[bus.Entry]) -> None:
    bus.publish("performance.update", performance_snapshot("trade"))


@consumes("position.opened", "performance")
def on_position_opened(entries: list[bus.Entry]) -> None:
    bus.publish("performance.update", performance_snapshot("position.opened"))


@consumes("position.closed", "performance")
def on_position_closed(entries: list[bus.Entry]) -> None:
    bus.publish("performance.update", performance_snapshot("position.closed"))


@consumes("feedback.prediction.outcome", "performance-feedback")
def on_outcomes(entries: list[bus.Entry]) -> None:
    feedback = feedback_performance()
    bus.publish("feedback.performance", feedback)
    bus.publish(
        "performance.update",
        performance_snapshot("outcome", accuracy=feedback.get("accuracy"), resolved=feedback["resolved"]),
    )


# --- adaptive risk limits ------------------------------------------------------------------------


def _limits_key(schema: str | None = None) -> str:
    return f"risk:{schema or connection.schema_name}:limits"


def risk_limits(schema: str | None = None) -> dict[str, float]:
    """The adapted risk limits in force (``max_exposure``: gross, fraction of equity)."""
    raw = bus.client().hgetall(_limits_key(schema))
    return {"max_exposure": EXPOSURE_MAX} | {
        k.decode(): float(v) for k, v in raw.items() if k not in (b"established", b"conservative")
    }


def _propose(new: float, reason: str) -> dict | None:
    old = risk_limits()["max_exposure"]
    new = round(min(EXPOSURE_MAX, max(EXPOSURE_MIN, new)), 6)
    if new == old:
        return None
    return {
        "limit": "max_exposure", "old": old, "new": new, "min": EXPOSURE_MIN, "max": EXPOSURE_MAX,
        "reason": reason, "ts": int(time.time()),
    }  # fmt: skip


@consumes("performance.update", "risk-limits")
def on_performance(entries: list[bus.Entry]) -> None:
    latest = entries[-1].data  # a snapshot: only the newest counts
    if bus.client().hsetnx(_limits_key(), "established", int(time.time())):
        # the tenant's first snapshot: the limit in force is stated (and, applied, audited) once
        bus.publish("ml.risk.limit.update", {
            "limit": "max_exposure", "old": EXPOSURE_MAX, "new": risk_limits()["max_exposure"], "min": EXPOSURE_MIN,
            "max": EXPOSURE_MAX, "reason": "initial limit", "ts": int(time.time()),
        })  # fmt: skip
    current = risk_limits()["max_exposure"]
    if latest["drawdown"] >= DRAWDOWN_TIGHTEN:
        change = _propose(current / 2, f"drawdown {latest['drawdown']:.1%} >= {DRAWDOWN_TIGHTEN:.0%}")
    elif latest["drawdown"] < DRAWDOWN_RELAX and not bus.client().hget(_limits_key(), "conservative") == b"1":
        change = _propose(current + RELAX_STEP, f"drawdown {latest['drawdown']:.1%} < {DRAWDOWN_RELAX:.0%}")
    else:
        change = None
    if change:
        bus.publish("ml.risk.limit.update", change)


@consumes("ml.threshold.adjusted", "risk-limits")
def on_threshold(entries: list[bus.Entry]) -> None:
    latest = entries[-1].data
    conservative = bool(latest.get("conservative"))
    bus.client().hset(_limits_key(), "conservative", int(conservative))
    if conservative:
        change = _propose(risk_limits()["max_exposure"] / 2, "conservative mode entered")
        if change:
            bus.publish("ml.risk.limit.update", change)


@consumes("feedback.performance", "risk-limits")
def on_feedback(entries: list[bus.Entry]) -> None:
    """The consensus worse than a coin over enough resolved calls: the exposure limit is halved."""
    latest = entries[-1].data
    accuracy, resolved = latest.get("accuracy"), latest.get("resolved") or 0
    if accuracy is not None and resolved >= MIN_RESOLVED and accuracy < COIN:
        change = _propose(risk_limits()["max_exposure"] / 2, f"consensus accuracy {accuracy:.1%} over {resolved}")
        if change:
            bus.publish("ml.risk.limit.update", change)


@consumes("ml.risk.limit.update", "apply")
def on_risk_limit(entries: list[bus.Entry]) -> None:
    from compliance.services import audit_record

    with transaction.atomic():
        for entry in entries:
            audit_record(None, "ml.risk.limit.update", details={**entry.data, "event_id": entry.id})
        latest = entries[-1].data
        bus.client().hset(_limits_key(), latest["limit"], min(EXPOSURE_MAX, max(EXPOSURE_MIN, latest["new"])))


@consumes("ml.prediction.ready", "prediction-monitor")
def on_predictions(entries: list[bus.Entry]) -> None:
    # classifiers only: a regressor's output is a number
    _degenerate_watch(
        [(e.data["model_version"], e.data["prediction"]) for e in entries if e.data.get("probabilities")],
        source="ml.prediction.ready",
        what="predicted",
    )


@consumes("rl.signal.generated", "policy-monitor")
def on_rl_signals(entries: list[bus.Entry]) -> None:
    """A deployed RL policy stuck on one action (long, short or flat) is as suspect as a classifier
    stuck on one class: the same drift alert."""
    _degenerate_watch(
        [(e.data["model_version"], e.data["action"]) for e in entries], source="rl.signal.generated", what="chose"
    )


def _version(ref: str):
    from models_registry.models import ModelVersion

    name, _, number = ref.rpartition("@")
    if not number.isdigit():
        return None
    return ModelVersion.objects.filter(model__name=name, version=int(number)).select_related("model").first()


def _degenerate_watch(labelled: list[tuple[str, str]], *, source: str, what: str) -> None:
    from models_registry.models import ModelAlert

    counts: dict[str, dict[str, int]] = {}
    for ref, label in labelled:
        per = counts.setdefault(ref, {})
        per[label] = per.get(label, 0) + 1
    r = bus.client()
    for ref, per in counts.items():
        key = f"preds:{connection.schema_name}:{source}:{ref}"
        pipe = r.pipeline()
        for label, n in per.items():
            pipe.hincrby(key, f"label:{label}", n)
        pipe.hgetall(key)
        seen = pipe.execute()[-1]
        labels = {k.decode()[6:]: int(v) for k, v in seen.items() if k.startswith(b"label:")}
        total = sum(labels.values())
        if total >= PREDICTION_WINDOW:
            r.delete(key)  # a new window
        top, n = max(labels.items(), key=lambda kv: kv[1])
        if total < DEGENERATE_MIN or n / total < DEGENERATE_SHARE or seen.get(b"alerted"):
            continue
        version = _version(ref)
        if version is None:
            continue
        r.hset(key, "alerted", 1)
        ModelAlert.objects.create(
            model=version.model, version=version, kind=ModelAlert.Kind.DRIFT, severity="warning",
            message=f"{ref}: {what} '{top}' for {n / total:.0%} of the last {total} bars (live).",
            details={"source": source, "labels": labels, "total": total},
        )  # fmt: skip


@consumes("rl.confidence.update", "policy-monitor")
def on_rl_confidence(entries: list[bus.Entry]) -> None:
    """The policy's mean confidence over its last ``CONFIDENCE_WINDOW`` votes falling below
    ``CONFIDENCE_FLOOR`` (it no longer prefers any action clearly) raises a drift alert on the
    version, once per window."""
    from models_registry.models import ModelAlert

    by_ref: dict[str, list[float]] = {}
    for e in entries:
        by_ref.setdefault(e.data["model_version"], []).append(float(e.data["confidence"]))
    r = bus.client()
    for ref, values in by_ref.items():
        key = f"rlconf:{connection.schema_name}:{ref}"
        pipe = r.pipeline()
        pipe.hincrbyfloat(key, "sum", sum(values))
        pipe.hincrby(key, "n", len(values))
        pipe.hget(key, "alerted")
        total, n, alerted = pipe.execute()
        if n < CONFIDENCE_WINDOW:
            continue
        r.delete(key)  # a new window
        mean = float(total) / n
        if mean >= CONFIDENCE_FLOOR or alerted:
            continue
        version = _version(ref)
        if version is None:
            continue
        ModelAlert.objects.create(
            model=version.model, version=version, kind=ModelAlert.Kind.DRIFT, severity="warning",
            message=f"{ref}: mean confidence {mean:.0%} over its last {n} live votes (below {CONFIDENCE_FLOOR:.0%}).",
            details={"source": "rl.confidence.update", "mean": round(mean, 4), "n": n},
        )  # fmt: skip


_rl_subscribed: dict[str, tuple[float, bool]] = {}


def _anyone_wants(event_type: str) -> bool:
    """Whether an enabled subscription of this tenant names ``event_type`` (read every few seconds)."""
    from notifications.models import Subscription

    schema, now = connection.schema_name, time.monotonic()
    hit = _rl_subscribed.get(schema)
    if hit is None or hit[0] <= now:
        wanted = Subscription.objects.filter(enabled=True, events__contains=[event_type]).exists()
        hit = _rl_subscribed[schema] = (now + 5.0, wanted)
    return hit[1]


@consumes("rl.action.recommended", "notify")
def on_rl_recommendations(entries: list[bus.Entry]) -> None:
    """A deployed RL policy's long/short recommendation reaches those who subscribed to
    ``rl.recommendation`` (Telegram, webhook, e-mail, in-app), once per bar."""
    from notifications.delivery import emit

    if not _anyone_wants("rl.recommendation"):
        return
    with transaction.atomic():
        for e in entries:
            d = e.data
            emit(
                "rl.recommendation",
                dict(d),
                dedupe_key=f"rl:{d['model_version']}:{d['symbol']}:{d['timeframe']}:{d['ts']}",
            )
