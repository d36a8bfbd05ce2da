"""What the RL agent reads, looked up outside the agents (as the ML agent's prediction is), and
the RL events its votes produce.

The deployed policy for an instrument is the production version, with ``task = "rl"``, of a model
trained on that symbol and timeframe (cached per process for ``SERVING_TTL`` and dropped at once
when this process changes the registry). RL versions never answer for the ML agent (its lookup
excludes them) and AutoML versions never answer here.
"""

from __future__ import annotations

import logging
import time

from django.db import connection

log = logging.getLogger(__name__)

SERVING_TTL = 2.0
_versions: dict[tuple, tuple[float, int, object]] = {}


def rl_version_for(*, symbol: str, timeframe: str):
    """The deployed (production) RL version for this instrument and timeframe, or None."""
    from models_registry import serving
    from models_registry.models import ModelAlias
    from models_registry.services.rl_training import RL_TASK

    key = (connection.schema_name, symbol, timeframe)
    now = time.monotonic()
    hit = _versions.get(key)
    if hit is not None and hit[0] > now and hit[1] == serving.generation:
        return hit[2]
    generation = serving.generation
    alias = (
        ModelAlias.objects.filter(
            name="production", version__symbol=symbol, version__timeframe=timeframe, version__task=RL_TASK
        )
        .select_related("version", "version__model", "version__feature_set")
        .order_by("-version__created_at")
        .first()
    )
    version = alias.version if alias is not None else None
    if len(_versions) > 10_000:
        _versions.clear()
    _versions[key] = (now + SERVING_TTL, generation, version)
    return version


def rl_input(version, row: dict) -> dict | None:
    """``Context.rl`` for a version: its loaded policy (sha256-verified), ref, no_edge flag and the
    feature row of its feature set; None when it cannot be loaded (the agent then abstains)."""
    from models_registry import serving

    try:
        policy = serving.policy_get(version)
    except Exception:  # noqa: BLE001 - a broken artifact must not stop the other agents
        log.warning("RL policy %s could not be loaded", version.ref, exc_info=True)
        return None
    return {"policy": policy, "version": version.ref, "no_edge": version.no_edge, "features": row}


def rl_input_recorded(recorded: dict | None) -> dict | None:
    """``Context.rl`` again from what a stream decision recorded (``inputs["rl"]``: the version's
    ref and the feature row): the same version's policy, reloaded (sha256-checked), for a replay."""
    from models_registry.models import ModelVersion

    if not recorded or not recorded.get("version"):
        return None
    name, _, number = str(recorded["version"]).rpartition("@")
    version = (
        ModelVersion.objects.filter(model__name=name, version=int(number) if number.isdigit() else -1)
        .select_related("model")
        .first()
    )
    return rl_input(version, recorded.get("features") or {}) if version is not None else None


def rl_events_publish(decision, schema: str | None = None) -> int:
    """``rl.signal.generated`` and ``rl.confidence.update`` for the rl agent's vote on a decision,
    plus ``rl.action.recommended`` when it votes to be long or short; nothing when it abstained.
    Best effort (the decision stands if Redis is down); returns the number of events published."""
    from eventbus import bus

    vote = next((v for v in decision.votes or [] if v.get("agent") == "rl"), None)
    details = (vote or {}).get("details") or {}
    if vote is None or details.get("abstain") or not details.get("version"):
        return 0
    base = {"symbol": decision.symbol, "timeframe": decision.timeframe, "model_version": details["version"]}
    ts = int(decision.ts.timestamp())
    confidence = float(vote["confidence"])
    events = [
        (
            "rl.signal.generated",
            {
                **base,
                "ts": ts,
                "action": vote["action"],
                "q_values": details.get("values") or {},
                **({"decision_id": decision.pk} if decision.pk else {}),
            },
        ),  # fmt: skip
        ("rl.confidence.update", {**base, "confidence": confidence}),
    ]
    if vote["action"] != "HOLD":
        rec = {**base, "ts": ts, "action": vote["action"], "confidence": confidence}
        if decision.action == vote["action"] and decision.size:
            rec["size"] = float(decision.size)
        events.append(("rl.action.recommended", rec))
    try:
        for name, data in events:
            bus.publish(name, data, schema=schema)
    except Exception:  # noqa: BLE001
        log.warning("could not publish RL events for %s", decision.symbol, exc_info=True)
        return 0
    return len(events)
