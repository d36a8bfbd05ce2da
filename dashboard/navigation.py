"""The dashboard's areas. Later issues replace an area's placeholder with its pages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Area:
    key: str
    label: str
    icon: str  # one glyph shown before the label (no icon font to load)
    summary: str
    next_step: str
    api_hint: str = ""
    url_name: str = ""  # the area's own page once it has one (else its placeholder)
    pages: tuple[tuple[str, str], ...] = ()  # (label, url name) of the area's further pages, under it in the menu


AREAS = [
    Area(
        "market-data",
        "Market data",
        "◧",
        "Instruments and OHLCV bars, validated on import.",
        "Import bars from CSV or Parquet, or let the live replay stream them in.",
        "/api/docs/#/instruments",
        "dashboard:data",
        (("Risk", "dashboard:risk"), ("Batch jobs", "dashboard:risk-batches")),
    ),
    Area(
        "features",
        "Features",
        "∿",
        "Versioned feature sets built from technical indicators.",
        "Create a feature set from indicators (RSI, MACD, Bollinger Bands, ATR, ADX).",
        "",
        "dashboard:features",
    ),
    Area(
        "models",
        "Models",
        "◎",
        "AutoML training jobs and the model registry: versions, deploy, rollback, A/B.",
        "Start a training job on a feature set; the best honest model lands in the registry.",
        "/api/docs/#/models",
        "dashboard:models",
        (("Workflows", "dashboard:workflows"),),
    ),
    Area(
        "decisions",
        "Decisions",
        "⇅",
        "Live BUY/SELL/HOLD decisions from the agents' consensus.",
        "Deploy a model, then watch decisions arrive here and on the WebSocket feed.",
        "/api/docs/#/decisions",
        "dashboard:decisions",
        (
            ("Agent weights", "dashboard:decision-weights"),
            ("Positions & P&L", "dashboard:positions"),
            ("Flows", "dashboard:flows"),
            ("Performance", "dashboard:performance"),
            ("Configuration", "dashboard:config"),
            ("Kill switch", "dashboard:kill-switch"),
            ("Events", "dashboard:events"),
        ),
    ),
    Area(
        "backtests",
        "Backtests",
        "↺",
        "Honest backtests of strategies and models, next to naive baselines.",
        "Run a backtest of a strategy or a registered model over your bars.",
        "/api/docs/#/backtests",
        "dashboard:backtests",
    ),
    Area(
        "usage",
        "Usage & billing",
        "▤",
        "Metered usage against your plan's quotas, invoices and plan changes.",
        "Usage appears as soon as you call the API.",
        "/api/docs/#/usage",
        "dashboard:usage",
        (("Billing", "dashboard:billing"),),
    ),
    Area(
        "notifications",
        "Notifications",
        "✉",
        "Telegram, webhook and e-mail channels, alert rules and their history.",
        "Connect a channel and subscribe to the events you care about.",
        url_name="dashboard:notifications",
        pages=(
            ("Subscriptions", "dashboard:notification-subscriptions"),
            ("Deliveries", "dashboard:notification-deliveries"),
            ("Webhooks", "dashboard:notification-webhooks"),
            ("Telegram", "dashboard:notifications-telegram"),
            ("Alerts", "dashboard:alerts"),
            ("Alert rules", "dashboard:alert-rules"),
        ),
    ),
    Area(
        "audit",
        "Audit trail",
        "⚖",
        "The tenant's tamper-evident record of every change, for compliance review.",
        "Every key, member and model change is recorded automatically.",
    ),
]
AREAS_BY_KEY = {a.key: a for a in AREAS}
