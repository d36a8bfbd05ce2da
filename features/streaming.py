"""Streaming state machines, one per indicator: O(1) per bar, scalar Python floats only.

Each class reproduces the recursion the batch path runs (TA-Lib 0.8's C loops, or our own
rolling definitions) operation for operation and in the same order, so that a live feature vector
equals the row a model was trained on. Where TA-Lib keeps a running sum (SMA, the Bollinger middle
band, the Stochastic smoothing) we keep the *same* running sum rather than a "better" one: a
compensated sum would be closer to the exact mean but further from TA-Lib, which is the reference
the models saw, and both drift identically (bit for bit) however long the stream. Zero tests are
TA-Lib's (found by probing the bundled library, whose guards differ from older releases).

Statistics without a running-sum reference (the Bollinger std, z-score, volatility, VWAP) use
compensated sums that are recomputed from the window every ``length`` bars, so their error is
bounded by the window, not by the length of the stream.

Protocol: ``push(o, h, l, c, v) -> tuple`` of every output of the indicator, in registry order,
with NaN for an output that is not warmed up yet. The engine, not the indicator, decides when
a vector is complete (it counts bars against the spec's warm-up).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import talib

NAN = math.nan


class RsiStream:
    """TA-Lib RSI: gains/losses averaged over the first ``length`` changes, then Wilder-smoothed."""

    __slots__ = ("p", "pm1", "fp", "n", "prev", "gain", "loss")

    def __init__(self, length: int):
        self.p = length
        self.pm1 = float(length - 1)
        self.fp = float(length)
        self.n = 0
        self.prev = 0.0
        self.gain = 0.0
        self.loss = 0.0

    def push(self, o, h, l, c, v):  # noqa: E741
        n = self.n
        self.n = n + 1
        if n == 0:
            self.prev = c
            return (NAN,)
        d = c - self.prev
        self.prev = c
        if n < self.p:
            if d < 0.0:
                self.loss -= d
            else:
                self.gain += d
            return (NAN,)
        if n == self.p:
            if d < 0.0:
                self.loss -= d
            else:
                self.gain += d
            self.loss /= self.fp
            self.gain /= self.fp
        else:
            loss = self.loss * self.pm1
            gain = self.gain * self.pm1
            if d < 0.0:
                loss -= d
            else:
                gain += d
            self.loss = loss = loss / self.fp
            self.gain = gain = gain / self.fp
        s = self.gain + self.loss
        return (100.0 * (self.gain / s) if s > 0.0 else 0.0,)


class EmaStream:
    """TA-Lib EMA: seeded with the SMA of the first ``length`` values, k = 2 / (length + 1)."""

    __slots__ = ("p", "k", "n", "acc")

    def __init__(self, length: int):
        self.p = length
        self.k = 2.0 / float(length + 1)
        self.n = 0
        self.acc = 0.0

    def push(self, o, h, l, c, v):  # noqa: E741
        n = self.n
        self.n = n + 1
        if n >= self.p:
            self.acc = (c - self.acc) * self.k + self.acc
            return (self.acc,)
        self.acc += c
        if n == self.p - 1:
            self.acc = self.acc / self.p
            return (self.acc,)
        return (NAN,)


class _TaSma:
    """TA-Lib's SMA running sum (``total += new; out = total / n; total -= oldest``), kept bit-exact."""

    __slots__ = ("p", "window", "total")

    def __init__(self, length: int):
        self.p = length
        self.window: deque[float] = deque(maxlen=length)
        self.total = 0.0

    def push(self, x: float) -> float:
        window = self.window
        window.append(x)
        self.total += x
        if len(window) < self.p:
            return NAN
        out = self.total / self.p
        self.total -= window[0]
        return out


class SmaStream:
    __slots__ = ("sma",)

    def __init__(self, length: int):
        self.sma = _TaSma(length)

    def push(self, o, h, l, c, v):  # noqa: E741
        return (self.sma.push(c),)


