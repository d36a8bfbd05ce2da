"""The learning loop's governance: live accuracy from resolved decisions, side by side for an A/B
test (promote or abort), auto-rollback of a production model that fails live, and the
``validate-ai-accuracy`` report against the seed targets.

Live accuracy counts directional calls only, each against the realised move of its horizon:
- a decision: BUY/SELL (HOLD makes no call);
- an agent: its BUY/SELL votes (abstentions and HOLD make none);
- a model version: its own direction (P(up) against 0.5, or the predicted return's sign) on the
  decisions it served (``Decision.model_correct``), whether or not the ML agent then voted.

Every figure comes with its count, a 95 % Wilson interval and a one-sided test against a coin
(50 %): a small sample that happens to look good is not reported as meeting a target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from api.errors import ApplicationError

from .models import Decision

# the seeds' targets; reported, never assumed
TARGETS = {"model": 0.65, "agent": 0.70, "premium_agent": 0.75, "consensus": 0.80}
MIN_SAMPLES = 30  # fewer calls than this: "not enough outcomes", whatever the ratio
ROLLBACK_P = 0.01  # "significantly worse than the previous version": one-sided p below this
DEFAULT_ROLLBACK_WINDOW = 100


# --- statistics ---------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def p_better_than_coin(k: int, n: int) -> float | None:
    """One-sided exact binomial p-value of ``k`` hits in ``n`` calls against a coin."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5, alternative="greater").pvalue)


