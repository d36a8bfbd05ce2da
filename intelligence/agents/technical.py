"""Technical agent: RSI, MACD and Bollinger %B combined into one score, confirmed on a coarser timeframe.

Each component is mapped to [-1, 1] with the textbook reading (RSI 30/70, MACD histogram sign and
size relative to ATR, price at the lower / upper band), so the weights in the settings mean what
they say. The coarser-timeframe RSI and MACD, when the feature set has them, confirm or damp the
score rather than vote on their own: a 1h oversold bounce against a falling daily trend is a
weaker signal than one with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from intelligence.agents.base import Context, FeatureAgent, Vote, clip, directional_vote, register
from intelligence.agents.features import higher_timeframe_columns


@register
class TechnicalAgent(FeatureAgent):
    name = "technical"
    tier = "basic"
    summary = "RSI / MACD / Bollinger %B, confirmed by the coarser timeframe when available"
    required_features = ("rsi_14", "macd_hist_12_26_9", "bb_percent_b_20_2", "atr_14")
    default_settings = {
        "oversold": 30.0,
        "overbought": 70.0,
        "w_rsi": 0.4,
        "w_macd": 0.3,
        "w_bb": 0.3,
        "macd_atr_scale": 0.2,  # a histogram of 0.2 ATR counts as a full-strength MACD signal
        "threshold": 0.2,
        "htf_agree_boost": 1.25,
        "htf_disagree_damp": 0.5,
    }

    def decide(self, ctx: Context, f: Mapping[str, float], p: dict[str, Any]) -> Vote:
        rsi, hist, pb, atr = f["rsi_14"], f["macd_hist_12_26_9"], f["bb_percent_b_20_2"], f["atr_14"]
        mid = (p["oversold"] + p["overbought"]) / 2
        half = (p["overbought"] - p["oversold"]) / 2 or 1.0
        rsi_c = clip((mid - rsi) / half)  # RSI 30 -> +1 (oversold, buy), 70 -> -1
        macd_c = math.tanh(hist / (p["macd_atr_scale"] * atr)) if atr > 0 else 0.0
        bb_c = clip((0.5 - pb) * 2)  # at the lower band -> +1
        wsum = p["w_rsi"] + p["w_macd"] + p["w_bb"] or 1.0
        score = (p["w_rsi"] * rsi_c + p["w_macd"] * macd_c + p["w_bb"] * bb_c) / wsum
        details = {"rsi": rsi, "rsi_c": rsi_c, "macd_c": macd_c, "bb_c": bb_c, "score": score}
        htf = higher_timeframe_columns(ctx.timeframe)
        confirmation = ""
        if htf is not None:
            h_rsi, h_hist = f.get(htf[0]), f.get(htf[1])
            if h_rsi is not None and h_rsi == h_rsi and h_hist is not None and h_hist == h_hist:
                h_score = 0.5 * clip((mid - h_rsi) / half) + 0.5 * (1.0 if h_hist > 0 else -1.0 if h_hist < 0 else 0.0)
                agree = h_score * score > 0
                score = clip(score * (p["htf_agree_boost"] if agree else p["htf_disagree_damp"]))
                details["htf_score"] = h_score
                confirmation = "; coarser timeframe " + ("agrees" if agree else "disagrees")
        details["score"] = score
        reason = f"RSI {rsi:.0f}, MACD {'+' if macd_c >= 0 else '-'}, %B {pb:.2f} -> score {score:+.2f}{confirmation}"
        return directional_vote(score, p["threshold"], reason, details)
