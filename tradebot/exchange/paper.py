"""Paper trading: real market data, simulated fills, an account kept in PostgreSQL.

``PaperExchange`` takes prices, candles and the orderbook from a real market-data source (the Upbit API at
``UPBIT_API_URL``, or the local simulator) and fills market orders by walking the current orderbook: a buy
consumes asks from the best price upwards, a sell consumes bids downwards, one execution per level touched,
volumes truncated to 8 decimals as Upbit does, fee 0.05 % of the gross on both sides. It applies the same
pre-trade rules as the live adapter (5,000 KRW minimum, fee headroom, a sell valued at the best bid) and
returns the same :class:`~tradebot.models.Fill` shape, so the cycle cannot tell the two apart.

Fill model honesty: a paper order fills instantly at the book as it was read, with no queue position and no
market impact beyond the visible levels. An order larger than the visible book is rejected (Upbit does the
same for market orders beyond its 30 levels).

The account is not stored anywhere else: its KRW and holdings are *derived* from the completed paper trades
recorded since the newest ``paper_resets`` row (``TRADEBOT_PAPER_KRW`` when there is none), so it survives
between cron runs and ``tradebot paper reset`` starts it afresh.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from tradebot.errors import OrderNotFoundError, OrderRejectedError
from tradebot.exchange.base import Exchange, Interval
from tradebot.models import Balance, Candle, Execution, Fill, Market, Orderbook, OrderState, Side, plain
from tradebot.store import paper as store
from tradebot.upbit_rules import FEE_RATE, check_buy, check_sell

if TYPE_CHECKING:
    import psycopg

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STEP = Decimal("0.00000001")


def _trunc8(x: Decimal) -> Decimal:
    return x.quantize(STEP, rounding=ROUND_DOWN)


def walk_book(book: Orderbook, side: Side, *, krw: Decimal | None = None, volume: Decimal | None = None) -> list[Execution]:
    """Executions of a market order against ``book``: spend ``krw`` on asks (buy) or sell ``volume`` into bids.

    Raises OrderRejectedError when the visible book cannot absorb the order.
    """
    now = datetime.now(UTC)
    out: list[Execution] = []
    if side == "buy":
        assert krw is not None
        remaining = krw
        for level in book.levels:
            price, size = level.ask_price, level.ask_size
            vol = size if price * size <= remaining else _trunc8(remaining / price)
            if vol <= 0:
                break
            funds = price * vol
            out.append(Execution(price=price, volume=vol, funds=funds, created_at=now))
            remaining -= funds
            if remaining < price * STEP:
                break
        else:
            if remaining >= book.levels[-1].ask_price * STEP:
                raise OrderRejectedError(f"buy of {plain(krw)} KRW is larger than the visible orderbook of {book.market}",
                                         name="over_max_total_bid")
    else:
        assert volume is not None
        remaining = volume
        for level in book.levels:
            vol = min(level.bid_size, remaining)
            if vol <= 0:
                break
            out.append(Execution(price=level.bid_price, volume=vol, funds=level.bid_price * vol, created_at=now))
            remaining -= vol
        if remaining > 0:
            raise OrderRejectedError(f"sell of {plain(volume)} is larger than the visible orderbook of {book.market}",
                                     name="over_max_total_market_ask")
    return out


class PaperExchange:
    """The paper broker. ``source`` supplies market data; ``conn`` is the tradebot database."""

    def __init__(self, source: Exchange, conn: psycopg.Connection[Any], starting_krw: Decimal) -> None:
        self.source = source
        self.conn = conn
        self.starting_krw = starting_krw

    def __repr__(self) -> str:
        return f"PaperExchange(source={self.source!r})"

    # -- account ------------------------------------------------------------------------------------------
    def _account_start(self) -> tuple[Decimal, datetime]:
        return store.latest_reset(self.conn) or (self.starting_krw, EPOCH)

    def balances(self) -> list[Balance]:
        """KRW and every coin, replayed from the completed paper trades since the newest reset.

        ``avg_buy_price`` is the volume-weighted price of the buys since the holding was last empty (fees
        excluded), as Upbit reports it.
        """
        krw, since = self._account_start()
        coins: dict[str, tuple[Decimal, Decimal]] = {}  # currency -> (volume, avg price)
        for symbol, side, _price, amount, total, fee in store.fills_since(self.conn, since):
            currency = Market(symbol).base
            vol, avg = coins.get(currency, (Decimal(0), Decimal(0)))
            if side == "buy":
                krw -= total + fee
                avg = (avg * vol + total) / (vol + amount)
                vol += amount
            else:
                krw += total - fee
                vol -= amount
                if vol <= 0:
                    vol, avg = Decimal(0), Decimal(0)
            coins[currency] = (vol, avg)
        out = [Balance("KRW", krw, Decimal(0))]
        out += [Balance(c, v, Decimal(0), a) for c, (v, a) in sorted(coins.items()) if v > 0]
        return out

    def reset(self, starting_krw: Decimal) -> datetime:
        """Start a new paper account with ``starting_krw`` (earlier paper trades stay recorded)."""
        return store.reset(self.conn, starting_krw)

    def _free(self, currency: str) -> Decimal:
        return next((b.free for b in self.balances() if b.currency == currency), Decimal(0))

    # -- market data: straight from the real source ----------------------------------------------------------
    def candles(self, market: Market, interval: Interval, count: int, *, to: datetime | None = None) -> list[Candle]:
        return self.source.candles(market, interval, count, to=to)

    def ticker_price(self, market: Market) -> Decimal:
        return self.source.ticker_price(market)

    def orderbook(self, market: Market) -> Orderbook:
        return self.source.orderbook(market)

    def ticker_prices(self, markets: Sequence[Market]) -> dict[Market, Decimal]:
        return self.source.ticker_prices(markets)

    def orderbooks(self, markets: Sequence[Market]) -> dict[Market, Orderbook]:
        return self.source.orderbooks(markets)

    def listed_markets(self) -> list[Market]:
        return self.source.listed_markets()

    # -- orders -----------------------------------------------------------------------------------------------
    def _accept(self, client_order_id: str) -> str:
        """Give the order its uuid and write it on the pending row, before any fill exists.

        From here on a fill may be made that only this process knows about; if it is then lost (the
        database and the journal both fail, or the process dies), reconciliation finds a pending row with a
        uuid and marks it ``unknown`` (needs attention) instead of "never placed". If the write fails,
        nothing is filled (StorageError).
        """
        order_uuid = f"paper-{uuidlib.uuid4()}"
        store.accept_order(self.conn, client_order_id, order_uuid)
        return order_uuid

    @staticmethod
    def _fill(order_uuid: str, market: Market, side: Side, client_order_id: str, executions: list[Execution]) -> Fill:
        volume = sum((e.volume for e in executions), Decimal(0))
        gross = sum((e.funds for e in executions), Decimal(0))
        return Fill(uuid=order_uuid, client_order_id=client_order_id, market=market, side=side,
                    state=OrderState.DONE, volume=volume, gross=gross, fee=gross * FEE_RATE,
                    executions=tuple(executions), created_at=datetime.now(UTC))

    def market_buy(self, market: Market, krw: Decimal, client_order_id: str) -> Fill:
        """Simulated market buy of ``krw`` (whole KRW, before fee) against the current asks."""
        amount = check_buy(krw, self._free("KRW"))
        order_uuid = self._accept(client_order_id)
        executions = walk_book(self.orderbook(market), "buy", krw=amount)
        return self._fill(order_uuid, market, "buy", client_order_id, executions)

    def market_sell(self, market: Market, volume: Decimal, client_order_id: str) -> Fill:
        """Simulated market sell of ``volume`` against the current bids."""
        book = self.orderbook(market)
        qty = check_sell(market.base, volume, self._free(market.base), book.best_bid)
        order_uuid = self._accept(client_order_id)
        return self._fill(order_uuid, market, "sell", client_order_id, walk_book(book, "sell", volume=qty))

    def get_order(self, *, uuid: str | None = None, client_order_id: str | None = None) -> Fill:
        """A paper order exists only once its fill was recorded: a pending row whose process died before
        that never filled (the paper 'exchange' is this process), so it is reported as not found."""
        fill = store.completed_order(self.conn, uuid=uuid, client_order_id=client_order_id)
        if fill is None:
            raise OrderNotFoundError(f"no paper order {uuid or client_order_id}", name="order_not_found", status=404)
        return fill

    def closed_orders(self, market: Market, since: datetime) -> list[Fill]:
        return store.completed_since(self.conn, market, since)
