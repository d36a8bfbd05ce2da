"""Backtests of one tenant (tenant schema): the request, its progress, and its results (stats,
a down-sampled equity curve, and every closed trade in its own table, paged over the API)."""

from __future__ import annotations

import uuid

from django.db import models

from models_registry.models import FINISHED_STATES, JobState


class BacktestRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120, blank=True)
    strategy = models.CharField(max_length=32)
    params = models.JSONField(default=dict)  # the strategy's resolved parameters
    broker = models.JSONField(default=dict)  # BrokerConfig as given, resolved
    # a sweep: every combination of ``grid`` (over ``params`` as the base), ranked by ``metric``;
    # its stats are the sweep's report (ranking, heatmap, holdout, deflated Sharpe), no trades
    grid = models.JSONField(null=True, blank=True)
    metric = models.CharField(max_length=20, blank=True)
    search = models.CharField(max_length=8, blank=True)  # grid / optuna (then grid holds [low, high] ranges)
    n_trials = models.PositiveIntegerField(default=0)
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=4)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    bars = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=12, choices=JobState.choices, default=JobState.QUEUED)
    percent = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    stats = models.JSONField(null=True, blank=True)
    equity = models.JSONField(default=list)  # [[iso time, equity, drawdown %], ...] at most EQUITY_POINTS
    open_trade = models.JSONField(null=True, blank=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.strategy} on {self.symbol} {self.timeframe} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class BacktestTrade(models.Model):
    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="trades")
    n = models.PositiveIntegerField()  # 1-based, in exit order
    entry_time = models.DateTimeField()
    exit_time = models.DateTimeField()
    entry_price = models.FloatField()
    exit_price = models.FloatField()
    size = models.FloatField()
    pnl = models.FloatField()
    return_pct = models.FloatField()
    commission = models.FloatField()
    reason = models.CharField(max_length=16)

    class Meta:
        ordering = ["run", "n"]
        constraints = [models.UniqueConstraint(fields=["run", "n"], name="backtest_trade_once")]

    def __str__(self) -> str:
        return f"#{self.n} {self.size:+g} {self.entry_price:g} -> {self.exit_price:g}"
