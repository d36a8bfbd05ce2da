"""Bars for riskcore tests, imported through the market-data service."""

from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table


def import_bars(fx, symbol: str, n: int = 300, *, seed: int = 1, timeframe: str = "1d", frame=None, **kwargs):
    frame = generate_bars(n, seed=seed, timeframe=timeframe, **kwargs) if frame is None else frame
    with schema_context(fx.tenant.schema_name):
        md_services.bars_import(
            tenant=fx.tenant, symbol=symbol, timeframe=timeframe, raw=read_table(as_csv(frame), "csv"),
            asset_class="crypto",
        )  # fmt: skip
    return frame
