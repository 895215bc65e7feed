"""The one interface the trading cycle uses to talk to an exchange, live or paper."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from tradebot.models import Balance, Candle, Fill, Orderbook

Interval = Literal["minute60", "day"]

UPBIT_FEE_RATE = Decimal("0.0005")  # 0.05 % per side on KRW markets
MIN_ORDER_KRW = Decimal(5000)
MAX_ORDER_KRW = Decimal(1_000_000_000)
VOLUME_DECIMALS = 8


class Exchange(Protocol):
    """What the cycle needs from an exchange. Every amount is a Decimal, every time UTC-aware."""

    def balances(self) -> list[Balance]:
        """All currencies of the account (KRW included)."""
        ...

    def candles(self, ticker: str, interval: Interval, count: int, *, to: datetime | None = None) -> list[Candle]:
        """Completed candles, oldest first; the still-forming candle is dropped."""
        ...

    def ticker_price(self, ticker: str) -> Decimal:
        """Last trade price."""
        ...

    def orderbook(self, ticker: str) -> Orderbook:
        """Current orderbook, best levels first."""
        ...

    def market_buy(self, ticker: str, krw: Decimal, client_order_id: str) -> Fill:
        """Spend ``krw`` (before fee) at market. Raises OrderRejectedError / ExchangeTransientError."""
        ...

    def market_sell(self, ticker: str, volume: Decimal, client_order_id: str) -> Fill:
        """Sell ``volume`` at market. Raises OrderRejectedError / ExchangeTransientError."""
        ...

    def get_order(self, *, uuid: str | None = None, client_order_id: str | None = None) -> Fill:
        """One order with its trades. Raises OrderNotFoundError when the exchange has none."""
        ...

    def closed_orders(self, ticker: str, since: datetime) -> list[Fill]:
        """The account's done/cancelled orders for a market since ``since`` (at most 7 days back)."""
        ...
