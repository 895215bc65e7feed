"""Upbit's trading rules for KRW markets, defined once for the whole product.

The risk gate, the paper broker, the advisors, P&L and the backtest all import these; the simulator keeps
its own copy on purpose (it plays the exchange, and a test that compares the two must not compare a value
with itself). Source: Upbit's order rules (see ``shared/reference/upbit.md``).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

FEE_RATE = Decimal("0.0005")  # 0.05 % per side on KRW markets, taken in KRW on both buys and sells
MIN_ORDER_KRW = Decimal(5000)  # smallest market buy, and smallest sell by value at the best bid
MAX_ORDER_KRW = Decimal(1_000_000_000)  # largest market buy
VOLUME_DECIMALS = 8  # coin volumes are truncated (never rounded up) to this many decimals
VOLUME_STEP = Decimal(1).scaleb(-VOLUME_DECIMALS)


def check_buy(krw: Decimal, free_krw: Decimal) -> Decimal:
    """Upbit's rules for a market buy of ``krw`` (whole KRW): minimum, maximum, fee headroom.

    Returns the whole-KRW amount; raises OrderRejectedError with Upbit's error name otherwise.
    """
    from tradebot.errors import OrderRejectedError
    from tradebot.models import plain

    amount = krw.quantize(Decimal(1), rounding=ROUND_DOWN)
    if amount < MIN_ORDER_KRW:
        raise OrderRejectedError(f"buy of {plain(krw)} KRW is below Upbit's minimum order of {MIN_ORDER_KRW} KRW",
                                 name="under_min_total_bid")
    if amount > MAX_ORDER_KRW:
        raise OrderRejectedError(f"buy of {plain(krw)} KRW is above Upbit's maximum order of {MAX_ORDER_KRW} KRW",
                                 name="over_max_total_bid")
    needed = amount * (1 + FEE_RATE)
    if needed > free_krw:
        raise OrderRejectedError(f"buy of {plain(amount)} KRW needs {plain(needed)} KRW including the 0.05 % fee, "
                                 f"but only {plain(free_krw)} KRW is free", name="insufficient_funds_bid")
    return amount


def check_sell(currency: str, volume: Decimal, free_coin: Decimal, best_bid: Decimal) -> Decimal:
    """Upbit's rules for a market sell of ``volume`` of ``currency``: 8 decimals, free balance, value at the
    best bid ≥ 5,000 KRW.

    Returns the truncated volume; raises OrderRejectedError with Upbit's error name otherwise.
    """
    from tradebot.errors import OrderRejectedError
    from tradebot.models import plain

    qty = Decimal(plain(volume, VOLUME_DECIMALS))
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