class MacdStream:
    """TA-Lib MACD: fast and slow EMAs both seeded on bar ``slow - 1`` (the fast one with the SMA of
    the last ``fast`` bars of the slow seed window), the signal EMA seeded with the SMA of the first
    ``signal`` MACD values. First output on bar ``slow + signal - 2``."""

    __slots__ = ("fast", "slow", "signal", "kf", "ks", "kg", "n", "sf", "ss", "sig", "nsig")

    def __init__(self, fast: int, slow: int, signal: int):
        self.fast, self.slow, self.signal = fast, slow, signal
        self.kf = 2.0 / float(fast + 1)
        self.ks = 2.0 / float(slow + 1)
        self.kg = 2.0 / float(signal + 1)
        self.n = 0
        self.sf = 0.0  # fast EMA (a running sum while seeding)
        self.ss = 0.0  # slow EMA (idem)
        self.sig = 0.0
        self.nsig = 0

    def push(self, o, h, l, c, v):  # noqa: E741
        n = self.n
        self.n = n + 1
        slow = self.slow
        if n < slow:
            self.ss += c
            if n >= slow - self.fast:
                self.sf += c
            if n < slow - 1:
                return (NAN, NAN, NAN)
            self.ss = self.ss / slow
            self.sf = self.sf / self.fast
        else:
            self.sf = (c - self.sf) * self.kf + self.sf
            self.ss = (c - self.ss) * self.ks + self.ss
        macd = self.sf - self.ss
        if self.nsig < self.signal:
            self.sig += macd
            self.nsig += 1
            if self.nsig < self.signal:
                return (NAN, NAN, NAN)
            self.sig = self.sig / self.signal
        else:
            self.sig = (macd - self.sig) * self.kg + self.sig
        sig = self.sig
        return (macd, sig, macd - sig)


class BbandsStream:
    """TA-Lib BBANDS with an SMA middle band (TA-Lib's running sum, bit-exact) and the population
    std of the window. TA-Lib 0.8 computes that std without the E[x^2] - E[x]^2 cancellation of
    older releases, so we use re-centred sums too; the two agree to ~eps * mean / std."""

    __slots__ = ("sma", "m", "dev")

    def __init__(self, length: int, std: float):
        self.sma = _TaSma(length)
        self.m = _RollingMoments(length)
        self.dev = float(std)

    def push(self, o, h, l, c, v):  # noqa: E741
        mid = self.sma.push(c)
        if not self.m.push(c):
            return (NAN, NAN, NAN, NAN, NAN)
        t = math.sqrt(self.m.variance(0)) * self.dev
        upper = mid + t
        lower = mid - t
        return (upper, mid, lower, *bbands_derived(c, upper, mid, lower))


FLAT = 1e-10  # a window whose std is below FLAT * |mean| is flat: rounding noise, not a signal


def bbands_derived(close: float, upper: float, mid: float, lower: float) -> tuple[float, float]:
    """%B and width. A flat window (band narrower than rounding noise) reads %B 0.5 rather than
    NaN or a ratio of two rounding errors, which would differ between batch and stream."""
    span = upper - lower
    percent_b = (close - lower) / span if span > FLAT * abs(mid) else 0.5
    width = span / mid if mid != 0.0 else 0.0
    return percent_b, width


class AtrStream:
    """TA-Lib ATR: SMA of the first ``length`` true ranges (bars 1..length), then Wilder."""

    __slots__ = ("p", "pm1", "n", "prev_close", "atr")

    def __init__(self, length: int):
        self.p = length
        self.pm1 = float(length - 1)
        self.n = 0
        self.prev_close = 0.0
        self.atr = 0.0

    def push(self, o, h, l, c, v):  # noqa: E741
        n = self.n
        self.n = n + 1
        pc = self.prev_close
        self.prev_close = c
        if n == 0:
            return (NAN,)
        tr = h - l
        t = abs(pc - h)
        if t > tr:
            tr = t
        t = abs(pc - l)
        if t > tr:
            tr = t
        if n < self.p:
            self.atr += tr
            return (NAN,)
        if n == self.p:
            self.atr = (self.atr + tr) / self.p
        else:
            a = self.atr * self.pm1
            a += tr
            self.atr = a / self.p
        return (self.atr,)


