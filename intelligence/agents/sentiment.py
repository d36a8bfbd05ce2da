"""Sentiment agent: a score the tenant posts, or headlines scored with a small built-in lexicon.

The lexicon ships in code (no model, no download): about 150 finance words with valences from -3 to
+3 in the spirit of VADER and Loughran-McDonald, with two rules that matter most in headlines:
negation ("not", "no", "fails to" ... flips and damps the next three words) and intensifiers
("sharply", "record" ... amplify the next word). A headline's sum is squashed to [-1, 1] with
VADER's ``s / sqrt(s^2 + 15)``; several headlines are averaged. A posted score wins over headlines:
the tenant knows its source better than a word list does.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from intelligence.agents.base import Agent, Context, Vote, abstain, clip, directional_vote, register

LEXICON: dict[str, float] = {
    # positive
    "beat": 2.0,
    "beats": 2.0,
    "beating": 1.5,
    "surge": 2.5,
    "surges": 2.5,
    "surged": 2.5,
    "soar": 2.8,
    "soars": 2.8,
    "soared": 2.8,
    "jump": 1.8,
    "jumps": 1.8,
    "jumped": 1.8,
    "rally": 2.0,
    "rallies": 2.0,
    "rallied": 2.0,
    "gain": 1.5,
    "gains": 1.5,
    "gained": 1.5,
    "rise": 1.2,
    "rises": 1.2,
    "rose": 1.2,
    "climb": 1.3,
    "climbs": 1.3,
    "up": 0.6,
    "higher": 1.0,
    "high": 0.5,
    "strong": 1.8,
    "stronger": 1.8,
    "robust": 1.8,
    "growth": 1.5,
    "grow": 1.2,
    "grows": 1.2,
    "profit": 1.5,
    "profits": 1.5,
    "profitable": 1.8,
    "upgrade": 2.2,
    "upgrades": 2.2,
    "upgraded": 2.2,
    "outperform": 2.0,
    "outperforms": 2.0,
    "buy": 1.2,
    "bullish": 2.5,
    "optimistic": 2.0,
    "optimism": 2.0,
    "record": 1.2,
    "boost": 1.8,
    "boosts": 1.8,
    "boosted": 1.8,
    "expand": 1.2,
    "expands": 1.2,
    "expansion": 1.2,
    "approval": 1.8,
    "approved": 1.8,
    "approves": 1.8,
    "win": 1.8,
    "wins": 1.8,
    "won": 1.8,
    "dividend": 1.0,
    "buyback": 1.5,
    "exceed": 2.0,
    "exceeds": 2.0,
    "exceeded": 2.0,
    "raise": 1.2,
    "raises": 1.2,
    "raised": 1.2,
    "recovery": 1.6,
    "recover": 1.4,
    "recovers": 1.4,
    "rebound": 1.6,
    "rebounds": 1.6,
    "breakthrough": 2.5,
    "partnership": 1.2,
    "innovative": 1.5,
    "positive": 1.8,
    "confident": 1.8,
    "confidence": 1.2,
    "success": 2.0,
    "successful": 2.0,
    "tops": 1.5,
    "top": 0.8,
    "accelerate": 1.4,
    "accelerates": 1.4,
    "resilient": 1.5,
    "upbeat": 2.0,
    "momentum": 0.8,
    # negative
    "miss": -2.0,
    "misses": -2.0,
    "missed": -2.0,
    "plunge": -2.8,
    "plunges": -2.8,
    "plunged": -2.8,
    "plummet": -3.0,
    "plummets": -3.0,
    "crash": -3.0,
    "crashes": -3.0,
    "crashed": -3.0,
    "tumble": -2.3,
    "tumbles": -2.3,
    "tumbled": -2.3,
    "drop": -1.6,
    "drops": -1.6,
    "dropped": -1.6,
    "fall": -1.4,
    "falls": -1.4,
    "fell": -1.4,
    "decline": -1.5,
    "declines": -1.5,
    "declined": -1.5,
    "slump": -2.3,
    "slumps": -2.3,
    "slide": -1.6,
    "slides": -1.6,
    "sink": -1.8,
    "sinks": -1.8,
    "down": -0.6,
    "lower": -1.0,
    "low": -0.5,
    "weak": -1.8,
    "weaker": -1.8,
    "weakness": -1.8,
    "loss": -2.0,
    "losses": -2.0,
    "lose": -1.6,
    "loses": -1.6,
    "downgrade": -2.2,
    "downgrades": -2.2,
    "downgraded": -2.2,
    "underperform": -2.0,
    "sell": -1.2,
    "bearish": -2.5,
    "pessimistic": -2.0,
    "warning": -2.2,
    "warns": -2.2,
    "warned": -2.2,
    "cut": -1.5,
    "cuts": -1.5,
    "layoffs": -2.0,
    "layoff": -2.0,
    "lawsuit": -2.0,
    "sued": -2.0,
    "probe": -1.8,
    "investigation": -1.8,
    "fraud": -3.0,
    "scandal": -2.8,
    "bankruptcy": -3.0,
    "bankrupt": -3.0,
    "default": -2.5,
    "defaults": -2.5,
    "recall": -1.8,
    "recalls": -1.8,
    "fine": -1.2,
    "fined": -2.0,
    "penalty": -1.8,
    "delay": -1.4,
    "delayed": -1.4,
    "delays": -1.4,
    "halt": -2.0,
    "halted": -2.0,
    "suspend": -2.0,
    "suspended": -2.0,
    "risk": -0.8,
    "risks": -0.8,
    "concern": -1.4,
    "concerns": -1.4,
    "fears": -1.8,
    "fear": -1.8,
    "uncertainty": -1.5,
    "volatile": -1.0,
    "slowdown": -1.8,
    "recession": -2.5,
    "inflation": -0.8,
    "negative": -1.8,
    "disappointing": -2.2,
    "disappoints": -2.2,
    "disappointed": -2.0,
    "fails": -2.0,
    "failed": -2.0,
    "failure": -2.2,
    "shortfall": -2.0,
    "debt": -0.8,
    "downturn": -2.0,
    "selloff": -2.3,
    "writedown": -2.0,
    "impairment": -1.8,
    "resigns": -1.2,
    "exodus": -2.0,
    "breach": -2.0,
    "hack": -2.0,
}
NEGATORS = frozenset(
    {"not", "no", "never", "neither", "nor", "without", "isn't", "wasn't", "aren't", "don't", "doesn't",
     "didn't", "won't", "cannot", "can't", "unlikely", "lacks"}
)  # fmt: skip
# verbs that negate when followed by "to" ("fails to beat"), and are plain negatives otherwise
NEGATING_VERBS = frozenset({"fails", "failed", "fail"})
INTENSIFIERS: dict[str, float] = {
    "sharply": 1.4, "strongly": 1.3, "significantly": 1.3, "massive": 1.4, "huge": 1.3, "very": 1.2,
    "deeply": 1.3, "steep": 1.3, "slightly": 0.6, "modestly": 0.7, "somewhat": 0.7,
}  # fmt: skip
NEGATION_SCOPE = 3
NEGATION_FACTOR = -0.74  # VADER's: a negated positive is mildly negative, not fully negative
_TOKEN = re.compile(r"[a-z][a-z']*")


@lru_cache(maxsize=4096)
def score_headline(text: str) -> float:
    """Valence of one headline in [-1, 1]; 0 when no lexicon word occurs. Cached: the same headlines
    are seen on every bar until news changes, and scoring is pure."""
    tokens = _TOKEN.findall(text.lower())
    total, negate_left, boost = 0.0, 0, 1.0
    for i, tok in enumerate(tokens):
        if tok in NEGATORS or (tok in NEGATING_VERBS and i + 1 < len(tokens) and tokens[i + 1] == "to"):
            negate_left, boost = NEGATION_SCOPE + (tok in NEGATING_VERBS), 1.0
            continue
        factor = INTENSIFIERS.get(tok)
        if factor is not None:
            boost = factor
        else:
            valence = LEXICON.get(tok)
            if valence is not None:
                v = valence * boost
                total += v * NEGATION_FACTOR if negate_left else v
            boost = 1.0
        if negate_left:
            negate_left -= 1
    return total / math.sqrt(total * total + 15.0) if total else 0.0


def score_headlines(headlines: list[str]) -> tuple[float, list[float]]:
    scores = [score_headline(h) for h in headlines if isinstance(h, str)]
    return (sum(scores) / len(scores) if scores else 0.0), scores


@register
class SentimentAgent(Agent):
    name = "sentiment"
    tier = "advanced"
    summary = "tenant-posted sentiment score in [-1, 1], or headlines scored with a built-in lexicon"
    required_features = ()
    default_settings = {"threshold": 0.2, "max_confidence": 0.8}

    def vote(self, ctx: Context) -> Vote:
        p = self.params(ctx)
        if ctx.sentiment is not None and ctx.sentiment == ctx.sentiment:
            s = clip(float(ctx.sentiment))
            details = {"source": "posted", "score": s}
            return directional_vote(s, p["threshold"], f"posted sentiment {s:+.2f}", details, p["max_confidence"])
        if ctx.headlines:
            s, scores = score_headlines(ctx.headlines)
            details = {"source": "headlines", "score": s, "headline_scores": scores}
            reason = f"{len(scores)} headline(s), lexicon score {s:+.2f}"
            return directional_vote(s, p["threshold"], reason, details, p["max_confidence"])
        return abstain("no sentiment posted")
