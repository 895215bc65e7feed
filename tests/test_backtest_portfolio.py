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