class AdxStream:
    """TA-Lib ADX / PLUS_DI / MINUS_DI in one pass (they share the smoothed DM and TR sums).

    DI is valid from bar ``length``; ADX (the mean of the first ``length`` DX, then Wilder) from
    bar ``2 * length - 1``. Zero tests follow TA-Lib: a zero smoothed TR yields DI 0 and leaves
    ADX unchanged.
    """

    __slots__ = ("p", "fp", "pm1", "n", "ph", "pl", "pc", "pdm", "mdm", "tr", "sum_dx", "adx")

    def __init__(self, length: int):
        self.p = length
        self.fp = float(length)
        self.pm1 = float(length - 1)
        self.n = 0
        self.ph = self.pl = self.pc = 0.0
        self.pdm = self.mdm = self.tr = 0.0
        self.sum_dx = 0.0
        self.adx = NAN

    def push(self, o, h, l, c, v):  # noqa: E741
        n = self.n
        self.n = n + 1
        if n == 0:
            self.ph, self.pl, self.pc = h, l, c
            return (NAN, NAN, NAN)
        diff_p = h - self.ph
        diff_m = self.pl - l
        self.ph = h
        self.pl = l
        pc = self.pc
        self.pc = c
        tr = h - l
        t = abs(h - pc)
        if t > tr:
            tr = t
        t = abs(l - pc)
        if t > tr:
            tr = t
        p = self.p
        if n < p:
            if diff_m > 0.0 and diff_p < diff_m:
                self.mdm += diff_m
            elif diff_p > 0.0 and diff_p > diff_m:
                self.pdm += diff_p
            self.tr += tr
            return (NAN, NAN, NAN)
        fp = self.fp
        mdm = self.mdm
        pdm = self.pdm
        mdm -= mdm / fp
        pdm -= pdm / fp
        if diff_m > 0.0 and diff_p < diff_m:
            mdm += diff_m
        elif diff_p > 0.0 and diff_p > diff_m:
            pdm += diff_p
        self.mdm = mdm
        self.pdm = pdm
        str_ = self.tr
        self.tr = str_ = str_ - str_ / fp + tr
        if str_ != 0.0:
            minus_di = 100.0 * (mdm / str_)
            plus_di = 100.0 * (pdm / str_)
            s = minus_di + plus_di
            if s != 0.0:
                dx = 100.0 * (abs(minus_di - plus_di) / s)
                if n < 2 * p - 1:
                    self.sum_dx += dx
                elif n == 2 * p - 1:
                    self.sum_dx += dx
                    self.adx = self.sum_dx / fp
                else:
                    self.adx = (self.adx * self.pm1 + dx) / fp
            elif n == 2 * p - 1:
                self.adx = self.sum_dx / fp
        else:
            minus_di = plus_di = 0.0
            if n == 2 * p - 1:
                self.adx = self.sum_dx / fp
        return (self.adx, plus_di, minus_di)


class _RollingExtreme:
    """Monotonic deque: rolling max (or min) over the last ``length`` pushes, amortised O(1)."""

    __slots__ = ("p", "i", "q", "is_max")

    def __init__(self, length: int, is_max: bool):
        self.p = length
        self.i = 0
        self.q: deque[tuple[int, float]] = deque()
        self.is_max = is_max

    def push(self, x: float) -> float:
        q = self.q
        i = self.i
        self.i = i + 1
        if self.is_max:
            while q and q[-1][1] <= x:
                q.pop()
        else:
            while q and q[-1][1] >= x:
                q.pop()
        q.append((i, x))
        if q[0][0] <= i - self.p:
            q.popleft()
        return q[0][1]


class StochStream:
    """TA-Lib STOCH with SMA smoothing: raw %K over ``k`` bars, slow %K = SMA(raw, smooth_k),
    %D = SMA(slow %K, d). Both outputs start on the same bar, as TA-Lib aligns them."""

    __slots__ = ("k", "n", "hi", "lo", "sk", "sd")

    def __init__(self, k: int, d: int, smooth_k: int):
        self.k = k
        self.n = 0
        self.hi = _RollingExtreme(k, True)
        self.lo = _RollingExtreme(k, False)
        self.sk = _TaSma(smooth_k)
        self.sd = _TaSma(d)

    def push(self, o, h, l, c, v):  # noqa: E741
        highest = self.hi.push(h)
        lowest = self.lo.push(l)
        n = self.n
        self.n = n + 1
        if n < self.k - 1:
            return (NAN, NAN)
        rng = highest - lowest
        if abs(rng) <= 1e-14 * (abs(highest) + abs(lowest)):
            raw = 0.0
        else:
            raw = ((c - lowest) / rng) * 100.0
        slow_k = self.sk.push(raw)
        if slow_k != slow_k:
            return (NAN, NAN)
        slow_d = self.sd.push(slow_k)
        if slow_d != slow_d:
            return (NAN, NAN)
        return (slow_k, slow_d)


