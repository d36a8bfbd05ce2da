"""Relative valuation from posted fundamentals: P/E and P/B against the peers' medians.

Price = the latest close; market cap = price x shares outstanding. P/E = market cap / earnings
(only when earnings > 0), P/B = market cap / book value (only when book > 0). Peers: the other
instruments with fundamentals and a price in the same sector, or every other one when the sector
has none. Implied value per share = EPS x peers' median P/E, and BVPS x peers' median P/B; the fair
value is the mean of those available. Discount/premium = price / fair value - 1 (negative: the
price is below the fair value)."""

from __future__ import annotations

import statistics


def multiples(*, price: float, shares: float, earnings: float, book: float, dividends: float) -> dict:
    cap = price * shares
    return {
        "market_cap": cap,
        "pe": cap / earnings if earnings > 0 else None,
        "pb": cap / book if book > 0 else None,
        "dividend_yield": dividends / cap if cap > 0 else None,
        "eps": earnings / shares,
        "bvps": book / shares,
    }


def relative_value(subject: dict, peers: list[dict]) -> dict:
    """``subject`` and each peer: the output of :func:`multiples` plus ``price``."""
    pes = [p["pe"] for p in peers if p["pe"] is not None]
    pbs = [p["pb"] for p in peers if p["pb"] is not None]
    med_pe = statistics.median(pes) if pes else None
    med_pb = statistics.median(pbs) if pbs else None
    implied = {}
    if med_pe is not None and subject["eps"] > 0:
        implied["pe"] = subject["eps"] * med_pe
    if med_pb is not None and subject["bvps"] > 0:
        implied["pb"] = subject["bvps"] * med_pb
    fair = sum(implied.values()) / len(implied) if implied else None
    return {
        "peer_median_pe": med_pe,
        "peer_median_pb": med_pb,
        "implied_value": implied,
        "fair_value": fair,
        "premium": subject["price"] / fair - 1 if fair else None,
    }
