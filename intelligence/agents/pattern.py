"""Pattern agent: TA-Lib candlestick patterns (computed as features, -1/0/+1) read as a weak vote.

Candlesticks are a weak signal on their own, so the confidence is capped (``max_confidence``), and a
reversal pattern counts fully only where it can reverse something: a bullish pattern after a
decline (negative 20-bar z-score), a bearish one after a rise. Continuation patterns (three
soldiers / crows) count regardless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intelligence.agents.base import Context, FeatureAgent, Vote, clip, directional_vote, register
from intelligence.agents.features import CANDLES

# pattern -> (weight, is a reversal pattern)
PATTERNS: dict[str, tuple[float, bool]] = {
    "engulfing": (1.0, True),
    "hammer": (0.6, True),
    "invertedhammer": (0.4, True),
    "hangingman": (0.5, True),
    "shootingstar": (0.6, True),
    "morningstar": (1.0, True),
    "eveningstar": (1.0, True),
    "piercing": (0.7, True),
    "darkcloudcover": (0.7, True),
    "3whitesoldiers": (0.8, False),
    "3blackcrows": (0.8, False),
}
assert set(PATTERNS) == set(CANDLES)
_COLUMNS = tuple((f"cdl_{name}", name, w, rev) for name, (w, rev) in PATTERNS.items())


@register
class PatternAgent(FeatureAgent):
    name = "pattern"
    tier = "advanced"
    summary = "TA-Lib candlestick patterns, reversals weighted by the preceding move"
    required_features = (*(c for c, *_ in _COLUMNS), "zscore_20")
    default_settings = {"max_confidence": 0.6, "out_of_context": 0.3, "threshold": 0.2}

    def decide(self, ctx: Context, f: Mapping[str, float], p: dict[str, Any]) -> Vote:
        z = f["zscore_20"]
        score, seen = 0.0, []
        for col, name, w, reversal in _COLUMNS:
            sig = f[col]
            if sig:
                if reversal and sig * z > 0:  # bullish after a rise / bearish after a fall
                    w *= p["out_of_context"]
                score += w * (1.0 if sig > 0 else -1.0)
                seen.append(f"{name}{'+' if sig > 0 else '-'}")
        if not seen:
            return Vote("HOLD", 0.0, "no candlestick pattern", {"patterns": []})
        score = clip(score)
        details = {"patterns": seen, "score": score}
        return directional_vote(score, p["threshold"], f"patterns {', '.join(seen)}", details, p["max_confidence"])