class ObvStream:
    """TA-Lib OBV: starts at the first bar's volume, adds/subtracts volume on up/down closes."""

    __slots__ = ("n", "prev", "obv")

    def __init__(self):
        self.n = 0
        self.prev = 0.0
        self.obv = 0.0

    def push(self, o, h, l, c, v):  # noqa: E741
        if self.n == 0:
            self.n = 1
            self.obv = v
        elif c > self.prev:
            self.obv += v
        elif c < self.prev:
            self.obv -= v
        self.prev = c
        return (self.obv,)


class _WindowSum:
    """Rolling sum with Neumaier compensation, recomputed exactly from the window every ``length``
    pushes: its error is bounded by the window, not by how long the stream has run."""

    __slots__ = ("p", "window", "s", "comp", "since")

    def __init__(self, length: int):
        self.p = length
        self.window: deque[float] = deque(maxlen=length)
        self.s = 0.0
        self.comp = 0.0
        self.since = 0

    def _add(self, x: float) -> None:
        s = self.s
        t = s + x
        if abs(s) >= abs(x):
            self.comp += (s - t) + x
        else:
            self.comp += (x - t) + s
        self.s = t

    def push(self, x: float) -> float:
        window = self.window
        if len(window) == self.p:
            self._add(-window[0])
        window.append(x)
        self._add(x)
        self.since += 1
        if self.since >= self.p:
            self.s = math.fsum(window)
            self.comp = 0.0
            self.since = 0
        return self.s + self.comp


def neumaier_sum(values) -> float:
    """Compensated sum; ``features.indicators.rolling_moments`` (the batch twin) runs this same
    function compiled by numba."""
    s = 0.0
    comp = 0.0
    for x in values:
        t = s + x
        if abs(s) >= abs(x):
            comp += (s - t) + x
        else:
            comp += (x - t) + s
        s = t
    return s + comp


class _RollingMoments:
    """Rolling mean and variance of the last ``length`` values, O(1) amortised.

    Its batch twin, ``features.indicators.rolling_moments``, runs the same operations compiled, so
    batch and stream agree bit for bit (pandas' rolling std is off by up to ~1e-8 relative).

    Sums are kept of ``d = x - shift``. The shift is re-centred on the window mean (sums
    recomputed with a compensated sum) every ``length`` pushes, and at once whenever the
    window's offset from the shift dwarfs its spread (a jump followed by a flat stretch): that
    keeps the variance free of the E[d^2] - E[d]^2 cancellation which would otherwise turn a
    perfectly flat window into a std of 1e-7 instead of 0.
    """

    __slots__ = ("p", "window", "shift", "s1", "s2", "since")

    def __init__(self, length: int):
        self.p = length
        self.window: deque[float] = deque(maxlen=length)
        self.shift = 0.0
        self.s1 = 0.0
        self.s2 = 0.0
        self.since = 0

    def push(self, x: float) -> bool:
        window = self.window
        shift = self.shift
        p = self.p
        if len(window) == p:
            d = window[0] - shift
            self.s1 -= d
            self.s2 -= d * d
        elif not window:
            self.shift = shift = x
        window.append(x)
        d = x - shift
        s1 = self.s1 = self.s1 + d
        s2 = self.s2 = self.s2 + d * d
        self.since += 1
        if len(window) < p:
            return False
        off = s1 / p
        off2 = off * off
        if self.since >= p or off2 > 1e4 * (s2 / p - off2):
            self._recentre()
        return True

    def _recentre(self) -> None:
        window = self.window
        p = self.p
        lo = min(window)
        # a constant window must centre exactly on its value, or its variance is ulp noise
        shift = lo if lo == max(window) else neumaier_sum(window) / p
        self.shift = shift
        self.s1 = neumaier_sum([x - shift for x in window])
        self.s2 = neumaier_sum([(x - shift) * (x - shift) for x in window])
        self.since = 0

    def mean(self) -> float:
        return self.shift + self.s1 / self.p

    def variance(self, ddof: int) -> float:
        p = self.p
        s1 = self.s1
        var = (self.s2 - s1 * s1 / p) / (p - ddof)
        return var if var > 0.0 else 0.0


