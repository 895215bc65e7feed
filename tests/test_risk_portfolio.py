"""The risk gate's portfolio limits (issue 12): exposure over every market, the number of open positions, the
KRW reserve — and (hypothesis) that no buy breaks any of them, while one market with the defaults gates
exactly as before."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.models import Decision, Market, Position
from tradebot.risk import PortfolioState, RiskLimits, gate
from tradebot.upbit_rules import FEE_RATE, MIN_ORDER_KRW

BASE = RiskLimits(min_confidence=Decimal("0.6"), max_order_krw=Decimal(50000), max_position_krw=Decimal(200000),
                  daily_loss_limit_krw=Decimal(30000))
BID = Decimal(100_000_000)


def pos(free_krw: str = "1000000", coin: str = "0", market: str = "KRW-BTC") -> Position:
    return Position(Market(market), Decimal(free_krw), Decimal(0), Decimal(coin), Decimal(coin), Decimal(0), BID)


def buy(fraction: str = "0.5", confidence: str = "0.8") -> Decision:
    return Decision("buy", Decimal(confidence), Decimal(fraction), "test")


def test_exposure_caps_a_buy_by_what_every_market_holds_together() -> None:
    limits = replace(BASE, max_exposure_krw=Decimal(300000))
    # This market holds nothing, the others 270,000 KRW: 30,000 of room.
    r = gate(buy(), pos(), BID, limits, portfolio=PortfolioState(Decimal(270000), 2))
    assert (r.action, r.krw) == ("buy", Decimal(30000))
    assert [c["rule"] for c in r.clamps] == ["max_order_krw", "max_exposure_krw"]
    assert "TRADEBOT_MAX_EXPOSURE_KRW 300000 (positions worth 270000 KRW together)" in r.clamps[-1]["detail"]
    # Room below the minimum order: no buy at all.
    full = gate(buy(), pos(), BID, limits, portfolio=PortfolioState(Decimal(296000), 2))
    assert full.action == "hold" and full.vetoes[0]["rule"] == "min_order"


def test_a_new_position_beyond_the_open_positions_limit_is_vetoed_but_adding_to_one_is_not() -> None:
    limits = replace(BASE, max_open_positions=2)
    new = gate(buy(), pos(), BID, limits, portfolio=PortfolioState(Decimal(100000), 2))
    assert new.action == "hold" and new.vetoes[0]["rule"] == "max_open_positions"
    held = pos(coin="0.0005")  # 50,000 KRW: an open position
    more = gate(buy(), held, BID, limits, portfolio=PortfolioState(Decimal(100000), 2))
    assert more.action == "buy"
    dust = pos(coin="0.00004")  # 4,000 KRW of dust is not a position: buying there opens one
    assert gate(buy(), dust, BID, limits, portfolio=PortfolioState(Decimal(54000), 2)).vetoes[0]["rule"] == "max_open_positions"
    assert gate(buy(), pos(), BID, limits, portfolio=PortfolioState(Decimal(50000), 1)).action == "buy"


def test_the_reserve_is_never_spent_and_says_so() -> None:
    limits = replace(BASE, krw_reserve=Decimal(980000))
    r = gate(buy(fraction="1"), pos("1000000"), BID, limits)
    assert r.action == "buy" and r.krw is not None
    assert r.krw * (1 + FEE_RATE) <= Decimal(20000)
    assert [c["rule"] for c in r.clamps] == ["max_order_krw", "krw_reserve", "fee_headroom"]
    assert "TRADEBOT_KRW_RESERVE 980000" in r.clamps[1]["detail"]
    below = gate(buy(fraction="1"), pos("984000"), BID, limits)  # 4,000 KRW above the reserve
    assert below.action == "hold" and below.vetoes[0]["rule"] == "min_order"
    sell = gate(Decision("sell", Decimal("0.9"), Decimal(1), "x"), pos("0", coin="0.001"), BID, limits)
    assert sell.action == "sell"  # the reserve limits buys only


def test_one_market_with_the_default_portfolio_limits_gates_as_before() -> None:
    """The defaults of a one-market setup (exposure = max position, open positions = 1, no reserve)."""
    one = replace(BASE, max_exposure_krw=BASE.max_position_krw, max_open_positions=1, krw_reserve=Decimal(0))
    for p in (pos(), pos(coin="0.0018"), pos("10000"), pos(coin="0.00004"), pos("3000")):
        for dec in (buy("0.5"), buy("1"), buy("0.004"), buy("0.9", "0.59")):
            assert gate(dec, p, BID, one) == gate(dec, p, BID, BASE), (p, dec)


money = st.decimals(min_value=0, max_value=10**9, places=0, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(fraction=st.decimals(min_value=0, max_value=1, places=4), free_krw=money, coin=st.decimals(0, 1, places=8),
       others=money, open_others=st.integers(0, 20), max_exposure=money, max_open=st.integers(1, 20), reserve=money)
def test_no_buy_breaks_a_portfolio_limit(fraction: Decimal, free_krw: Decimal, coin: Decimal, others: Decimal,
                                         open_others: int, max_exposure: Decimal, max_open: int, reserve: Decimal) -> None:
    limits = replace(BASE, max_order_krw=Decimal(10**9), max_position_krw=Decimal(10**12), max_exposure_krw=max_exposure,
                     max_open_positions=max_open, krw_reserve=reserve)
    p = Position(Market("KRW-ETH"), free_krw, Decimal(0), coin, coin, Decimal(0), BID)
    holding = p.position_value >= MIN_ORDER_KRW
    state = PortfolioState(others + p.position_value, open_others + (1 if holding else 0))
    r = gate(Decision("buy", Decimal("0.9"), fraction, "x"), p, BID, limits, portfolio=state)
    if r.action == "buy":
        assert r.krw is not None and r.krw >= MIN_ORDER_KRW
        assert state.exposure_krw + r.krw <= max_exposure
        assert r.krw * (1 + FEE_RATE) <= free_krw - reserve
        assert holding or state.open_positions < max_open
