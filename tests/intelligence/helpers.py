"""Hand-made agent contexts: a neutral feature row every test tweaks, and a realistic one from synthetic bars."""

from __future__ import annotations

import numpy as np

from intelligence.agents import Context
from intelligence.agents.features import AGENT_FEATURE_SPEC, agent_feature_spec

NEUTRAL: dict[str, float] = {
    "rsi_14": 50.0,
    "macd_12_26_9": 0.0,
    "macd_signal_12_26_9": 0.0,
    "macd_hist_12_26_9": 0.0,
    "bb_percent_b_20_2": 0.5,
    "bb_width_20_2": 0.05,
    "adx_14": 15.0,
    "plus_di_14": 20.0,
    "minus_di_14": 20.0,
    "ema_20": 100.0,
    "ema_50": 100.0,
    "sma_200": 100.0,
    "zscore_20": 0.0,
    "atr_14": 1.0,
    "volatility_20": 0.01,
    "volatility_100": 0.01,
    "returns_log_1": 0.0,
    "returns_log_5": 0.0,
    **{c: 0.0 for c in AGENT_FEATURE_SPEC.columns() if c.startswith("cdl_")},
}
assert set(NEUTRAL) == set(AGENT_FEATURE_SPEC.columns())


def make_ctx(timeframe: str = "1d", close: float = 100.0, **kwargs) -> Context:
    """A context on neutral features; ``features={...}`` overrides columns, other kwargs Context fields."""
    features = {**NEUTRAL, **kwargs.pop("features", {})}
    closes = kwargs.pop("closes", np.full(50, close))
    flat = {"qty": 0.0, "avg_price": 0.0, "unrealised_pnl": 0.0, "exposure": 0.0, "drawdown": 0.0}
    kwargs.setdefault("position", flat)
    symbol = kwargs.pop("symbol", "TEST")
    return Context(symbol=symbol, timeframe=timeframe, ts=0, features=features, closes=closes, **kwargs)


def realistic_ctx(n: int = 700, seed: int = 3, timeframe: str = "1h") -> Context:
    """The last bar of a synthetic market, with the agents' real feature row and tenant inputs."""
    from features.engine import compute_batch
    from marketdata.synthetic import generate_bars

    bars = generate_bars(n, timeframe=timeframe, seed=seed)
    feats = compute_batch(bars, agent_feature_spec(timeframe), timeframe)
    row = {k: float(v) for k, v in feats.iloc[-1].items()}
    closes = bars["close"].to_numpy()[-200:]
    partner = closes * np.exp(np.random.default_rng(seed).normal(0, 0.002, len(closes)))
    return Context(
        symbol="SYN",
        timeframe=timeframe,
        ts=bars.index[-1],
        features=row,
        closes=closes,
        ml={"label": 1, "class": "up", "probabilities": {"down": 0.41, "up": 0.59}},
        headlines=["Acme beats estimates as profits surge", "Regulator opens probe into rival"],
        fundamentals={"pe": 14.0, "earnings_surprise": 0.03, "revenue_growth": 0.08, "debt_to_equity": 0.6},
        position={"qty": 10.0, "avg_price": 100.0, "unrealised_pnl": 12.0, "exposure": 0.3, "drawdown": 0.04},
        pair={"symbol": "PEER", "closes": partner},
        spread_bps=4.0,
    )


def clear_streams(schema: str) -> None:
    """Empty a tenant's event streams (and leases) in Redis: each stream test starts from nothing."""
    from eventbus import bus

    for pattern in (f"stream:{schema}:*", f"lease:{schema}:*"):
        for key in bus.client().scan_iter(pattern):
            bus.client().delete(key)


def live_market(tenant, symbol: str, *, seed: int, live: int, history: int = 300) -> list[dict]:
    """``history`` stored daily bars of ``symbol`` and the next ``live`` bars as replay events."""
    from django_tenants.utils import schema_context

    from intelligence import replay
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table

    bars = generate_bars(history, seed=seed)
    with schema_context(tenant.schema_name):
        md_services.bars_import(tenant=tenant, symbol=symbol, timeframe="1d", raw=read_table(as_csv(bars), "csv"))
    last = int(bars.index[-1].timestamp())
    events = replay.live_events(bars, symbol, "1d", after_ts=last, last_close=float(bars["close"].iloc[-1]))
    return [next(events) for _ in range(live)]
