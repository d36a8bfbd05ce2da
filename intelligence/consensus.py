"""The consensus engine: learned agent weights, thresholds, vetoes, calibration, and explanations.

How a decision is made (:meth:`ConsensusEngine.decide`):

1. Directional votes (see :mod:`intelligence.agents.base`) are weighted by each agent's learned
   weight for the instrument, times the regime agent's multiplier (``details["scale"]``), times the
   vote's own confidence. The raw score ``S = sum(w c d) / sum(w)`` lies in [-1, 1]; its sign is the
   consensus direction. Agents that vote HOLD dilute ``S`` (they say "no edge"); agents that abstain
   (no data) do not.
2. ``S`` is turned into the probability that its direction is right by a reliability table learned
   from resolved outcomes (binned on ``|S|``, decayed, monotone by pool-adjacent-violators). Each bin
   starts from a conservative prior, ``0.5 + shrink |S| / 2`` worth ``prior_strength`` outcomes, so a
   new flow reports confidences close to 0.5 and only earns higher ones with evidence. That
   probability is the decision's ``confidence``: it is what thresholds, the cost check and the
   Kelly size use, so an overconfident raw score can neither trigger trades nor inflate sizes.
3. HOLD unless the confidence reaches ``min_confidence``, the weight share on the winning side
   reaches ``min_agreement`` and the minority side holds less than ``conflict_share`` of the
   directional conviction (strong disagreement means the agents see different markets). Then a risk
   veto, the cost agent's break-even probability and a zero size (sizing deferred) can still force
   HOLD. In conservative mode the thresholds rise and sizes shrink.
4. If agents failed or timed out and fewer than ``min_voters`` directional agents are left, no
   consensus is formed: the best remaining agent (highest learned weight) decides alone, with its own
   shrunk hit rate as the confidence.

Learning (:meth:`ConsensusEngine.record_outcome`), once the bar's direction is known:

- weights: Hedge (multiplicative weights) per (agent, instrument) on the loss ``(1 - d c y) / 2``
  (0 for a confident right call, 1 for a confident wrong one, 0.5 for HOLD), with a fixed share
  mixed back toward uniform so an agent that was wrong for a while can regain weight when the
  market changes. An informative agent's weight grows exponentially against coin-flippers;
- an exponentially weighted hit rate per (agent, instrument), for status and for the fallback;
- the consensus accuracy window: the consensus DIRECTION is scored on every resolved decision,
  traded or not, so conservative mode can also be left once the agents become right again;
- the reliability table, on non-fallback decisions.

Flat outcomes (``realized_direction == 0``) carry no information about direction and are skipped.

The state (weights, hit rates, window, table) is plain JSON (:meth:`to_json` / :meth:`from_json`):
the Django side stores it per tenant and flow.
"""

from __future__ import annotations

import copy
import math
import re
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from api.errors import ApplicationError
from intelligence.agents import REGISTRY
from intelligence.agents.base import Agent, Context, Vote, _jsonable
from intelligence.agents.sizing import capped_kelly

STATE_VERSION = 1

