"""The sample dataset every demo tenant gets: generated from fixed seeds, never downloaded.

BTC-USD daily carries a planted momentum edge (a day's direction follows the direction of two
days before with probability 0.6: invisible to the naive "tomorrow like today" baseline), so the
demo's model has something real to find; the other series carry none, and an honest model trained
on them must say so (no_edge)."""

from __future__ import annotations

import pandas as pd
from django_tenants.utils import schema_context

from .models import TIMEFRAME_SECONDS, Bar
from .services import bars_import
from .synthetic import as_csv, generate_bars
from .validation import read_table

# symbol, asset class, timeframe, bars, seed, start price, annual volatility, (planted signal, lag)
SAMPLES = [
    ("BTC-USD", "crypto", "1d", 3000, 101, 4000.0, 0.65, (0.1, 2)),
    ("BTC-USD", "crypto", "1h", 6000, 102, 30000.0, 0.65, (0.0, 1)),
    ("ETH-USD", "crypto", "1d", 1500, 103, 300.0, 0.8, (0.0, 1)),
    ("SYNTH-EQ", "equity", "1d", 1500, 104, 150.0, 0.25, (0.0, 1)),
]
SAMPLE_END = pd.Timestamp("2026-11-01", tz="UTC")


def sample_data_load(tenant) -> list[str]:
    """Import the samples the tenant doesn't have yet (idempotent); returns what was loaded."""
    loaded = []
    with schema_context(tenant.schema_name):
        for symbol, asset_class, timeframe, n, seed, price, vol, signal in SAMPLES:
            if Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe).exists():
                continue
            step = pd.Timedelta(seconds=TIMEFRAME_SECONDS[timeframe])
            frame = generate_bars(
                n,
                timeframe=timeframe,
                seed=seed,
                start=SAMPLE_END - step * n,
                start_price=price,
                annual_vol=vol,
                planted_signal=signal[0],
                planted_lag=signal[1],
            )
            bars_import(
                tenant=tenant,
                symbol=symbol,
                timeframe=timeframe,
                raw=read_table(as_csv(frame), "csv"),
                asset_class=asset_class,
                actor="system:sample-data",
            )
            loaded.append(f"{symbol} {timeframe} ({n} bars)")
    return loaded