def p_worse(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """One-sided two-proportion z-test p-value that rate 1 is below rate 2."""
    if not n1 or not n2:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if k1 / n1 >= k2 / n2 else 0.0
    z = (k1 / n1 - k2 / n2) / se
    return 0.5 * math.erfc(-z / math.sqrt(2))


@dataclass(frozen=True)
class Tally:
    n: int
    hits: int

    @property
    def accuracy(self) -> float | None:
        return self.hits / self.n if self.n else None

    def report(self, target: float | None = None) -> dict:
        ci = wilson(self.hits, self.n)
        p = p_better_than_coin(self.hits, self.n)
        out = {
            "n": self.n,
            "correct": self.hits,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
            "p_value_vs_coin": None if p is None else round(p, 5),
        }
        if self.n < MIN_SAMPLES:
            verdict = f"not enough outcomes ({self.n} < {MIN_SAMPLES})"
        elif p is not None and p >= 0.05:
            verdict = "no better than a coin"
        else:
            verdict = "better than a coin"
        if target is not None:
            out["target"] = target
            # met only when the whole 95 % interval clears it, not when the point estimate does
            out["meets_target"] = bool(ci is not None and self.n >= MIN_SAMPLES and ci[0] >= target)
            if self.n >= MIN_SAMPLES and not out["meets_target"]:
                verdict += (
                    f"; below the {target:.0%} target" if ci[1] < target else f"; not shown to reach {target:.0%}"
                )
        out["verdict"] = verdict
        return out


def model_direction(votes: list[dict]) -> int | None:
    """The served model's own direction in a decision's votes: +1 up, -1 down, None if no prediction."""
    for vote in votes or ():
        if vote.get("agent") != "ml":
            continue
        details = vote.get("details") or {}
        if details.get("p_up") is not None:
            p = float(details["p_up"])
            return 1 if p > 0.5 else -1 if p < 0.5 else None
        if details.get("predicted_return") is not None:
            r = float(details["predicted_return"])
            return 1 if r > 0 else -1 if r < 0 else None
    return None


def model_correct(votes: list[dict], realized: int) -> bool | None:
    direction = model_direction(votes)
    return None if direction is None else direction == realized


# --- live accuracy of a model version ------------------------------------------------------------


def model_live(ref: str, *, window: int = 500, since=None) -> Tally:
    """A version's live accuracy over its last ``window`` resolved calls (after ``since``)."""
    qs = Decision.objects.filter(model_version=ref, model_correct__isnull=False)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    flags = list(qs.order_by("-id").values_list("model_correct", flat=True)[:window])
    return Tally(len(flags), sum(flags))


def _arm(version, tally: Tally) -> dict:
    offline = ((version.report or {}).get("oos") or {}).get("accuracy")
    return {
        "version": version.version,
        "ref": version.ref,
        "circuit": version.circuit,
        "offline_accuracy": offline,
        "live": tally.report(TARGETS["model"]),
    }


def ab_metrics(model, *, window: int = 500) -> dict:
    """Production and challenger side by side on live outcomes, with the test of the difference."""
    from models_registry import serving

    arms = serving.arms_get(model)
    versions = (arms.production, arms.challenger)
    tallies = [None if v is None else model_live(v.ref, window=window) for v in versions]
    prod, chal = (None if v is None else _arm(v, t) for v, t in zip(versions, tallies, strict=True))
    out = {
        "model": model.name,
        "window": window,
        "challenger_percent": arms.challenger_percent,
        "production": prod,
        "challenger": chal,
        "comparison": None,
    }
    b, a = tallies  # production, challenger
    if a is not None and b is not None:
        worse, better = p_worse(a.hits, a.n, b.hits, b.n), p_worse(b.hits, b.n, a.hits, a.n)
        if min(a.n, b.n) < MIN_SAMPLES:
            verdict = f"not enough outcomes yet (each arm needs {MIN_SAMPLES})"
        elif better is not None and better < 0.05:
            verdict = "challenger is better (p < 0.05): promote it"
        elif worse is not None and worse < 0.05:
            verdict = "challenger is worse (p < 0.05): abort the test"
        else:
            verdict = "no significant difference yet"
        out["comparison"] = {
            "difference": None if a.n == 0 or b.n == 0 else round(a.accuracy - b.accuracy, 4),
            "p_challenger_better": None if better is None else round(better, 5),
            "p_challenger_worse": None if worse is None else round(worse, 5),
            "verdict": verdict,
        }
    return out


def ab_promote(*, model, actor=None, reason: str = ""):
    """The challenger becomes production (through the deploy gate); the test ends."""
    from models_registry import serving
    from models_registry.services import registry

    arms = serving.arms_get(model)
    if arms.challenger is None:
        raise ApplicationError("no_ab_test", f"{model.name} has no challenger; deploy one to the 'challenger' alias.")
    with transaction.atomic():
        alias = registry.model_deploy(
            model=model, version=arms.challenger, reason=reason or "A/B: challenger promoted", actor=actor
        )
        _end_test(model, actor, "promoted")
    return alias


def ab_abort(*, model, actor=None, reason: str = "") -> None:
    """End the test: the challenger alias goes, all traffic returns to production."""
    from models_registry import serving

    if serving.arms_get(model).challenger is None:
        raise ApplicationError("no_ab_test", f"{model.name} has no challenger; there is no test to abort.")
    with transaction.atomic():
        _end_test(model, actor, reason or "A/B: aborted")


def _end_test(model, actor, reason: str) -> None:
    from models_registry.services import registry

    registry.alias_remove(model=model, alias=registry.CHALLENGER, actor=actor, reason=reason)
    if (model.traffic or {}).get("challenger_percent"):
        registry.model_settings_update(model=model, actor=actor, traffic={"challenger_percent": 0})


# --- auto-rollback ---------------------------------------------------------------------------------


def rollback_check(model) -> dict | None:
    """Roll ``production`` back when its live accuracy, counted since it became production, is
    below the model's ``rollback_min_accuracy`` over ``rollback_window`` calls, or significantly
    worse (one-sided p < 0.01) than the version it replaced. Without a version to return to, the
    circuit opens instead (decisions continue on the other agents). Returns what it did, or None."""
    from models_registry.models import AliasEvent, ModelAlert, ModelAlias, ModelVersion
    from models_registry.services import registry

    policy = model.deploy_policy or {}
    window = int(policy.get("rollback_window") or DEFAULT_ROLLBACK_WINDOW)
    floor = policy.get("rollback_min_accuracy")
    current = ModelAlias.objects.filter(model=model, name=registry.PRODUCTION).select_related("version").first()
    if current is None or current.version.circuit == "open":
        return None
    version = current.version
    live = model_live(version.ref, window=window, since=current.updated_at)
    if live.n < window:
        return None
    moved_in = (
        AliasEvent.objects.filter(model=model, alias=registry.PRODUCTION, to_version=version.version)
        .exclude(from_version=None)
        .first()
    )
    previous = (
        ModelVersion.objects.filter(model=model, version=moved_in.from_version, artifact__isnull=False).first()
        if moved_in
        else None
    )
    reason = None
    if floor is not None and live.accuracy < float(floor):
        reason = (
            f"live accuracy {live.accuracy:.3f} over the last {live.n} calls is below the rollback "
            f"threshold {float(floor):.3f}"
        )
    elif previous is not None:
        before = model_live(previous.ref, window=window)
        p = p_worse(live.hits, live.n, before.hits, before.n) if before.n >= window else None
        if p is not None and p < ROLLBACK_P:
            reason = (
                f"live accuracy {live.accuracy:.3f} over {live.n} calls is significantly worse than "
                f"{previous.ref}'s {before.accuracy:.3f} (p = {p:.4f})"
            )
    if reason is None:
        return None
    details = {"version": version.ref, "live": live.report(), "window": window}
    with transaction.atomic():
        if previous is not None:
            registry.model_rollback(model=model, version=previous, reason=f"auto-rollback: {reason}", actor="system")
            action = f"rolled back to {previous.ref}"
        else:
            registry.circuit_set(version=version, state="open", actor="system", reason=f"auto-rollback: {reason}")
            action = "circuit opened (no earlier version to roll back to)"
        ModelAlert.objects.create(
            model=model,
            version=version,
            kind=ModelAlert.Kind.AUTO_ROLLBACK,
            severity="critical",
            message=f"{version.ref}: {action}: {reason}."[:500],
            details={**details, "action": action},
        )
    return {"model": model.name, "version": version.ref, "action": action, "reason": reason}


def models_status(*, window: int = 200) -> list[dict]:
    """For ensemble-status: each model serving decisions, its arms, split, circuits and live accuracy."""
    from models_registry.models import RegisteredModel

    out = []
    for model in RegisteredModel.objects.filter(aliases__name="production").distinct().order_by("name"):
        ab = ab_metrics(model, window=window)
        out.append(
            {
                "model": model.name,
                "challenger_percent": ab["challenger_percent"],
                "production": _brief(ab["production"]),
                "challenger": _brief(ab["challenger"]),
                "ab_verdict": (ab["comparison"] or {}).get("verdict"),
                "rollback_policy": {k: v for k, v in (model.deploy_policy or {}).items() if k.startswith("rollback_")},
            }
        )
    return out


def _brief(arm: dict | None) -> dict | None:
    if arm is None:
        return None
    live = arm["live"]
    return {"version": arm["ref"], "circuit": arm["circuit"], "live_accuracy": live["accuracy"], "live_n": live["n"]}


def models_live_check() -> list[dict]:
    """``rollback_check`` for every model with a production version (stream and registry sweep)."""
    from models_registry.models import RegisteredModel

    done = []
    for model in RegisteredModel.objects.filter(aliases__name="production").distinct():
        result = rollback_check(model)
        if result:
            done.append(result)
    return done


# --- validate-ai-accuracy ----------------------------------------------------------------------------


def validate_ai_accuracy(*, window: int = 1000, symbol: str | None = None) -> dict:
    """Live accuracy of the consensus, of each agent and of each model version over the last
    ``window`` resolved decisions, next to the seed targets, with intervals and a coin test."""
    from .agents import REGISTRY

    qs = Decision.objects.filter(resolved_at__isnull=False).exclude(realized=None)
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    rows = list(
        qs.order_by("-id").values_list("action", "realized", "votes", "model_version", "model_correct")[:window]
    )
    consensus = Tally(0, 0)
    agents: dict[str, list[int]] = {}
    models: dict[str, list[int]] = {}
    for action, realized, votes, version, m_correct in rows:
        if action in ("BUY", "SELL"):
            consensus = Tally(consensus.n + 1, consensus.hits + ((1 if action == "BUY" else -1) == realized))
        for vote in votes or ():
            if vote.get("action") in ("BUY", "SELL"):
                t = agents.setdefault(vote["agent"], [0, 0])
                t[0] += 1
                t[1] += (1 if vote["action"] == "BUY" else -1) == realized
        if version and m_correct is not None:
            t = models.setdefault(version, [0, 0])
            t[0] += 1
            t[1] += bool(m_correct)

    def tier(name: str) -> str:
        cls = REGISTRY.get(name)
        return getattr(cls, "tier", "basic") if cls else "basic"

    agent_rows = []
    for name in sorted(agents):
        premium = tier(name) == "advanced"
        target = TARGETS["premium_agent"] if premium else TARGETS["agent"]
        agent_rows.append({"agent": name, "premium": premium, **Tally(*agents[name]).report(target)})
    model_rows = [{"version": ref, **Tally(*models[ref]).report(TARGETS["model"])} for ref in sorted(models)]
    return {
        "window": window,
        "symbol": symbol.upper() if symbol else None,
        "resolved_decisions": len(rows),
        "generated_at": timezone.now().isoformat(),
        "targets": TARGETS,
        "method": (
            "Directional calls only, each against the realised move over its horizon. meets_target is true only "
            "when the 95% Wilson interval's lower bound clears the target with at least "
            f"{MIN_SAMPLES} calls; p_value_vs_coin is a one-sided exact binomial test against 50%."
        ),
        "consensus": Tally(consensus.n, consensus.hits).report(TARGETS["consensus"]),
        "agents": agent_rows,
        "models": model_rows,
    }
