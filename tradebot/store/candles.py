"""The candle cache, hourly and daily (``candles`` table; SQL text in ``sql/queries/candles.sql``).

Only completed candles are stored, so a cached row never changes. The cache keeps one invariant that makes
"fetch only what is missing" possible without remembering what was asked for: between the oldest and the
newest cached candle of a market every candle the exchange has is cached (fetches always extend that range
from one of its ends), so a missing hour inside the range is a real gap, not a hole in the cache.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.models import Candle, Market
from tradebot.store.db import float8s, queries, storage_errors

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class CachedRange:
    """The oldest and newest cached candle start of a market and interval, and how many are cached."""

    oldest: datetime
    newest: datetime
    count: int


def _rows(market: Market, interval: str, candles: Sequence[Candle]) -> list[dict[str, Any]]:
    return [{"market": market, "interval": interval, "start": c.start, "open": c.open, "high": c.high,
             "low": c.low, "close": c.close, "volume": c.volume, "value": c.value} for c in candles]


@storage_errors()
def cached_range(conn: psycopg.Connection[Any], market: Market, interval: str) -> CachedRange | None:
    """What the cache holds for ``market``/``interval``; None when nothing is cached."""
    row = conn.execute(queries("candles")["range"], {"market": market, "interval": interval}).fetchone()
    if row is None or row[0] is None:
        return None
    return CachedRange(row[0], row[1], int(row[2]))


@storage_errors()
def save_candles(conn: psycopg.Connection[Any], market: Market, interval: str, candles: Sequence[Candle]) -> int:
    """Insert or replace ``candles`` (completed ones only) in one transaction; returns how many."""
    if not candles:
        return 0
    rows = _rows(market, interval, candles)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(queries("candles")["upsert"], rows)
    return len(rows)


@storage_errors()
def load_candles(conn: psycopg.Connection[Any], market: Market, interval: str, since: datetime,
                 until: datetime) -> list[Candle]:
    """Cached candles with ``since <= start < until``, oldest first."""
    cur = conn.execute(queries("candles")["between"],
                       {"market": market, "interval": interval, "since": since, "until": until})
    return [Candle(start=r[0], open=r[1], high=r[2], low=r[3], close=r[4], volume=r[5], value=r[6]) for r in cur]


@storage_errors()
def last_candles(conn: psycopg.Connection[Any], market: Market, interval: str, until: datetime, count: int) -> list[Candle]:
    """The last ``count`` cached candles with ``start < until``, oldest first."""
    cur = conn.execute(queries("candles")["last"], {"market": market, "interval": interval, "until": until, "count": count})
    rows = [Candle(start=r[0], open=r[1], high=r[2], low=r[3], close=r[4], volume=r[5], value=r[6]) for r in cur]
    return rows[::-1]


@storage_errors()
def replace_candles(conn: psycopg.Connection[Any], market: Market, interval: str, since: datetime, until: datetime,
                    candles: Sequence[Candle]) -> int:
    """Make the cached candles with ``since <= start < until`` exactly ``candles`` (what the exchange sent when
    the cache disagreed with it), in one transaction; returns how many were stored."""
    rows = _rows(market, interval, candles)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(queries("candles")["delete_between"], {"market": market, "interval": interval, "since": since,
                                                           "until": until})
        if rows:
            cur.executemany(queries("candles")["upsert"], rows)
    return len(rows)


@storage_errors()
def packed_candles(conn: psycopg.Connection[Any], market: Market, interval: str, since: datetime,
                   until: datetime) -> tuple[array[float], Decimal | None]:
    """Cached candles with ``since <= start < until`` for a simulation: five floats per candle, oldest first
    (the start in unix seconds, open, high, low, close), and the last close exactly (None: no candle)."""
    row = conn.cursor(binary=True).execute(queries("candles")["between_packed"], {
        "market": market, "interval": interval, "since": since, "until": until}).fetchone()
    return float8s(row[0] if row else None), (row[1] if row else None)
