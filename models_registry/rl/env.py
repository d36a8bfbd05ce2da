"""The trading environment: one step per bar, the action is the position to hold over the next bar.

State at bar ``t`` uses data up to ``t``'s close only: the last ``n_lags`` bar returns
(``close[t-k] / close[t-k-1] - 1``, scaled and clipped), their signs, the feature row at ``t``
(standardised with the TRAINING window's mean and deviation, clipped) and the position held.
Reward of holding ``pos`` from ``t`` to ``t+1``: ``pos * (close[t+1] / close[t] - 1)`` minus
``fee_bps`` per unit of position change (flat -> long is 1 unit, long -> short 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POSITION_SETS = {"long_short": (-1, 0, 1), "long_flat": (0, 1)}
CLIP = 3.0


def bar_returns(close: np.ndarray) -> np.ndarray:
    """``close[t] / close[t-1] - 1``, 0 for the first bar (known at ``t``'s close)."""
    close = np.asarray(close, dtype=np.float64)
    out = np.zeros(close.shape[0])
    out[1:] = close[1:] / close[:-1] - 1.0
    return out


@dataclass
class StateSpec:
    """How a bar becomes a state vector: fitted on the training window only, stored in the artifact."""

    n_lags: int = 3
    feature_names: list[str] = field(default_factory=list)
    ret_scale: float = 0.01
    feat_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    feat_std: np.ndarray = field(default_factory=lambda: np.ones(0))

    @classmethod
    def fit(cls, close: np.ndarray, features: np.ndarray | None, names: list[str], n_lags: int = 3) -> StateSpec:
        r = bar_returns(close)[1:]
        scale = float(np.std(r)) if r.size > 1 and np.std(r) > 0 else 0.01
        if features is None or not names:
            return cls(n_lags=n_lags, feature_names=[], ret_scale=scale)
        f = np.asarray(features, dtype=np.float64)
        mean = np.nanmean(f, axis=0)
        std = np.nanstd(f, axis=0)
        return cls(
            n_lags=n_lags,
            feature_names=list(names),
            ret_scale=scale,
            feat_mean=np.nan_to_num(mean),
            feat_std=np.where(np.isfinite(std) & (std > 0), std, 1.0),
        )

    @property
    def n_market(self) -> int:
        return 2 * self.n_lags + len(self.feature_names)

    def market_states(self, close: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """(n, n_market): row ``t`` from bars ``<= t`` only; rows before ``n_lags`` are zero-padded."""
        r = bar_returns(close)
        n = r.shape[0]
        lags = np.zeros((n, self.n_lags))
        for k in range(self.n_lags):
            lags[k:, k] = r[: n - k] if k else r
        scaled = np.clip(lags / self.ret_scale, -CLIP, CLIP)
        cols = [scaled, np.sign(lags)]
        if self.feature_names:
            f = np.asarray(features, dtype=np.float64)
            z = (f - self.feat_mean) / self.feat_std
            cols.append(np.clip(np.nan_to_num(z), -CLIP, CLIP))
        return np.hstack(cols)

    def to_json(self) -> dict:
        return {"n_lags": self.n_lags, "feature_names": list(self.feature_names), "ret_scale": self.ret_scale}


class TradingEnv:
    """Steps over bars ``start .. end-1`` (each needs ``close[t+1]``, so ``end`` is exclusive of the
    last bar rewarded). ``reset`` starts flat; ``step(a)`` holds ``positions[a]`` over the next bar."""

    def __init__(
        self,
        close: np.ndarray,
        market: np.ndarray,
        *,
        positions: tuple[int, ...] = (-1, 0, 1),
        fee_bps: float = 10.0,
        start: int = 0,
        end: int | None = None,
    ):
        self.close = np.asarray(close, dtype=np.float64)
        self.market = market
        self.positions = tuple(positions)
        self.fee = fee_bps / 1e4
        self.start = start
        self.end = (len(self.close) - 1) if end is None else min(end, len(self.close) - 1)
        if self.end - self.start < 2:
            raise ValueError("the environment needs at least two steps")
        self.next_ret = np.zeros(len(self.close))
        self.next_ret[:-1] = self.close[1:] / self.close[:-1] - 1.0
        self.t = start
        self.pos = 0

    @property
    def n_actions(self) -> int:
        return len(self.positions)

    @property
    def state_dim(self) -> int:
        return self.market.shape[1] + 1

    def state(self) -> np.ndarray:
        return np.append(self.market[self.t], float(self.pos))

    def reset(self) -> np.ndarray:
        self.t, self.pos = self.start, 0
        return self.state()

    def reward(self, t: int, prev_pos: int, pos: int) -> float:
        return pos * self.next_ret[t] - self.fee * abs(pos - prev_pos)

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        new = self.positions[action]
        r = self.reward(self.t, self.pos, new)
        self.pos = new
        self.t += 1
        done = self.t >= self.end
        return self.state(), r, done