DEFAULT_FLOW: dict[str, Any] = {
    "agents": [
        "technical",
        "trend",
        "mean_reversion",
        "ml",
        "rl",
        "pattern",
        "regime",
        "sentiment",
        "fundamental",
        "risk",
        "sizing",
        "cost",
    ],
    # the registered model the ML agent reads (its production version, A/B split honoured); null:
    # the model whose production version was trained on the decision's instrument and timeframe
    "model": None,
    "settings": {},  # agent name -> setting overrides (see each agent's default_settings)
    "weights": {},  # agent name -> initial weight (default 1); learning moves from there
    "min_confidence": 0.55,  # calibrated probability the direction is right
    "min_agreement": 0.5,  # weight share of directional voters on the winning side
    "conflict_share": 0.4,  # HOLD when the minority side holds this share of the conviction
    "min_voters": 2,  # after failures, fewer directional voters than this -> best single agent
    "agent_timeout_ms": 5.0,  # per-agent budget in run_agents
    "learning_rate": 0.2,  # Hedge eta per resolved outcome
    "fixed_share": 0.001,  # mixed toward uniform after each update: lets a benched agent recover
    "hit_rate_halflife": 100,  # outcomes, for the per-agent hit rate
    "fees_bps": 5.0,  # per side; passed to the cost agent by agent_settings()
    "slippage_bps": 2.0,
    "sizing": {"kelly_fraction": 0.25, "payoff": 1.0, "max_size": 0.1},  # used when no sizing agent voted
    "conservative": {
        "window": 200,  # recent resolved decisions the consensus accuracy is measured on
        "min_samples": 50,
        "enter_below": 0.52,  # accuracy under this engages conservative mode ...
        "exit_above": 0.55,  # ... and it is left only above this (hysteresis)
        "min_confidence": 0.75,
        "min_agreement": 0.65,
        "size_multiplier": 0.5,
    },
    # adaptive threshold: min_confidence moves within [floor, ceiling] so that the precision of
    # actionable (BUY/SELL) decisions tracks target_precision; off by default
    "adaptive": {
        "enabled": False,
        "target_precision": 0.55,
        "floor": 0.52,
        "ceiling": 0.8,
        "step": 0.005,  # per resolved actionable decision
        "window": 100,  # recent actionable outcomes the precision is measured on
        "min_samples": 30,
        "margin": 0.03,  # lower the threshold only when precision exceeds the target by this
    },
    "calibration": {
        "edges": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8],  # bins of |S|
        "prior_strength": 30.0,  # pseudo-outcomes of the prior per bin
        "shrink": 0.3,  # prior mean 0.5 + shrink |S| / 2: a naive score, shrunk toward a coin
        "halflife": 5000,  # outcomes; older evidence fades
    },
}

CONSERVATIVE_PRESET: dict[str, Any] = {
    **copy.deepcopy(DEFAULT_FLOW),
    "min_confidence": 0.75,
    "min_agreement": 0.65,
    "conflict_share": 0.3,
    "sizing": {"kelly_fraction": 0.15, "payoff": 1.0, "max_size": 0.05},
}

_NESTED = ("sizing", "conservative", "calibration", "adaptive")
_UNIT = (0.0, 1.0)
_RANGES: dict[str, tuple[float, float]] = {
    "min_confidence": (0.5, 1.0),
    "min_agreement": _UNIT,
    "conflict_share": (0.0, 0.5),
    "min_voters": (1, 100),
    "agent_timeout_ms": (0.0, 10_000.0),
    "learning_rate": (0.0, 10.0),
    "fixed_share": (0.0, 0.5),
    "hit_rate_halflife": (1, 1e7),
    "fees_bps": (0.0, 10_000.0),
    "slippage_bps": (0.0, 10_000.0),
    "sizing.kelly_fraction": _UNIT,
    "sizing.payoff": (1e-6, 1e6),
    "sizing.max_size": _UNIT,
    "conservative.window": (1, 1e6),
    "conservative.min_samples": (1, 1e6),
    "conservative.enter_below": _UNIT,
    "conservative.exit_above": _UNIT,
    "conservative.min_confidence": (0.5, 1.0),
    "conservative.min_agreement": _UNIT,
    "conservative.size_multiplier": _UNIT,
    "adaptive.target_precision": _UNIT,
    "adaptive.floor": (0.5, 1.0),
    "adaptive.ceiling": (0.5, 1.0),
    "adaptive.step": (0.0, 0.1),
    "adaptive.window": (1, 1e6),
    "adaptive.min_samples": (1, 1e6),
    "adaptive.margin": (0.0, 0.5),
    "calibration.prior_strength": (0.0, 1e6),
    "calibration.shrink": _UNIT,
    "calibration.halflife": (1, 1e9),
}


def _flow_error(path: str, message: str) -> ApplicationError:
    return ApplicationError("invalid_flow", f"Invalid flow: {path}: {message}", {"path": path})


