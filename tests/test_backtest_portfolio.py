"""``tradebot backtest --markets`` (issue 12): several markets replayed together through the live portfolio gate.
With one market it trades exactly as the one-market backtest; with several the shared KRW, the reserve and
the open-position cap hold; and the command works end to end against the simulator."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tradebot.backtest.portfolio import backtest_portfolio
from tradebot.backtest.simulate import backtest_candles
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
from tradebot.models import Candle, Market
from tradebot.risk import RiskLimits
from tradebot.upbit_rules import MIN_ORDER_KRW

BTC, ETH, XRP = Market("KRW-BTC"), Market("KRW-ETH"), Market("KRW-XRP")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def walk(seed: int, n: int = 1500, start: float = 100_000_000) -> list[Candle]:
    rng = random.Random(seed)
    out, p = [], start
    for i in range(n):
        o = p
        p = max(1000.0, p * (1 + rng.gauss(0, 0.01)))
        h, lo = max(o, p) * (1 + abs(rng.gauss(0, 0.003))), min(o, p) * (1 - abs(rng.gauss(0, 0.003)))
        out.append(Candle(T0 + timedelta(hours=i), Decimal(int(o)), Decimal(int(h)), Decimal(int(lo)), Decimal(int(p)),
                          Decimal("1.5")))
    return out


def limits(**kw: object) -> RiskLimits:
    base = dict(max_exposure_krw=Decimal(200000), max_open_positions=1)
    base.update(kw)
    return RiskLimits(Decimal("0.55"), Decimal(50000), Decimal(200000), Decimal(0), **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_market_trades_exactly_as_the_one_market_backtest(seed: int) -> None:
    candles = walk(seed)
    since, until = candles[300].start, candles[-1].start + timedelta(hours=1)
    single = backtest_candles(candles, since=since, until=until, limits=limits(), market=BTC, starting_krw=1_000_000.0,
                              warmup=248)
    together = backtest_portfolio({BTC: candles}, since=since, until=until, limits=limits(),
                                  starting_krw=Decimal(1_000_000), warmup=248)
    [book] = together.markets
    assert (book.buys, book.sells) == (single.buys, single.sells) and together.trades == single.trades > 10
    # The same orders; the one-market engine keeps money in float64, this one in Decimal: a few KRW apart.
    assert float(together.final_equity) == pytest.approx(single.final_equity, rel=1e-4)
    assert together.max_drawdown == pytest.approx(single.max_drawdown, rel=1e-2)


def test_several_markets_share_one_balance_under_the_portfolio_limits() -> None:
    candles = {BTC: walk(1), ETH: walk(2, start=5_000_000), XRP: walk(3, start=3000)}
    since, until = candles[BTC][300].start, candles[BTC][-1].start + timedelta(hours=1)
    r = backtest_portfolio(candles, since=since, until=until, limits=limits(max_exposure_krw=Decimal(300000),
                                                                             max_open_positions=2,
                                                                             krw_reserve=Decimal(800000)),
                           starting_krw=Decimal(1_000_000), warmup=248)
    assert r.final_krw >= 800000  # the reserve is never spent
    assert sum(1 for b in r.markets if b.value >= MIN_ORDER_KRW) <= 2
    assert sum(b.vetoes.get("max_open_positions", 0) for b in r.markets) > 0
    assert r.trades == sum(b.trades for b in r.markets) and r.fees == sum(b.fees for b in r.markets)
    assert r.final_equity == r.final_krw + sum(b.value for b in r.markets)
    assert len(r.equity) == r.hours == len(r.times) and r.times[0] >= since


@pytest.fixture
def sim_env(tb_env: dict[str, str]) -> Iterator[dict[str, str]]:
    with SimulatorServer(SimulatorConfig(port=0, markets=("KRW-BTC", "KRW-ETH", "KRW-XRP"))) as sim:
        yield {**tb_env, "UPBIT_API_URL": sim.url, "TRADEBOT_MARKETS": "KRW-BTC,KRW-ETH,KRW-XRP"}


def test_the_command_reports_every_market_and_the_total(sim_env: dict[str, str], tmp_path: Path) -> None:
    out = run_cli(["backtest", "--days", "20"], sim_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("Backtest of KRW-BTC, KRW-ETH, KRW-XRP together")
    rows = [line.split()[0] for line in out.stdout.splitlines() if line.startswith(("KRW-", "TOTAL"))]
    assert rows == ["KRW-BTC", "KRW-ETH", "KRW-XRP", "TOTAL"]
    out = run_cli(["backtest", "--markets", "KRW-ETH,KRW-XRP", "--days", "20", "--format", "json"], sim_env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [m["market"] for m in data["markets"]] == ["KRW-ETH", "KRW-XRP"]
    assert Decimal(data["total"]["final_equity"]) > 0 and data["total"]["limits"]["max_open_positions"] == 3
    out = run_cli(["backtest", "--markets", "KRW-ETH,KRW-ETH", "--days", "20"], sim_env)
    assert out.returncode == 2 and "--markets" in out.stderr and "twice" in out.stderr
    out = run_cli(["backtest", "--markets", "KRW-ETH,KRW-XRP", "--csv", str(tmp_path / "x.csv")], sim_env)
    assert out.returncode == 2 and "--csv holds one market's candles" in out.stderr


def test_compare_live_per_market_and_for_the_portfolio(tb_env: dict[str, str], db_url: str) -> None:
    import time as _time

    anchor = (int(_time.time()) // 3600 - 3) * 3600
    with SimulatorServer(SimulatorConfig(port=0, clock=lambda: anchor + 1800.0, seed=3,
                                         markets=("KRW-BTC", "KRW-ETH"))) as sim:
        env = {**tb_env, "TRADEBOT_MODE": "paper", "TRADEBOT_ADVISOR": "rules", "UPBIT_API_URL": sim.url,
               "TRADEBOT_BACKTEST_FILTER": "off", "TRADEBOT_MARKETS": "KRW-BTC,KRW-ETH"}
        advanced = []
        for k in range(3):
            for _ in range(4):
                sim.advance(hours=1, pct=Decimal("1.2"))
                sim.advance(hours=1, pct=Decimal("-0.6"))
            advanced.append(8 * (k + 1))
            r = run_cli(["run-cycle"], env)
            assert r.returncode == 0, r.stdout + r.stderr
        # As in test_backtest_cmd: the cycles ran seconds apart; date each cycle's rows in the hour after the
        # newest candle it saw, as if the bot had run hourly.
        import psycopg

        with psycopg.connect(db_url) as conn:
            cycles = [r[0] for r in conn.execute("SELECT cycle_id FROM decisions WHERE role = 'acting' GROUP BY cycle_id ORDER BY min(id)")]
            assert len(cycles) == 3
            for cycle_id, a in zip(cycles, advanced, strict=True):
                at = datetime.fromtimestamp(anchor, UTC) - timedelta(hours=advanced[-1] - a) + timedelta(minutes=90)
                conn.execute("UPDATE decisions SET created_at = %s WHERE cycle_id = %s", (at, cycle_id))
                conn.execute("UPDATE trades SET created_at = %s WHERE decision_id IN "
                             "(SELECT id FROM decisions WHERE role = 'acting' AND cycle_id = %s)", (at + timedelta(seconds=3), cycle_id))
        out = run_cli(["backtest", "--compare-live", "--format", "json"], env)
        table = run_cli(["backtest", "--compare-live"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert [m["market"] for m in data["markets"]] == ["KRW-BTC", "KRW-ETH"]
    total = data["portfolio"]
    assert total["decisions"] == sum(m["decisions"] for m in data["markets"]) == 6
    assert Decimal(total["bot_pnl"]) == sum(Decimal(m["pnl"]["bot_pnl"]) for m in data["markets"])
    assert table.returncode == 0, table.stderr
    for heading in ("Live vs strategy for KRW-BTC (paper)", "Live vs strategy for KRW-ETH (paper)",
                    "Live vs strategy for the portfolio (KRW-BTC, KRW-ETH"):
        assert heading in table.stdout
