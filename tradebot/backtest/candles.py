"""Candles for a backtest from the exchange through the ``candles`` cache, and the hour arithmetic.

:func:`load_market_candles` fetches only what the cache lacks (the store keeps the cached range gap-free),
given an open connection and an :class:`~tradebot.exchange.base.Exchange`; it builds neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tradebot.errors import ExchangeError
from tradebot.models import Candle, Market

if TYPE_CHECKING:
    import psycopg

    from tradebot.exchange.base import Exchange, Interval

HOUR = timedelta(hours=1)
INTERVAL: Interval = "minute60"
WARMUP_SLACK = 48  # extra warm-up candles beyond TRADEBOT_HOURLY_CANDLES (some hours have no candle)


def floor_hour(at: datetime) -> datetime:
    """The start of the UTC hour containing ``at``."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class LoadedCandles:
    """Candles for a period, where they came from, and what the user should know about them."""

    candles: list[Candle]
    source: str
    fetched: int = 0
    notes: tuple[str, ...] = ()


# Candles per exchange call when downloading: ten of Upbit's 200-candle pages, so progress moves every few seconds.
CHUNK = 2000

Progress = Callable[[Market, int, int], None]  # (market, hours fetched, hours to fetch)


def load_market_candles(conn: psycopg.Connection[Any], exchange: Exchange, market: Market, since: datetime,
                        until: datetime, progress: Progress | None = None) -> LoadedCandles:
    """Completed hourly candles of ``market`` with ``since <= start < until``, through the ``candles`` cache.

    Only what the cache lacks is fetched: candles older than the oldest cached one when ``since`` is
    earlier, and newer than the newest cached one when ``until`` is later (``count`` = the hours missing,
    paginated 200 per request with ``to`` by the exchange adapter). When the exchange cannot be reached the
    cached candles are used with a note; with nothing cached the error is raised.

    A long download is fetched newest first in chunks of :data:`CHUNK` hours, each chunk ending where the
    previous one began (so the cached range stays contiguous), and ``progress`` is told after each.
    """
    from tradebot.store.candles import cached_range, load_candles, save_candles

    have = cached_range(conn, market, INTERVAL)
    wanted: list[tuple[datetime, datetime]] = []
    if have is None:
        wanted.append((since, until))
    else:
        if since < have.oldest:
            wanted.append((since, have.oldest))
        if until > have.newest + HOUR:
            wanted.append((have.newest + HOUR, until))
    fetched = 0
    notes: list[str] = []
    total = sum(math.ceil((end - start) / HOUR) for start, end in wanted)
    done = 0
    for start, end in wanted:
        chunk_end = end
        while chunk_end > start:
            hours = min(CHUNK, math.ceil((chunk_end - start) / HOUR))
            try:
                got = exchange.candles(market, INTERVAL, hours, to=chunk_end)
            except ExchangeError as e:
                notes.append(f"could not fetch {market} candles {start:%Y-%m-%d %H:%M} – {chunk_end:%Y-%m-%d %H:%M} "
                             f"UTC from the exchange ({e}); using the cached ones")
                break
            # Everything returned is stored (also candles before the chunk when the exchange had gaps): each
            # fetch ends at the cached range, at `until` or where the previous chunk began, so the cached range
            # stays gap-free apart from real gaps.
            fetched += save_candles(conn, market, INTERVAL, [c for c in got if c.start < chunk_end])
            done += hours
            if progress is not None:
                progress(market, done, total)
            if len(got) < hours:
                break  # the market has no older candles
            chunk_end -= hours * HOUR
    candles = load_candles(conn, market, INTERVAL, since, until)
    if not candles and notes:
        raise ExchangeError(notes[0].replace("; using the cached ones", "; and no candles of that period are cached"))
    source = "exchange" if have is None else ("cache+exchange" if fetched else "cache")
    return LoadedCandles(candles, source, fetched, tuple(notes))