def zscore_value(x: float, mean: float, var: float) -> float:
    """A flat window reads 0 (close == mean), never +-inf or a ratio of rounding errors."""
    std = math.sqrt(var)
    if std <= FLAT * abs(mean):
        return 0.0
    return (x - mean) / std


class ZscoreStream:
    __slots__ = ("m",)

    def __init__(self, length: int):
        self.m = _RollingMoments(length)

    def push(self, o, h, l, c, v):  # noqa: E741
        if not self.m.push(c):
            return (NAN,)
        m = self.m
        return (zscore_value(c, m.mean(), m.variance(1)),)


class VolatilityStream:
    """Sample std of the last ``length`` one-bar log returns (not annualised)."""

    __slots__ = ("m", "prev")

    def __init__(self, length: int):
        self.m = _RollingMoments(length)
        self.prev = NAN

    def push(self, o, h, l, c, v):  # noqa: E741
        prev = self.prev
        self.prev = c
        if prev != prev:
            return (NAN,)
        if not self.m.push(math.log(c / prev)):
            return (NAN,)
        return (math.sqrt(self.m.variance(1)),)


class VwapStream:
    """Rolling VWAP of the typical price (h + l + c) / 3 over ``length`` bars. A window without
    any volume falls back to the mean typical price; that test counts bars with volume (exact)
    instead of comparing a floating sum with zero."""

    __slots__ = ("p", "pv", "vol", "tp", "with_volume", "n")

    def __init__(self, length: int):
        self.p = length
        self.pv = _WindowSum(length)
        self.vol = _WindowSum(length)
        self.tp = _WindowSum(length)
        self.with_volume = 0
        self.n = 0

    def push(self, o, h, l, c, v):  # noqa: E741
        vol_window = self.vol.window
        if len(vol_window) == self.p and vol_window[0] > 0.0:
            self.with_volume -= 1
        if v > 0.0:
            self.with_volume += 1
        tp = (h + l + c) / 3.0
        spv = self.pv.push(tp * v)
        sv = self.vol.push(v)
        stp = self.tp.push(tp)
        self.n += 1
        if self.n < self.p:
            return (NAN,)
        if self.with_volume:
            return (spv / sv,)
        return (stp / self.p,)


class ReturnsStream:
    __slots__ = ("window", "log")

    def __init__(self, kind: str, length: int):
        self.window: deque[float] = deque(maxlen=length + 1)
        self.log = kind == "log"

    def push(self, o, h, l, c, v):  # noqa: E741
        window = self.window
        window.append(c)
        if len(window) < window.maxlen:
            return (NAN,)
        r = c / window[0]
        return (math.log(r) if self.log else r - 1.0,)


class CandleStream:
    """A TA-Lib candlestick pattern through TA-Lib 0.8's own streaming handle.

    The handle is opened on the first ``lookback + 1`` bars and then carried forward one bar at a
    time in C: O(1), and bit-identical to the batch function, running averages included (which a
    re-evaluation over the last N bars would only match up to rounding in those averages).
    """

    __slots__ = ("factory", "need", "history", "handle")

    def __init__(self, factory, lookback: int):
        self.factory = factory
        self.need = lookback + 1
        self.history: tuple[list[float], ...] | None = ([], [], [], [])
        self.handle = None

    def push(self, o, h, l, c, v):  # noqa: E741
        handle = self.handle
        if handle is not None:
            raw = handle.update(o, h, l, c)
        else:
            history = self.history
            for column, x in zip(history, (o, h, l, c), strict=True):
                column.append(x)
            if len(history[0]) < self.need:
                return (NAN,)
            try:
                self.handle = handle = self.factory(*(np.array(column) for column in history))
            except talib.InsufficientHistory:
                return (NAN,)
            self.history = None
            raw = handle.value
        return (float((raw > 0) - (raw < 0)),)
