"""Issue 12 — candle requests per market per cycle in steady state (target ≤ 1.2 after the first cycle).

Runs the cycle's candle step (``tradebot.market.candle_cache.recent_candles``, hourly and daily, the default
200 and 30 candles) for two simulated days of hourly cycles against the simulator, whose clock the benchmark
moves one hour per cycle, through the real Upbit adapter over HTTP; every candle request is counted at the
HTTP layer (a response hook on the adapter's session). The same cycles without the cache (what the cycle did
before) are counted beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from _util import Section

CYCLES = 48
TARGET = 1.2


def bench(db_url: str) -> Section:
    import psycopg
    import requests

    from tradebot.cycle import clean_candles
    from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
    from tradebot.exchange.upbit import UpbitExchange
    from tradebot.market.candle_cache import recent_candles
    from tradebot.models import Market

    sec = Section("candles: requests per market per cycle (issue 12)")
    print(f"\n== {sec.title}", flush=True)
    market = Market("KRW-BTC")
    clock = [datetime(2026, 11, 30, 12, 30, tzinfo=UTC).timestamp()]
    counted: list[str] = []

    def count(resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/v1/candles/" in resp.url:
            counted.append(resp.url)

    session = requests.Session()
    session.hooks["response"].append(count)
    with SimulatorServer(SimulatorConfig(port=0, clock=lambda: clock[0], seed=7)) as sim, \
            psycopg.connect(db_url, autocommit=True) as conn:
        now = lambda: datetime.fromtimestamp(clock[0], UTC)  # noqa: E731
        exchange = UpbitExchange("", "", sim.url, session=session, now=now)
        cached: list[int] = []
        plain: list[int] = []
        for _ in range(CYCLES):
            before = len(counted)
            for interval, n in (("minute60", 200), ("day", 30)):
                recent_candles(conn, exchange, market, interval, n, now(), clean_candles)  # type: ignore[arg-type]
            cached.append(len(counted) - before)
            before = len(counted)
            exchange.candles(market, "minute60", 200)
            exchange.candles(market, "day", 30)
            plain.append(len(counted) - before)
            clock[0] += 3600
        exchange.close()
    steady = cached[1:]
    per_cycle = sum(steady) / len(steady)
    sec.add("candle requests per market per cycle, steady state (cache first)", f"{per_cycle:.2f}", f"≤ {TARGET}",
            per_cycle <= TARGET, f"first cycle {cached[0]}, then {len(steady)} hourly cycles: {sum(steady)} requests")
    sec.add("candle requests per market per cycle without the cache (before)", f"{sum(plain) / len(plain):.2f}",
            "report", None, "200 hourly + 30 daily each cycle")
    sec.details.append(f"cache first: {cached}")
    return sec
