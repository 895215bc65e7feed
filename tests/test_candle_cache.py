"""The cycle's candles come from the cache first (issue 12): after the first cycle only the candles that closed
since are fetched, the result is always what the exchange itself would return, and a cached candle that
disagrees with the exchange is replaced — never trusted. Real PostgreSQL, the simulator over HTTP through the
real Upbit adapter, and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tradebot.cycle import clean_candles
from tradebot.errors import ExchangeError
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
from tradebot.exchange.upbit import UpbitExchange
from tradebot.market.candle_cache import recent_candles
from tradebot.models import Candle, Market
from tradebot.store.candles import cached_range, load_candles, save_candles

BTC = Market("KRW-BTC")
ANCHOR = datetime(2026, 11, 30, 12, tzinfo=UTC)  # the simulator's forming hour when the test starts


@dataclass
class World:
    sim: SimulatorServer
    exchange: UpbitExchange
    conn: psycopg.Connection  # type: ignore[type-arg]
    clock: list[float]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock[0], UTC)

    def later(self, hours: int) -> None:
        self.clock[0] += hours * 3600

    def truth(self, interval: str, count: int) -> list[Candle]:
        """What the exchange itself returns, without any cache."""
        return clean_candles(self.exchange.candles(BTC, interval, count))  # type: ignore[arg-type]

    def recent(self, interval: str, count: int) -> tuple[list[Candle], int, bool]:
        got = recent_candles(self.conn, self.exchange, BTC, interval, count, self.now(), clean_candles)  # type: ignore[arg-type]
        return got.candles, got.fetched, got.corrected


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    clock = [ANCHOR.timestamp() + 1800.0]
    with SimulatorServer(SimulatorConfig(port=0, clock=lambda: clock[0], seed=11)) as sim, \
            psycopg.connect(db_url, autocommit=True) as conn:
        exchange = UpbitExchange("", "", sim.url, now=lambda: datetime.fromtimestamp(clock[0], UTC))
        yield World(sim, exchange, conn, clock)
        exchange.close()


def key(cs: list[Candle]) -> list[tuple[object, ...]]:
    return [(c.start, c.open, c.high, c.low, c.close, c.volume) for c in cs]


def test_first_cycle_fetches_the_window_then_only_what_closed_since(world: World) -> None:
    first, fetched, corrected = world.recent("minute60", 200)
    assert key(first) == key(world.truth("minute60", 200)) and fetched == 200 and not corrected
    assert first[-1].start == ANCHOR - timedelta(hours=1)
    # The same hour again: nothing new closed, nothing is fetched.
    again, fetched, _ = world.recent("minute60", 200)
    assert key(again) == key(first) and fetched == 0
    for hours in (1, 1, 3):
        world.later(hours)
        got, fetched, corrected = world.recent("minute60", 200)
        assert key(got) == key(world.truth("minute60", 200)) and not corrected
        assert fetched == hours + 1  # the new candles and the newest cached one, to check it
    with world.conn.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM candles WHERE interval = 'minute60'").fetchone() == (205,)


def test_daily_candles_are_fetched_once_a_day(world: World) -> None:
    first, fetched, _ = world.recent("day", 5)
    assert key(first) == key(world.truth("day", 5)) and fetched == 5
    world.later(3)  # the same UTC day: the forming day candle is never cached or fetched
    assert world.recent("day", 5)[1] == 0
    world.later(12)  # past 00:00 UTC: yesterday closed
    got, fetched, _ = world.recent("day", 5)
    assert key(got) == key(world.truth("day", 5)) and fetched == 2 and got[-1].start == datetime(2026, 11, 30, tzinfo=UTC)


def test_a_cached_candle_that_disagrees_with_the_exchange_is_replaced(world: World) -> None:
    world.recent("minute60", 100)
    newest = ANCHOR - timedelta(hours=1)
    with world.conn.cursor() as cur:
        cur.execute("UPDATE candles SET close = close * 2, high = high * 2 WHERE start = %s", (newest,))
        cur.execute("INSERT INTO candles (market, interval, start, open, high, low, close, volume, value) "
                    "SELECT market, interval, start + interval '30 minutes', open, high, low, close, volume, value "
                    "FROM candles WHERE start = %s", (newest - timedelta(hours=5),))  # a candle Upbit never had
    world.later(1)
    got, _, corrected = world.recent("minute60", 100)
    assert corrected and key(got) == key(world.truth("minute60", 100))
    cached = load_candles(world.conn, BTC, "minute60", got[0].start, ANCHOR + timedelta(hours=1))
    assert key(cached) == key(got)  # the tampered and the phantom rows are gone


def test_a_stale_backtest_cache_is_brought_up_to_date_without_holes(world: World) -> None:
    # What a backtest cached weeks ago: 48 candles ending 500 hours before now.
    old = world.truth("minute60", 600)[:100]
    save_candles(world.conn, BTC, "minute60", old[:48])
    got, fetched, corrected = world.recent("minute60", 200)
    assert key(got) == key(world.truth("minute60", 200)) and not corrected
    rng = cached_range(world.conn, BTC, "minute60")
    assert rng is not None and rng.oldest == old[0].start
    everything = load_candles(world.conn, BTC, "minute60", rng.oldest, ANCHOR)
    assert key(everything) == key(world.truth("minute60", 600))  # from the oldest cached one on, no hole
    assert fetched == 600 - 48 + 1


def test_a_window_larger_than_the_cache_is_extended_backwards(world: World) -> None:
    world.recent("minute60", 60)
    got, fetched, _ = world.recent("minute60", 250)
    assert key(got) == key(world.truth("minute60", 250)) and fetched == 190


def test_without_the_exchange_the_cache_is_not_used_instead(world: World) -> None:
    world.recent("minute60", 100)
    world.later(1)
    nowhere = UpbitExchange("", "", "http://127.0.0.1:9", now=world.now, get_retries=0)  # nothing listens there
    with pytest.raises(ExchangeError):
        recent_candles(world.conn, nowhere, BTC, "minute60", 100, world.now(), clean_candles)
