"""Reads for backtests."""

from __future__ import annotations

from django.db.models import QuerySet

from api.errors import NotFound

from .models import BacktestRun, BacktestTrade


def run_list(*, strategy: str | None = None, symbol: str | None = None) -> QuerySet[BacktestRun]:
    qs = BacktestRun.objects.defer("equity")
    if strategy:
        qs = qs.filter(strategy=strategy)
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    return qs


def run_get(*, run_id) -> BacktestRun:
    found = BacktestRun.objects.filter(pk=run_id).first()
    if found is None:
        raise NotFound("backtest")
    return found


def trade_page(*, run: BacktestRun, offset: int, limit: int) -> tuple[list[BacktestTrade], int]:
    qs = BacktestTrade.objects.filter(run=run).order_by("n")
    return list(qs[offset : offset + limit]), qs.count()
