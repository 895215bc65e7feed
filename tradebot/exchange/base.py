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


def check_buy(krw: Decimal, free_krw: Decimal) -> Decimal:
    """Upbit's rules for a market buy of ``krw`` (whole KRW): minimum, maximum, fee headroom.

    Returns the whole-KRW amount; raises OrderRejectedError with Upbit's error name otherwise.
    """
    from decimal import ROUND_DOWN

    from tradebot.errors import OrderRejectedError
    from tradebot.models import plain

    amount = krw.quantize(Decimal(1), rounding=ROUND_DOWN)
    if amount < MIN_ORDER_KRW:
        raise OrderRejectedError(f"buy of {plain(krw)} KRW is below Upbit's minimum order of {MIN_ORDER_KRW} KRW",
                                 name="under_min_total_bid")
    if amount > MAX_ORDER_KRW:
        raise OrderRejectedError(f"buy of {plain(krw)} KRW is above Upbit's maximum order of {MAX_ORDER_KRW} KRW",
                                 name="over_max_total_bid")
    needed = amount * (1 + UPBIT_FEE_RATE)
    if needed > free_krw:
        raise OrderRejectedError(f"buy of {plain(amount)} KRW needs {plain(needed)} KRW including the 0.05 % fee, "
                                 f"but only {plain(free_krw)} KRW is free", name="insufficient_funds_bid")
    return amount


def check_sell(ticker: str, volume: Decimal, free_coin: Decimal, best_bid: Decimal) -> Decimal:
    """Upbit's rules for a market sell: 8 decimals, free balance, value at the best bid ≥ 5,000 KRW.

    Returns the truncated volume; raises OrderRejectedError with Upbit's error name otherwise.
    """
    from tradebot.errors import OrderRejectedError
    from tradebot.models import plain

    qty = Decimal(plain(volume, VOLUME_DECIMALS))
    currency = ticker.split("-", 1)[-1]
    if qty <= 0:
        raise OrderRejectedError(f"sell volume {plain(volume)} is zero after truncation to {VOLUME_DECIMALS} decimals",
                                 name="invalid_volume_ask")
    if qty > free_coin:
        raise OrderRejectedError(f"sell of {plain(qty)} {currency} exceeds the free balance of {plain(free_coin)} {currency}",
                                 name="insufficient_funds_ask")
    value = qty * best_bid
    if value < MIN_ORDER_KRW:
        raise OrderRejectedError(f"sell of {plain(qty)} {currency} is worth {plain(value, 0)} KRW at the best bid "
                                 f"{plain(best_bid)}, below Upbit's minimum order of {MIN_ORDER_KRW} KRW",
                                 name="under_min_total_market_ask")
    return qty
