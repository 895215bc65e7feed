"""The cycle's candles, from the ``candles`` cache first (issue 12).

Completed hourly and daily candles never change, so a cycle fetches only the ones that closed since the
newest cached candle, plus that newest one again to check the cache against the exchange: in steady state
one small hourly request per market and, except just after 00:00 UTC, no daily request at all. The rest
comes from PostgreSQL.

Nothing cached is trusted blindly:

* the overlapping candle(s) must equal what the exchange returns now; if one differs, the whole window is
  fetched again and replaces the cached rows (the exchange is the truth), and the caller is told;
* the cache keeps the invariant documented in :mod:`tradebot.store.candles` (between its oldest and newest
  candle every candle the exchange has is cached: fetches only ever extend that range from one of its
  ends), so an hour missing inside the window is a real hour without trades, as on the exchange;
* the cache is never used *instead* of the exchange: if the newest candles cannot be fetched, the step fails
  and no order is sent, exactly as without a cache.

Malformed candles (non-positive prices, low above open/close…) are dropped before they are stored, as the
cycle always did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tradebot.models import Candle, Market

if TYPE_CHECKING:
    from tradebot.exchange.base import Exchange, Interval
    from tradebot.store.db import Connection

PERIODS: dict[str, timedelta] = {"minute60": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class RecentCandles:
    """The last ``count`` completed candles (oldest first), how many the exchange sent this time, and whether
    the cache disagreed with the exchange (and was replaced)."""

    candles: list[Candle]
    fetched: int
    corrected: bool


def period_start(at: datetime, interval: Interval) -> datetime:
    """The start of the (UTC) hour or day containing ``at``: the forming candle's start."""
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if interval == "day" else at


def _key(c: Candle) -> tuple[object, ...]:
    return (c.start, c.open, c.high, c.low, c.close, c.volume)


def recent_candles(conn: Connection, exchange: Exchange, market: Market, interval: Interval, count: int,
                   now: datetime, clean: Callable[[list[Candle]], list[Candle]]) -> RecentCandles:
    """The last ``count`` completed candles of ``market`` before ``now``'s forming one, through the cache.

    ``clean`` drops malformed candles and duplicates (the cycle's ``clean_candles``). Raises whatever the
    exchange or the store raise: the caller treats it as a failed step. A cache whose newest candle is long
    past is brought up to date once (the adapter pages 200 candles per request and paces itself), never
    skipped: saving a window that does not touch the cached range would break its no-hole invariant.
    """
    from tradebot.store.candles import cached_range, last_candles, replace_candles, save_candles

    def fetch(n: int, to: datetime | None = None) -> list[Candle]:
        # The table refuses a negative traded value; no real candle has one.
        return [c for c in clean(exchange.candles(market, interval, n, to=to)) if c.value >= 0]

    period = PERIODS[interval]
    forming = period_start(now, interval)
    have = cached_range(conn, market, interval)
    fetched = 0
    corrected = False
    whole = False
    if have is None:
        got = fetch(count)
        fetched, whole = len(got), True
        save_candles(conn, market, interval, got)
    elif have.newest + period < forming:
        # The candles that closed since the newest cached one, plus that one again to check the cache.
        missing = int((forming - have.newest) / period)  # the newest cached candle included
        got = fetch(missing)
        fetched = len(got)
        overlap = [c for c in got if c.start <= have.newest]
        cached = {c.start: c for c in last_candles(conn, market, interval, have.newest + period, max(len(overlap), 1))}
        if overlap and all(c.start in cached and _key(c) == _key(cached[c.start]) for c in overlap):
            save_candles(conn, market, interval, [c for c in got if c.start > have.newest])
        else:  # the cache disagrees with the exchange: fetch the whole window again and let it replace the rows
            # (reaching back to the cached range, so that no hole opens between the two)
            got = fetch(max(count, missing))
            fetched, whole, corrected = fetched + len(got), True, True
            if got:
                replace_candles(conn, market, interval, got[0].start, forming, got)
    candles = last_candles(conn, market, interval, forming, count)
    if len(candles) < count and not whole:
        # The cache starts later than the window needs (a larger TRADEBOT_HOURLY_CANDLES, or a short backtest
        # cache): extend it backwards from its oldest candle.
        older = fetch(count - len(candles), to=candles[0].start if candles else forming)
        fetched += len(older)
        save_candles(conn, market, interval, older)
        candles = last_candles(conn, market, interval, forming, count)
    return RecentCandles(candles, fetched, corrected)
