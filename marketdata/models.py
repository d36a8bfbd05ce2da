"""Market data of one tenant (tenant schema): instruments and their OHLCV bars."""

from django.db import models


class Timeframe(models.TextChoices):
    M1 = "1m", "1 minute"
    M5 = "5m", "5 minutes"
    M15 = "15m", "15 minutes"
    M30 = "30m", "30 minutes"
    H1 = "1h", "1 hour"
    H4 = "4h", "4 hours"
    D1 = "1d", "1 day"


TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400}


class AssetClass(models.TextChoices):
    CRYPTO = "crypto"
    EQUITY = "equity"
    FX = "fx"
    FUTURE = "future"
    INDEX = "index"
    OTHER = "other"


class Instrument(models.Model):
    """A tradable symbol. Created on the first import of an unknown symbol, with editable defaults."""

    symbol = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=120, blank=True)
    asset_class = models.CharField(max_length=16, choices=AssetClass.choices, default=AssetClass.OTHER)
    exchange = models.CharField(max_length=32, blank=True)
    tick_size = models.DecimalField(max_digits=20, decimal_places=10, default="0.01")
    currency = models.CharField(max_length=8, default="USD")
    created_at = models.DateTimeField(auto_now_add=True)
    # +1 on every write of its bars (import, delete): part of the key of computed-feature caches
    bars_version = models.PositiveBigIntegerField(default=0, editable=False)

    def __str__(self) -> str:
        return self.symbol


class Bar(models.Model):
    """One OHLCV bar, labelled by its open time (UTC).

    The composite primary key (instrument, timeframe, ts) is the only index: every read is a
    range of one instrument and timeframe, which it serves in order; no surrogate id to maintain
    on bulk loads (COPY)."""

    pk = models.CompositePrimaryKey("instrument_id", "timeframe", "ts")
    # No database FK constraint: Django makes them DEFERRABLE INITIALLY DEFERRED, so a 1 M-bar COPY
    # queued 1 M checks that ran at COMMIT (7 of 14 s). Bars are written only by bars_import, which
    # locks its instrument row in the same transaction; deleting an instrument deletes its bars (ORM).
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="bars", db_constraint=False)
    timeframe = models.CharField(max_length=4, choices=Timeframe.choices)
    ts = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.ts:%Y-%m-%d %H:%M}"


class LiveReplay(models.Model):
    """An instrument's stored series continued as a live market (``intelligence.replay`` live mode),
    published by the ``replay_market --all`` process while ``enabled``. The sample-data onboarding
    step turns one on, so a new tenant sees live decisions without an external feed."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="live_replays")
    timeframe = models.CharField(max_length=4, choices=Timeframe.choices)
    speed = models.FloatField(default=1.0, help_text="Bars per second.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instrument", "timeframe"], name="live_replay_unique")]

    def __str__(self) -> str:
        return f"{self.instrument.symbol} {self.timeframe} @ {self.speed:g}/s"
