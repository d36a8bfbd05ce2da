"""Decision latency: all agents on a realistic context plus ``ConsensusEngine.decide``, in-process.

Run alone with ``python -m benchmarks.decisions``. Target on the 2-core machine: p99 <= 1 ms for one
whole decision, including a single-row XGBoost predict (the production model's prediction, which
the ML agent then turns into a vote).

The stream: 20,000 hourly bars of the seeded synthetic market, the agents' feature set computed
beforehand (live, the incremental feature engine does that once per bar, outside the decision), a
tenant's headlines, fundamentals, position, pair and spread. The model: an XGBClassifier (200 trees,
depth 4) fitted on random data over the agents' feature columns, wrapped in the registry's
``ModelBundle`` like a production version. Outcomes are recorded between decisions (untimed), so the
engine's state evolves as it would live.
"""

from __future__ import annotations

import gc
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

DECISIONS = 20_000
WARMUP = 1_000


def _bundle(columns: list[str]):
    import numpy as np

    try:
        import xgboost as xgb

        from models_registry.ml.artifacts import ModelBundle
    except Exception:  # noqa: BLE001 - the bench still measures the agents without a model
        return None
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, len(columns)))
    y = (X[:, 0] + X[:, 3] * 0.5 + rng.standard_normal(3000) > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1, n_jobs=1).fit(X, y)
    return ModelBundle(members=[model], weights=[1.0], task="binary", classes=["down", "up"], feature_names=columns)


def run() -> list[str]:
    import django

    django.setup()
    import numpy as np

    from features.engine import compute_batch
    from intelligence.agents import Context, build_agents
    from intelligence.agents.features import agent_feature_spec
    from intelligence.consensus import ConsensusEngine, agent_settings, resolve_flow, run_agents
    from marketdata.synthetic import generate_bars

    timeframe = "1h"
    spec = agent_feature_spec(timeframe)
    start = spec.warmup(timeframe) + 200  # every column has a value, and 200 closes exist
    n = start + DECISIONS + WARMUP + 1  # +1: the last decision's outcome
    bars = generate_bars(n, timeframe=timeframe, seed=11, planted_signal=0.05)
    feats = compute_batch(bars, spec, timeframe)
    columns = spec.columns()
    rows = [dict(zip(columns, map(float, r), strict=True)) for r in feats.to_numpy()[start:]]
    closes = bars["close"].to_numpy()
    direction = np.sign(np.diff(closes))
    rng = np.random.default_rng(1)
    partner = closes * np.exp(rng.normal(0, 0.002, len(closes)))

    # low fees so that some decisions pass the cost gate and the sizing path is exercised too
    flow = resolve_flow({"agents": [*resolve_flow(None)["agents"], "portfolio"], "fees_bps": 1.0, "slippage_bps": 0.5})
    settings = agent_settings(flow)
    settings["portfolio"] = {"weights": {"SYN": 0.3, "PEER": 0.7}}
    agents = build_agents(flow["agents"], flow["settings"])
    engine = ConsensusEngine(flow)
    bundle = _bundle(columns)
    headlines = ["Acme beats estimates as profits surge", "Regulator opens probe into rival"]
    fundamentals = {"pe": 14.0, "earnings_surprise": 0.03, "revenue_growth": 0.08, "debt_to_equity": 0.6}
    timeout = flow["agent_timeout_ms"]

    clock = time.perf_counter_ns
    total, agents_only, predict_only = [], [], []
    actions: dict[str, int] = {}
    per_agent: dict[str, list[float]] = {a.name: [] for a in agents}
    gc.collect()
    gc.freeze()  # setup objects (bars, rows) out of the collector's way, as in a long-running worker
    for i, row in enumerate(rows[: DECISIONS + WARMUP]):
        bar = start + i
        t0 = clock()
        if bundle is not None:
            x = np.fromiter((row[c] for c in columns), dtype=np.float64, count=len(columns))
            ml = bundle.predict_one(x)
        else:
            ml = {"class": "up", "probabilities": {"down": 0.45, "up": 0.55}}
        t1 = clock()
        ctx = Context(
            symbol="SYN",
            timeframe=timeframe,
            ts=bar,
            features=row,
            closes=closes[bar - 199 : bar + 1],
            ml=ml,
            headlines=headlines,
            fundamentals=fundamentals,
            position={"qty": 10.0, "avg_price": 100.0, "unrealised_pnl": 5.0, "exposure": 0.3, "drawdown": 0.04},
            pair={"symbol": "PEER", "closes": partner[bar - 199 : bar + 1]},
            settings=settings,
            spread_bps=4.0,
        )
        run_ = run_agents(agents, ctx, timeout_ms=timeout)
        decision = engine.decide(run_.votes, symbol="SYN", failures=run_.failures)
        t2 = clock()
        engine.record_outcome("SYN", run_.votes, decision, int(direction[bar]))
        if i >= WARMUP:
            total.append(t2 - t0)
            agents_only.append(t2 - t1)
            predict_only.append(t1 - t0)
            actions[decision.action] = actions.get(decision.action, 0) + 1
            for name, ms in run_.elapsed_ms.items():
                per_agent[name].append(ms)

    def pct(values):
        values = sorted(values)
        return values[len(values) // 2] / 1000, values[int(len(values) * 0.99)] / 1000, values[-1] / 1000

    lines = []
    for label, values in (
        ("decision total (predict + agents + decide)", total),
        ("agents + decide (no predict)", agents_only),
        ("xgboost predict_one (200 trees)" if bundle is not None else "no model (xgboost unavailable)", predict_only),
    ):
        p50, p99, mx = pct(values)
        lines.append(f"{label:44s} p50 {p50:7.1f} us   p99 {p99:7.1f} us   max {mx:8.1f} us")
    lines.append(
        "per-agent p50 us: "
        + ", ".join(f"{name} {sorted(v)[len(v) // 2] * 1000:.1f}" for name, v in per_agent.items() if v)
    )
    lines.append(
        f"{DECISIONS:,} decisions, {len(agents)} agents; actions {actions}; "
        f"conservative {engine.conservative}; consensus accuracy {engine.accuracy():.3f}"
    )
    return lines


def bench_decide() -> None:
    for line in run():
        print(line, flush=True)


if __name__ == "__main__":
    bench_decide()