def resolve_flow(flow: Mapping[str, Any] | None) -> dict[str, Any]:
    """The flow with defaults filled in (nested sections merged key by key), validated."""
    out = copy.deepcopy(DEFAULT_FLOW)
    for key, value in (flow or {}).items():
        if key not in DEFAULT_FLOW:
            raise _flow_error(key, f"unknown key; a flow has {', '.join(DEFAULT_FLOW)}")
        if key in _NESTED:
            if not isinstance(value, Mapping):
                raise _flow_error(key, "must be an object")
            for sub, v in value.items():
                if sub not in DEFAULT_FLOW[key]:
                    raise _flow_error(f"{key}.{sub}", f"unknown key; {key} has {', '.join(DEFAULT_FLOW[key])}")
                out[key][sub] = v
        else:
            out[key] = value
    if not isinstance(out["agents"], list) or not all(isinstance(a, str) for a in out["agents"]):
        raise _flow_error("agents", "must be a list of agent names")
    model = out["model"]
    if model is not None and (not isinstance(model, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", model)):
        raise _flow_error("model", "must be a registered model's name (letters, digits, - and _), or null")
    for key in ("settings", "weights"):
        if not isinstance(out[key], Mapping):
            raise _flow_error(key, "must be an object keyed by agent name")
    for name, w in out["weights"].items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not (math.isfinite(w) and w > 0):
            raise _flow_error(f"weights.{name}", f"must be a positive number, got {w!r}")
    for path, (lo, hi) in _RANGES.items():
        section, _, sub = path.partition(".")
        value = out[section][sub] if sub else out[section]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise _flow_error(path, f"must be a number in [{lo:g}, {hi:g}], got {value!r}")
    adaptive = out["adaptive"]
    if not isinstance(adaptive["enabled"], bool):
        raise _flow_error("adaptive.enabled", "must be true or false")
    if adaptive["ceiling"] < adaptive["floor"]:
        raise _flow_error("adaptive.ceiling", "must be >= adaptive.floor")
    cons = out["conservative"]
    if cons["exit_above"] < cons["enter_below"]:
        raise _flow_error("conservative.exit_above", "must be >= conservative.enter_below")
    edges = out["calibration"]["edges"]
    if (
        not isinstance(edges, list)
        or len(edges) < 2
        or edges[0] != 0
        or any(not isinstance(e, int | float) for e in edges)
        or any(b <= a for a, b in zip(edges, edges[1:], strict=False))
        or edges[-1] >= 1
    ):
        raise _flow_error("calibration.edges", "must be increasing numbers starting at 0 and below 1")
    return out


def agent_settings(flow: Mapping[str, Any]) -> dict[str, dict]:
    """Per-agent settings for a Context: the flow's, with its fees and slippage given to the cost agent."""
    settings = {name: dict(s) for name, s in flow.get("settings", {}).items()}
    cost = settings.setdefault("cost", {})
    cost.setdefault("fees_bps", flow.get("fees_bps", DEFAULT_FLOW["fees_bps"]))
    cost.setdefault("slippage_bps", flow.get("slippage_bps", DEFAULT_FLOW["slippage_bps"]))
    return settings


# --- running agents ------------------------------------------------------------------------------


class AgentRun(NamedTuple):
    votes: dict[str, Vote]
    failures: dict[str, str]  # agent name -> "error: ..." / "timeout: ..." / "skipped: ..."
    elapsed_ms: dict[str, float]


def run_agents(
    agents: Iterable[Agent], ctx: Context, timeout_ms: float | None = None, total_ms: float | None = None
) -> AgentRun:
    """Every agent's vote, with failures recorded instead of raised.

    The time budget is enforced by discarding, not by preemption: interrupting Python code needs a
    thread or a signal per call, which alone costs more than the whole decision budget. A vote that
    took longer than ``timeout_ms`` is dropped as a timeout (so a slow agent cannot sway a decision
    it was late for, and the engine falls back as for a failure), and once ``total_ms`` has passed
    the remaining agents are skipped."""
    clock = time.perf_counter_ns
    votes: dict[str, Vote] = {}
    failures: dict[str, str] = {}
    elapsed: dict[str, float] = {}
    limit = None if timeout_ms is None else timeout_ms * 1e6
    start = clock()
    deadline = None if total_ms is None else start + total_ms * 1e6
    for agent in agents:
        t0 = clock()
        if deadline is not None and t0 > deadline:
            failures[agent.name] = "skipped: decision time budget spent"
            continue
        try:
            vote = agent.vote(ctx)
        except Exception as exc:  # noqa: BLE001 - any agent bug becomes a recorded failure
            failures[agent.name] = f"error: {type(exc).__name__}: {exc}"
            continue
        took = clock() - t0
        elapsed[agent.name] = took / 1e6
        if limit is not None and took > limit:
            failures[agent.name] = f"timeout: {took / 1e6:.2f} ms > {timeout_ms:g} ms"
            continue
        if not isinstance(vote, Vote):
            failures[agent.name] = f"error: returned {type(vote).__name__}, not a Vote"
            continue
        votes[agent.name] = vote
    return AgentRun(votes, failures, elapsed)


# --- decisions -------------------------------------------------------------------------------------


@dataclass
class Decision:
    action: str
    confidence: float  # calibrated P(the consensus direction is right)
    raw_score: float  # S in [-1, 1]; its sign is the consensus direction even when action is HOLD
    size: float  # fraction of equity; 0 for HOLD
    votes: dict[str, Vote]
    weights: dict[str, float]  # effective normalised weights of the directional voters
    threshold: float  # the min_confidence applied
    explanation: str
    conservative: bool = False
    fallback: str | None = None
    vetoed_by: str | None = None
    agreement: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def direction(self) -> int:
        return 1 if self.raw_score > 0 else -1 if self.raw_score < 0 else 0

    def to_json(self) -> dict:
        return _jsonable(  # one C pass for every vote's details
            {
                "action": self.action,
                "confidence": round(self.confidence, 6),
                "raw_score": round(self.raw_score, 6),
                "size": round(self.size, 6),
                "votes": {name: v.as_dict() for name, v in self.votes.items()},
                "weights": {k: round(v, 6) for k, v in self.weights.items()},
                "threshold": self.threshold,
                "agreement": round(self.agreement, 6),
                "explanation": self.explanation,
                "conservative": self.conservative,
                "fallback": self.fallback,
                "vetoed_by": self.vetoed_by,
                "failures": dict(self.failures),
            }
        )


def _is_directional(name: str) -> bool:
    cls = REGISTRY.get(name)
    return True if cls is None else cls.directional


def _pav(values: list[float], weights: list[float]) -> list[float]:
    """Pool adjacent violators: the closest non-decreasing sequence (weighted least squares)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights, strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            tw = w1 + w2
            blocks.append([(m1 * w1 + m2 * w2) / tw if tw else (m1 + m2) / 2, tw, c1 + c2])
    out: list[float] = []
    for m, _, c in blocks:
        out.extend([m] * c)
    return out


class ConsensusEngine:
    """Weights, accuracy window and reliability table for one flow; see the module docstring."""

    def __init__(self, flow: Mapping[str, Any] | None = None):
        self.flow = resolve_flow(flow)
        self._flow_src: Any = flow
        self._log_w: dict[str, dict[str, float]] = {}  # symbol -> agent -> log weight
        self._hits: dict[str, dict[str, list[float]]] = {}  # symbol -> agent -> [ew hits, ew count]
        self._window: deque[int] = deque(maxlen=int(self.flow["conservative"]["window"]))
        self.conservative = False
        self.outcomes = 0
        self.flat_outcomes = 0
        self.threshold_offset = 0.0  # the adaptive threshold's move from the flow's min_confidence
        self._actionable: deque[int] = deque(maxlen=int(self.flow["adaptive"]["window"]))
        self._reset_calibration()

    # --- configuration ---------------------------------------------------------------------------

    def _reset_calibration(self) -> None:
        cal = self.flow["calibration"]
        self._edges = [float(e) for e in cal["edges"]]
        k = len(self._edges)
        self._cal_n = [0.0] * k
        self._cal_hits = [0.0] * k
        self._table = self._compute_table()

    def _flow_for(self, flow: Mapping[str, Any] | None) -> dict[str, Any]:
        """Resolved flow; a flow passed to ``decide`` is resolved once per distinct object (flows
        are treated as values: build a new dict to change one)."""
        if flow is None or flow is self._flow_src:
            return self.flow
        cached = getattr(self, "_other_flow", None)
        if cached is not None and cached[0] is flow:
            return cached[1]
        resolved = resolve_flow(flow)
        self._other_flow = (flow, resolved)
        return resolved

    # --- weights -----------------------------------------------------------------------------------

    def _symbol_weights(self, symbol: str, names: Iterable[str], flow: Mapping[str, Any]) -> dict[str, float]:
        table = self._log_w.get(symbol)
        if table is None:
            table = self._log_w[symbol] = {}
        init = flow["weights"]
        for name in names:
            if name not in table:
                table[name] = math.log(init.get(name, 1.0))
        return table

    def weights(self, symbol: str) -> dict[str, float]:
        """Normalised learned weights of the directional agents for ``symbol`` (priors when unseen)."""
        init = self.flow["weights"]
        table = dict(self._log_w.get(symbol, {}))  # a copy: asking must not create state
        for name in self.flow["agents"]:
            if _is_directional(name) and name not in table:
                table[name] = math.log(init.get(name, 1.0))
        if not table:
            return {}
        top = max(table.values())
        raw = {a: math.exp(lw - top) for a, lw in table.items()}
        total = sum(raw.values())
        return {a: w / total for a, w in raw.items()}

    def hit_rate(self, symbol: str, agent: str) -> tuple[float, float]:
        """(exponentially weighted hit rate, effective number of outcomes) for an agent."""
        h = self._hits.get(symbol, {}).get(agent)
        return (0.5, 0.0) if not h or h[1] == 0 else (h[0] / h[1], h[1])

    # --- calibration -------------------------------------------------------------------------------

    def _bin(self, strength: float) -> int:
        return max(0, bisect_right(self._edges, strength) - 1)

    def _prior(self, i: int) -> float:
        edges = self._edges
        hi = edges[i + 1] if i + 1 < len(edges) else 1.0
        mid = (edges[i] + hi) / 2
        return 0.5 + self.flow["calibration"]["shrink"] * mid / 2

    def _compute_table(self) -> list[float]:
        a = self.flow["calibration"]["prior_strength"]
        post, wts = [], []
        for i in range(len(self._edges)):
            n, h = self._cal_n[i], self._cal_hits[i]
            post.append((h + a * self._prior(i)) / (n + a) if n + a > 0 else 0.5)
            wts.append(n + a)
        return _pav(post, wts)

    def calibrated(self, raw_score: float) -> float:
        """P(the direction of ``raw_score`` is right), from the reliability table."""
        return self._table[self._bin(abs(raw_score))]

    # --- deciding ----------------------------------------------------------------------------------

    def decide(
        self,
        votes: Mapping[str, Vote],
        *,
        symbol: str,
        flow: Mapping[str, Any] | None = None,
        failures: Mapping[str, str] | None = None,
    ) -> Decision:
        """One decision from the agents' votes. ``failures`` (from :func:`run_agents`) names agents
        that raised or timed out; agents of the flow with neither a vote nor a failure count as failed."""
        f = self._flow_for(flow)
        failed = dict(failures or {})
        for name in f["agents"]:
            if name not in votes and name not in failed:
                failed[name] = "no vote"
        cons = f["conservative"]
        conservative = self.conservative
        base = self.min_confidence(f)
        min_conf = max(base, cons["min_confidence"]) if conservative else base
        min_agree = max(f["min_agreement"], cons["min_agreement"]) if conservative else f["min_agreement"]

        # partition: directional voters, advisory votes
        voters: list[tuple[str, Vote]] = []
        scale: dict[str, float] = {}
        for name, vote in votes.items():
            if _is_directional(name):
                if not vote.abstained:
                    voters.append((name, vote))
            elif "scale" in vote.details:
                scale.update(vote.details["scale"])
        table = self._symbol_weights(symbol, [n for n, _ in voters], f)
        top = max((table[n] for n, _ in voters), default=0.0)
        eff = {n: math.exp(table[n] - top) * scale.get(n, 1.0) for n, _ in voters}
        wsum = sum(eff.values())
        weights = {n: w / wsum for n, w in eff.items()} if wsum > 0 else {}

        failed_directional = [n for n in failed if _is_directional(n)]
        fallback = None
        notes: list[str] = []
        if failed:
            notes.append("failed: " + ", ".join(f"{n} ({why})" for n, why in failed.items()))
        if not voters or wsum <= 0:
            return self._hold(votes, weights, min_conf, conservative, failed, "no directional agent voted", notes)

        if failed_directional and len(voters) < f["min_voters"]:
            fallback = max(voters, key=lambda nv: (table[nv[0]], nv[1].confidence))[0]
            vote = votes[fallback]
            score = vote.direction * vote.confidence
            hr, n = self.hit_rate(symbol, fallback)
            a = f["calibration"]["prior_strength"]
            p = 0.5 + (hr - 0.5) * n / (n + a) if vote.direction else 0.5
            agreement = 1.0 if vote.direction else 0.0
            notes.append(
                f"fallback to {fallback} alone ({len(voters)} directional voter(s) left < {f['min_voters']}); "
                f"its hit rate {hr:.2f} over {n:.0f} outcomes"
            )
            buy = sell = 0.0
        else:
            score = buy = sell = 0.0
            for n, v in voters:
                wc = weights[n] * v.confidence
                if v.action == "BUY":
                    buy += wc
                elif v.action == "SELL":
                    sell += wc
            score = buy - sell
            p = self.calibrated(score)
            side = "BUY" if score > 0 else "SELL"
            agreement = sum(weights[n] for n, v in voters if v.action == side) if score else 0.0

        direction = 1 if score > 0 else -1 if score < 0 else 0
        action = "BUY" if direction > 0 else "SELL" if direction < 0 else "HOLD"
        why = ""
        if direction == 0:
            why = "the weighted score is 0"
        elif fallback is None and min(buy, sell) / (buy + sell) >= f["conflict_share"]:
            why = f"strong disagreement: BUY {buy:.2f} vs SELL {sell:.2f} (minority >= {f['conflict_share']:.0%})"
        elif p < min_conf:
            why = f"calibrated confidence {p:.3f} < {min_conf:.2f}"
        elif agreement < min_agree:
            why = f"agreement {agreement:.2f} < {min_agree:.2f}"

        vetoed_by = None
        if not why:
            for name, v in votes.items():
                if v.veto and action in v.details.get("veto_sides", ("BUY", "SELL")):
                    vetoed_by = name
                    why = f"vetoed by {name}: {v.reason}"
                    break
        if not why:
            for name, v in votes.items():
                be = v.details.get("breakeven_p")
                if be is not None and p < be:
                    why = f"edge below costs ({name}): confidence {p:.3f} < break-even {be:.3f}"
                    break

        size = 0.0
        if not why:
            sz = votes["sizing"].details if "sizing" in votes and "kelly_fraction" in votes["sizing"].details else None
            sz = sz or f["sizing"]
            size = capped_kelly(p, sz["payoff"], sz["kelly_fraction"], sz["max_size"])
            if conservative:
                size *= cons["size_multiplier"]
            capped_by = None
            for name, v in votes.items():
                if v.size_cap is not None and v.size_cap < size:
                    size, capped_by = v.size_cap, name
            if size <= 0:
                cap_reason = votes[capped_by].reason if capped_by else "no edge for Kelly"
                why = f"size 0 ({capped_by or 'sizing'}: {cap_reason})"
            elif capped_by:
                notes.append(f"size capped by {capped_by} at {size:.3f}")

        if why:
            final, size = "HOLD", 0.0
        else:
            final = action
        explanation = self._explain(
            final, action, score, p, min_conf, agreement, min_agree, voters, weights, votes, why, notes, conservative
        )
        return Decision(
            action=final,
            confidence=p,
            raw_score=score,
            size=size,
            votes=dict(votes),
            weights=weights,
            threshold=min_conf,
            explanation=explanation,
            conservative=conservative,
            fallback=fallback,
            vetoed_by=vetoed_by,
            agreement=agreement,
            failures=failed,
        )

    def _hold(self, votes, weights, min_conf, conservative, failed, why, notes) -> Decision:
        text = f"HOLD: {why}." + ("" if not notes else " " + "; ".join(notes) + ".")
        return Decision("HOLD", 0.5, 0.0, 0.0, dict(votes), weights, min_conf, text, conservative, failures=failed)

    @staticmethod
    def _explain(final, action, score, p, min_conf, agreement, min_agree, voters, weights, votes, why, notes, cons):
        side = action if action != "HOLD" else "no side"
        parts = []
        if final == "HOLD":
            parts.append(f"HOLD (consensus leans {side}, score {score:+.3f}): {why}.")
        else:
            parts.append(
                f"{final}: weighted score {score:+.3f}, calibrated confidence {p:.3f} >= {min_conf:.2f}, "
                f"agreement {agreement:.2f} >= {min_agree:.2f}."
            )
        pro = [f"{n} (w {weights[n]:.2f} x c {v.confidence:.2f})" for n, v in voters if v.action == action]
        con = [
            f"{n} (w {weights[n]:.2f} x c {v.confidence:.2f})" for n, v in voters if v.action not in (action, "HOLD")
        ]
        neutral = [n for n, v in voters if v.action == "HOLD"]
        if pro:
            parts.append(f"For {side}: " + ", ".join(pro) + ".")
        if con:
            parts.append("Against: " + ", ".join(con) + ".")
        if neutral:
            parts.append("HOLD: " + ", ".join(neutral) + ".")
        advisory = [f"{n}: {v.reason}" for n, v in votes.items() if not _is_directional(n)]
        if advisory:
            parts.append("Advisory: " + "; ".join(advisory) + ".")
        if cons:
            parts.append("Conservative mode: recent consensus accuracy is below its limit.")
        if notes:
            parts.append("; ".join(notes) + ".")
        return " ".join(parts)

    # --- learning ----------------------------------------------------------------------------------

    def record_outcome(
        self, symbol: str, votes: Mapping[str, Vote], decision: Decision, realized_direction: int
    ) -> None:
        """Learn from the resolved bar: +1 up, -1 down, 0 flat (skipped: it says nothing about direction)."""
        if realized_direction not in (-1, 0, 1) or isinstance(realized_direction, bool):
            raise ApplicationError(
                "invalid_outcome", f"realized_direction must be -1, 0 or +1, got {realized_direction!r}."
            )
        if realized_direction == 0:
            self.flat_outcomes += 1
            return
        y = realized_direction
        f = self.flow
        self.outcomes += 1
        eta, alpha = f["learning_rate"], f["fixed_share"]
        decay = 0.5 ** (1.0 / f["hit_rate_halflife"])
        table = self._log_w.setdefault(symbol, {})
        hits = self._hits.setdefault(symbol, {})
        init = f["weights"]
        updated = False
        for name, v in votes.items():
            if not _is_directional(name) or v.abstained:
                continue
            d = v.direction
            lw = table.get(name)
            if lw is None:
                lw = math.log(init.get(name, 1.0))
            table[name] = lw - eta * (1.0 - d * y * v.confidence) / 2.0
            updated = True
            if d:
                h = hits.get(name)
                if h is None:
                    h = hits[name] = [0.0, 0.0]
                h[0] = h[0] * decay + (d == y)
                h[1] = h[1] * decay + 1.0
        if updated and alpha > 0 and len(table) > 1:
            top = max(table.values())
            w = {a: math.exp(lw - top) for a, lw in table.items()}
            total = sum(w.values())
            share = alpha / len(w)
            for a, x in w.items():
                table[a] = math.log((1 - alpha) * x / total + share)

        s = decision.direction
        if s:
            hit = int(s == y)
            self._adapt(decision.action, hit)
            self._window.append(hit)
            cons = f["conservative"]
            if len(self._window) >= cons["min_samples"]:
                acc = sum(self._window) / len(self._window)
                if not self.conservative and acc < cons["enter_below"]:
                    self.conservative = True
                elif self.conservative and acc >= cons["exit_above"]:
                    self.conservative = False
            if decision.fallback is None:
                lam = 0.5 ** (1.0 / f["calibration"]["halflife"])
                n, h = self._cal_n, self._cal_hits
                for i in range(len(n)):
                    n[i] *= lam
                    h[i] *= lam
                b = self._bin(abs(decision.raw_score))
                n[b] += 1.0
                h[b] += hit
                self._table = self._compute_table()

    def min_confidence(self, flow: Mapping[str, Any] | None = None) -> float:
        """The flow's ``min_confidence``, moved by the adaptive threshold within its bounds."""
        f = flow if flow is not None else self.flow
        a = f["adaptive"]
        if not a["enabled"]:
            return f["min_confidence"]
        return min(a["ceiling"], max(a["floor"], f["min_confidence"] + self.threshold_offset))

    def _adapt(self, action: str, hit: int) -> None:
        """Adaptive threshold: after each resolved BUY/SELL, raise ``min_confidence`` one step while
        their recent precision is under target, lower it one step while it is clearly above (more
        trades at the same quality), never outside [floor, ceiling]."""
        a = self.flow["adaptive"]
        if action not in ("BUY", "SELL"):
            return
        self._actionable.append(hit)
        if not a["enabled"] or len(self._actionable) < a["min_samples"]:
            return
        precision = sum(self._actionable) / len(self._actionable)
        if precision < a["target_precision"]:
            self.threshold_offset += a["step"]
        elif precision > a["target_precision"] + a["margin"]:
            self.threshold_offset -= a["step"]
        base = self.flow["min_confidence"]
        self.threshold_offset = min(a["ceiling"] - base, max(a["floor"] - base, self.threshold_offset))

    # --- reporting / persistence -------------------------------------------------------------------

    def accuracy(self) -> float | None:
        """The consensus direction's hit rate over the recent window (None before any outcome)."""
        return sum(self._window) / len(self._window) if self._window else None

    def calibration_table(self) -> list[dict]:
        edges = self._edges
        rows = []
        for i in range(len(edges)):
            n = self._cal_n[i]
            rows.append(
                {
                    "from": edges[i],
                    "to": edges[i + 1] if i + 1 < len(edges) else 1.0,
                    "outcomes": round(n, 2),
                    "observed": round(self._cal_hits[i] / n, 4) if n > 0 else None,
                    "confidence": round(self._table[i], 4),
                }
            )
        return rows

    def status(self) -> dict:
        """For the ensemble-status endpoint: who weighs what, how right they have been, and why."""
        agents = {}
        for symbol in sorted(self._log_w):
            agents[symbol] = {
                name: {
                    "weight": round(w, 6),
                    "hit_rate": round(self.hit_rate(symbol, name)[0], 4),
                    "outcomes": round(self.hit_rate(symbol, name)[1], 2),
                }
                for name, w in self.weights(symbol).items()
            }
        cons = self.flow["conservative"]
        acc = self.accuracy()
        return {
            "agents": self.flow["agents"],
            "weights": agents,
            "conservative": {
                "active": self.conservative,
                "accuracy": None if acc is None else round(acc, 4),
                "window": len(self._window),
                "enter_below": cons["enter_below"],
                "exit_above": cons["exit_above"],
            },
            "threshold": {
                "min_confidence": round(self.min_confidence(), 4),
                "adaptive": self.flow["adaptive"]["enabled"],
                "floor": self.flow["adaptive"]["floor"],
                "ceiling": self.flow["adaptive"]["ceiling"],
                "actionable_precision": (
                    round(sum(self._actionable) / len(self._actionable), 4) if self._actionable else None
                ),
                "actionable_outcomes": len(self._actionable),
            },
            "calibration": self.calibration_table(),
            "outcomes": self.outcomes,
            "flat_outcomes": self.flat_outcomes,
        }

    def to_json(self) -> dict:
        return {
            "version": STATE_VERSION,
            "flow": self.flow,
            "log_weights": self._log_w,
            "hits": self._hits,
            "window": list(self._window),
            "conservative": self.conservative,
            "outcomes": self.outcomes,
            "flat_outcomes": self.flat_outcomes,
            "calibration": {"n": self._cal_n, "hits": self._cal_hits},
            "threshold_offset": self.threshold_offset,
            "actionable": list(self._actionable),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConsensusEngine:
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise ApplicationError("invalid_state", f"Consensus state must be an object of version {STATE_VERSION}.")
        try:
            engine = cls(data["flow"])
            engine._log_w = {s: {a: float(x) for a, x in t.items()} for s, t in data["log_weights"].items()}
            engine._hits = {s: {a: [float(h[0]), float(h[1])] for a, h in t.items()} for s, t in data["hits"].items()}
            engine._window.extend(int(x) for x in data["window"])
            engine.conservative = bool(data["conservative"])
            engine.outcomes = int(data["outcomes"])
            engine.flat_outcomes = int(data.get("flat_outcomes", 0))
            cal = data["calibration"]
            if len(cal["n"]) != len(engine._edges) or len(cal["hits"]) != len(engine._edges):
                raise ValueError("calibration bins do not match the flow's edges")
            engine._cal_n = [float(x) for x in cal["n"]]
            engine._cal_hits = [float(x) for x in cal["hits"]]
            engine.threshold_offset = float(data.get("threshold_offset", 0.0))  # absent in older states
            engine._actionable.extend(int(x) for x in data.get("actionable", ()))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ApplicationError("invalid_state", f"Consensus state is malformed: {exc}") from exc
        engine._table = engine._compute_table()
        return engine
