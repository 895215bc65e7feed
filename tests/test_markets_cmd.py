"""``tradebot markets`` (issue 12): Upbit's KRW markets by 24-hour traded KRW, with the warning flags, from the
real CLI against the simulator (which lists its markets on /v1/market/all like Upbit)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.conftest import run_cli
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(port=0, markets=("KRW-BTC", "KRW-ETH", "KRW-DOGE", "KRW-SOL"),
                                         warned=("KRW-DOGE",), seed=5)) as s:
        yield s


def tickers(sim: SimulatorServer) -> dict[str, dict[str, Any]]:
    reply = requests.get(f"{sim.url}/v1/ticker", params={"markets": "KRW-BTC,KRW-ETH,KRW-DOGE,KRW-SOL"}, timeout=5)
    rows = json.loads(reply.text, parse_float=Decimal)  # the exact numbers the exchange wrote
    return {r["market"]: r for r in rows}


def test_markets_are_listed_by_traded_value_with_exact_figures_and_flags(sim: SimulatorServer, tb_env: dict[str, str]) -> None:
    env = {**tb_env, "UPBIT_API_URL": sim.url}
    out = run_cli(["markets", "--format", "json"], env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    truth = tickers(sim)
    assert [g["market"] for g in got] == sorted(truth, key=lambda m: -Decimal(truth[m]["acc_trade_price_24h"]))
    for g in got:
        t = truth[g["market"]]
        assert Decimal(g["price"]) == Decimal(t["trade_price"])
        assert Decimal(g["traded_value_24h"]) == Decimal(t["acc_trade_price_24h"])
        assert Decimal(g["change_rate"]) == Decimal(t["signed_change_rate"])
        assert (g["warning"], g["cautions"]) == ((True, ["PRICE_FLUCTUATIONS"]) if g["market"] == "KRW-DOGE" else (False, []))
    assert {g["market"]: g["english_name"] for g in got}["KRW-BTC"] == "Bitcoin"

    table = run_cli(["markets", "--limit", "2"], env)
    lines = table.stdout.splitlines()
    assert table.returncode == 0 and lines[0].split() == ["#", "MARKET", "NAME", "PRICE", "KRW", "CHANGE", "24H", "TRADED",
                                                         "KRW", "UPBIT", "FLAGS"]
    assert [line.split()[1] for line in lines[2:]] == [g["market"] for g in got[:2]]
    doge = next(line for line in run_cli(["markets"], env).stdout.splitlines() if "KRW-DOGE" in line)
    assert doge.endswith("warning, price_fluctuations")

    rows = list(csv.DictReader(io.StringIO(run_cli(["markets", "--format", "csv"], env).stdout)))
    assert [r["market"] for r in rows] == [g["market"] for g in got]
    assert {r["market"]: r["cautions"] for r in rows}["KRW-DOGE"] == "PRICE_FLUCTUATIONS"


def test_markets_without_upbit_is_one_error_line(tb_env: dict[str, str]) -> None:
    out = run_cli(["markets"], {**tb_env, "UPBIT_API_URL": "http://127.0.0.1:9"})
    assert out.returncode == 1 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("Error: ")
    out = run_cli(["markets", "--limit", "0"], tb_env)
    assert out.returncode == 2 and "--limit" in out.stderr


def test_doctor_names_the_closest_upbit_markets_for_an_unlisted_one(tb_env: dict[str, str]) -> None:
    with SimulatorServer(SimulatorConfig(port=0, markets=("KRW-BTC", "KRW-ETH", "KRW-BCH"))) as sim:
        env = {**tb_env, "UPBIT_API_URL": sim.url, "TRADEBOT_ADVISOR": "rules"}
        out = run_cli(["doctor"], {**env, "TRADEBOT_TICKER": "KRW-BTCC"})
        line = next(x for x in out.stdout.splitlines() if "upbit market data" in x)
        assert out.returncode == 1 and line.startswith("✗ upbit market data: Upbit has no market KRW-BTCC")
        assert line.endswith("— KRW-BTCC is not among Upbit's 3 KRW markets — did you mean KRW-BTC?")
        out = run_cli(["doctor"], {**env, "TRADEBOT_TICKER": "KRW-ZZZZ"})
        assert next(x for x in out.stdout.splitlines() if "upbit market data" in x).endswith(
            "— KRW-ZZZZ is not among Upbit's 3 KRW markets — `tradebot markets` lists them")


def test_simulated_markets_move_together_and_one_market_keeps_its_path() -> None:
    import math

    from tradebot.exchange.simulator.engine import _Exchange

    def returns(cfg: SimulatorConfig, market: str) -> list[float]:
        closes = [float(b.close) for b in _Exchange(cfg).markets[market].bars]
        return [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False)]

    def corr(x: list[float], y: list[float]) -> float:
        mx, my = sum(x) / len(x), sum(y) / len(y)
        cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
        return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))

    several = SimulatorConfig(markets=("KRW-BTC", "KRW-ETH", "KRW-SOL"), seed=9)
    btc, eth, sol = (returns(several, m) for m in several.markets)
    assert all(0.4 < corr(a, b) < 0.8 for a, b in ((btc, eth), (btc, sol), (eth, sol)))
    apart = SimulatorConfig(markets=("KRW-BTC", "KRW-ETH"), seed=9, correlation=0.0)
    assert abs(corr(returns(apart, "KRW-BTC"), returns(apart, "KRW-ETH"))) < 0.1
    # One market: the same path as before correlated markets existed (and as with correlation 0).
    assert returns(SimulatorConfig(seed=9), "KRW-BTC") == returns(apart, "KRW-BTC")


def test_prices_and_orderbooks_of_several_markets_in_one_request_each(sim: SimulatorServer) -> None:
    from tradebot.errors import ExchangeError
    from tradebot.exchange.upbit import UpbitExchange
    from tradebot.models import Market

    markets = [Market("KRW-SOL"), Market("KRW-BTC"), Market("KRW-DOGE")]
    exchange = UpbitExchange("", "", sim.url)
    try:
        prices = exchange.ticker_prices(markets)
        books = exchange.orderbooks(markets)
        assert list(prices) == markets and list(books) == markets
        for m in markets:
            assert prices[m] == exchange.ticker_price(m)
            assert books[m] == exchange.orderbook(m)
        with pytest.raises(ExchangeError, match="does not know one of the markets KRW-BTC, KRW-NOPE"):
            exchange.ticker_prices([Market("KRW-BTC"), Market("KRW-NOPE")])
    finally:
        exchange.close()


def test_the_simulator_refuses_bursts_beyond_upbits_limits_and_the_adapter_paces_itself() -> None:
    from tradebot.exchange.upbit import UpbitExchange
    from tradebot.models import Market

    with SimulatorServer(SimulatorConfig(port=0)) as sim:
        statuses = [requests.get(f"{sim.url}/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5).status_code
                    for _ in range(25)]
        assert 429 in statuses and statuses[:10] == [200] * 10  # 10 a second for the quotation groups
        refused = next(i for i, s in enumerate(statuses) if s == 429)
        assert refused >= 10
        time.sleep(1.05)  # a new second: the burst above spent this one's budget
        exchange = UpbitExchange("", "", sim.url, get_retries=0)  # a 429 would fail it outright
        try:
            prices = [exchange.ticker_price(Market("KRW-BTC")) for _ in range(25)]
        finally:
            exchange.close()
        assert len(prices) == 25
    with SimulatorServer(SimulatorConfig(port=0, rate_limits=False)) as sim:
        assert {requests.get(f"{sim.url}/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5).status_code
                for _ in range(25)} == {200}
