"""The one interface the trading cycle uses to talk to an exchange, live or paper."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from tradebot.models import Balance, Candle, Fill, Market, Orderbook

Interval = Literal["minute60", "day"]


class Exchange(Protocol):
    """What the cycle needs from an exchange. Every amount is a Decimal, every time UTC-aware."""

    def balances(self) -> list[Balance]:
        """All currencies of the account (KRW included)."""
        ...

    def candles(self, market: Market, interval: Interval, count: int, *, to: datetime | None = None) -> list[Candle]:
        """Completed candles, oldest first; the still-forming candle is dropped."""
        ...

    def ticker_price(self, market: Market) -> Decimal:
        """Last trade price."""
        ...

    def orderbook(self, market: Market) -> Orderbook:
        """Current orderbook, best levels first."""
        ...

    def ticker_prices(self, markets: Sequence[Market]) -> dict[Market, Decimal]:
        """Last trade prices of several markets (one request)."""
        ...

    def orderbooks(self, markets: Sequence[Market]) -> dict[Market, Orderbook]:
        """Current orderbooks of several markets (one request)."""
        ...

    def listed_markets(self) -> list[Market]:
        """Every KRW market the exchange lists now (one request)."""
        ...

    def market_buy(self, market: Market, krw: Decimal, client_order_id: str) -> Fill:
        """Spend ``krw`` (before fee) at market. Raises OrderRejectedError / ExchangeTransientError."""
        ...

    def market_sell(self, market: Market, volume: Decimal, client_order_id: str) -> Fill:
        """Sell ``volume`` at market. Raises OrderRejectedError / ExchangeTransientError."""
        ...

    def get_order(self, *, uuid: str | None = None, client_order_id: str | None = None) -> Fill:
        """One order with its trades. Raises OrderNotFoundError when the exchange has none."""
        ...

    def closed_orders(self, market: Market, since: datetime) -> list[Fill]:
        """The account's done/cancelled orders for a market since ``since`` (at most 7 days back)."""
        ...
