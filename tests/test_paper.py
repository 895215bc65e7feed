"""The paper broker: orderbook-walk prices, fees, minimums, and an account that persists in PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from tradebot.errors import OrderNotFoundError, OrderRejectedError
from tradebot.exchange.paper import PaperExchange, walk_book
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
from tradebot.exchange.upbit import UpbitExchange
from tradebot.models import Market, Orderbook, OrderbookLevel
from tradebot.store.trades import apply_fill, insert_pending


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(port=0, seed=7)) as s:
        yield s


def book() -> Orderbook:
    lv = [OrderbookLevel(Decimal(a), Decimal(asz), Decimal(b), Decimal(bsz)) for a, asz, b, bsz in (
        ("100000", "0.1", "99900", "0.05"), ("100100", "0.2", "99800", "0.1"), ("100200", "1", "99700", "1"))]
    return Orderbook("KRW-XYZ", tuple(lv))


def test_buy_walks_the_asks() -> None:
    # 10,000 KRW at the first level (0.1 × 100,000), the rest at 100,100.
    ex = walk_book(book(), "buy", krw=Decimal(25000))
    assert [(e.price, e.volume) for e in ex] == [(Decimal(100000), Decimal("0.1")), (Decimal(100100), Decimal("0.14985014"))]
    gross = sum(e.funds for e in ex)
    assert gross == Decimal("10000.0") + Decimal(100100) * Decimal("0.14985014")
    assert Decimal(25000) - gross < Decimal(100100) * Decimal("0.00000001")  # only truncation dust unspent


def test_sell_walks_the_bids_and_rejects_beyond_the_book() -> None:
    ex = walk_book(book(), "sell", volume=Decimal("0.12"))
    assert [(e.price, e.volume) for e in ex] == [(Decimal(99900), Decimal("0.05")), (Decimal(99800), Decimal("0.07"))]
    with pytest.raises(OrderRejectedError):
        walk_book(book(), "sell", volume=Decimal("2"))
    with pytest.raises(OrderRejectedError):
        walk_book(book(), "buy", krw=Decimal(10**9))


def paper(sim: SimulatorServer, conn: psycopg.Connection) -> PaperExchange:  # type: ignore[type-arg]
    return PaperExchange(UpbitExchange("", "", sim.url), conn, Decimal(1_000_000))


def record(conn: psycopg.Connection, fill: object, side: str, cid: str, **req: Decimal) -> None:  # type: ignore[type-arg]
    insert_pending(conn, client_order_id=cid, symbol="KRW-BTC", side=side, mode="paper",
                   requested_krw=req.get("krw"), requested_volume=req.get("volume"), decision_id=None)
    apply_fill(conn, cid, fill)  # type: ignore[arg-type]


def test_paper_fills_fees_and_account_persist_across_processes(sim: SimulatorServer, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        ex = paper(sim, conn)
        book_now = ex.orderbook("KRW-BTC")
        fill = ex.market_buy("KRW-BTC", Decimal(50000), "tb-paper-0001")
        assert fill.filled and fill.side == "buy" and fill.uuid.startswith("paper-")
        assert fill.fee == fill.gross * Decimal("0.0005")
        assert fill.executions[0].price == book_now.best_ask
        assert Decimal(50000) - fill.gross < book_now.best_ask * Decimal("0.00000001") * len(fill.executions)
        record(conn, fill, "buy", "tb-paper-0001", krw=Decimal(50000))
        assert ex.get_order(client_order_id="tb-paper-0001").volume == fill.volume
        with pytest.raises(OrderNotFoundError):
            ex.get_order(client_order_id="tb-never-sent")
    # A different process sees the same account, derived from the recorded trades.
    code = ("import psycopg, sys; from decimal import Decimal; from tradebot.exchange.paper import PaperExchange\n"
            f"conn = psycopg.connect({db_url!r})\n"
            "for b in PaperExchange(None, conn, Decimal(1000000)).balances(): print(b.currency, b.free, b.avg_buy_price)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == f"KRW {Decimal(1_000_000) - fill.gross - fill.fee} 0"
    assert out[1] == f"BTC {fill.volume} {fill.gross / fill.volume}"


def test_paper_sell_minimums_and_reset(sim: SimulatorServer, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        ex = paper(sim, conn)
        buy = ex.market_buy("KRW-BTC", Decimal(20000), "tb-paper-0002")
        record(conn, buy, "buy", "tb-paper-0002", krw=Decimal(20000))
        half = (buy.volume / 2).quantize(Decimal("0.00000001"))
        sell = ex.market_sell(Market("KRW-BTC"), half, "tb-paper-0003")
        assert sell.volume == half and sell.fee == sell.gross * Decimal("0.0005")
        assert sell.executions[0].price == ex.orderbook("KRW-BTC").best_bid
        record(conn, sell, "sell", "tb-paper-0003", volume=half)
        btc = {b.currency: b for b in ex.balances()}["BTC"]
        assert btc.free == buy.volume - half
        with pytest.raises(OrderRejectedError) as e:
            ex.market_buy("KRW-BTC", Decimal(4999), "tb-paper-0004")
        assert e.value.name == "under_min_total_bid"
        with pytest.raises(OrderRejectedError) as e:
            ex.market_sell(Market("KRW-BTC"), Decimal("0.00001"), "tb-paper-0005")  # ~1,300 KRW at the bid
        assert e.value.name == "under_min_total_market_ask"
        with pytest.raises(OrderRejectedError) as e:
            ex.market_sell(Market("KRW-BTC"), Decimal(1), "tb-paper-0006")
        assert e.value.name == "insufficient_funds_ask"
        with pytest.raises(OrderRejectedError) as e:
            ex.market_buy("KRW-BTC", Decimal(999_700), "tb-paper-0007")  # fee headroom
        assert e.value.name == "insufficient_funds_bid"
        ex.reset(Decimal(300000))
        assert [(b.currency, b.free) for b in ex.balances()] == [("KRW", Decimal(300000))]
