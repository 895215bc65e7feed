"""The risk gate: every clamp and veto, and (hypothesis) no order beyond the caps or the free balance."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.models import Decision, Position
from tradebot.risk import RiskLimits, gate
from tradebot.upbit_rules import FEE_RATE as UPBIT_FEE_RATE
from tradebot.upbit_rules import MIN_ORDER_KRW

LIMITS = RiskLimits(min_confidence=Decimal("0.6"), max_order_krw=Decimal(50000), max_position_krw=Decimal(200000),
                    daily_loss_limit_krw=Decimal(30000))
BID = Decimal(100_000_000)


def pos(free_krw: str = "1000000", coin: str = "0", price: Decimal = BID) -> Position:
    return Position("KRW-BTC", Decimal(free_krw), Decimal(0), Decimal(coin), Decimal(coin), Decimal(0), price)


def d(action: str, confidence: str = "0.8", fraction: str = "0.5") -> Decision:
    return Decision(action, Decimal(confidence), Decimal(fraction), "test")  # type: ignore[arg-type]


def test_no_decision_and_hold_and_low_confidence_hold() -> None:
    assert gate(None, pos(), BID, LIMITS).action == "hold"
    assert gate(None, pos(), BID, LIMITS).vetoes[0]["rule"] == "advisor"
    assert gate(d("hold"), pos(), BID, LIMITS).vetoes == ()
    low = gate(d("buy", confidence="0.59"), pos(), BID, LIMITS)
    assert low.action == "hold" and low.vetoes[0]["rule"] == "min_confidence"


def test_buy_is_capped_by_max_order() -> None:
    r = gate(d("buy", fraction="0.5"), pos("1000000"), BID, LIMITS)
    assert (r.action, r.krw) == ("buy", Decimal(50000))
    assert [c["rule"] for c in r.clamps] == ["max_order_krw"]


def test_buy_is_capped_by_position_room_and_fee_headroom() -> None:
    # Position worth 180,000 KRW: only 20,000 of room left.
    r = gate(d("buy", fraction="1"), pos("1000000", coin="0.0018"), BID, LIMITS)
    assert (r.action, r.krw) == ("buy", Decimal(20000))
    assert [c["rule"] for c in r.clamps] == ["max_order_krw", "max_position_krw"]
    # All of 10,000 free KRW cannot be spent: the fee must fit.
    r = gate(d("buy", fraction="1"), pos("10000"), BID, LIMITS)
    assert r.krw == Decimal(9995) and r.clamps[-1]["rule"] == "fee_headroom"
    assert r.krw * (1 + UPBIT_FEE_RATE) <= Decimal(10000)


def test_buy_below_minimum_paused_and_loss_limit_are_vetoed() -> None:
    small = gate(d("buy", fraction="0.004"), pos("1000000"), BID, LIMITS)
    assert small.action == "hold" and small.vetoes[0]["rule"] == "min_order"
    paused = gate(d("buy"), pos(), BID, LIMITS, paused=True)
    assert paused.action == "hold" and paused.vetoes[0]["rule"] == "paused"
    lost = gate(d("buy"), pos(), BID, LIMITS, realized_loss_today=Decimal(30000))
    assert lost.action == "hold" and lost.vetoes[0]["rule"] == "daily_loss_limit"


def test_sells_continue_while_paused_or_after_losses() -> None:
    r = gate(d("sell", fraction="1"), pos(coin="0.001"), BID, LIMITS, paused=True, realized_loss_today=Decimal(10**6))
    assert (r.action, r.volume) == ("sell", Decimal("0.001"))


def test_sell_sells_everything_rather_than_leave_dust() -> None:
    # Half of 0.00015 BTC leaves 7,500 KRW: sellable. 0.97 of it leaves 450 KRW of dust: sell all.
    half = gate(d("sell", fraction="0.5"), pos(coin="0.00015"), BID, LIMITS)
    assert half.volume == Decimal("0.000075") and half.clamps == ()
    most = gate(d("sell", fraction="0.97"), pos(coin="0.00015"), BID, LIMITS)
    assert most.volume == Decimal("0.00015") and most.clamps[0]["rule"] == "dust"


def test_sell_worth_less_than_minimum_holds() -> None:
    r = gate(d("sell", fraction="1"), pos(coin="0.00004"), BID, LIMITS)  # 4,000 KRW at the bid
    assert r.action == "hold" and r.vetoes[0]["rule"] == "min_order"


money = st.decimals(min_value=0, max_value=10**10, places=0, allow_nan=False, allow_infinity=False)
volume = st.decimals(min_value=0, max_value=1000, places=8, allow_nan=False, allow_infinity=False)
unit = st.decimals(min_value=0, max_value=1, places=6, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(action=st.sampled_from(["buy", "sell", "hold"]), confidence=unit, fraction=unit, free_krw=money, coin=volume,
       price=st.decimals(min_value=1, max_value=10**9, places=2), max_order=money, max_position=money,
       paused=st.booleans())
def test_no_order_exceeds_caps_or_balance(action: str, confidence: Decimal, fraction: Decimal, free_krw: Decimal,
                                          coin: Decimal, price: Decimal, max_order: Decimal, max_position: Decimal,
                                          paused: bool) -> None:
    limits = RiskLimits(Decimal("0.6"), max_order, max_position, Decimal(30000))
    p = Position("KRW-BTC", free_krw, Decimal(0), coin, coin, Decimal(0), price)
    r = gate(Decision(action, confidence, fraction, "x"), p, price, limits, paused=paused)  # type: ignore[arg-type]
    if r.action == "buy":
        assert r.krw is not None and r.volume is None
        assert MIN_ORDER_KRW <= r.krw <= max_order
        assert r.krw * (1 + UPBIT_FEE_RATE) <= free_krw
        assert r.krw <= max(max_position - p.position_value, Decimal(0))
        assert not paused and confidence >= Decimal("0.6")
        assert r.krw == r.krw.to_integral_value()
    elif r.action == "sell":
        assert r.volume is not None and r.krw is None
        assert 0 < r.volume <= coin
        assert r.volume * price >= MIN_ORDER_KRW
        assert r.volume == r.volume.quantize(Decimal("0.00000001"))
        assert confidence >= Decimal("0.6")
    else:
        assert r.krw is None and r.volume is None
    assert r.action == "hold" or r.action == action


@pytest.mark.parametrize("fraction", ["1.5", "-0.2"])
def test_out_of_range_fractions_are_clamped_not_trusted(fraction: str) -> None:
    r = gate(d("buy", fraction=fraction), pos("20000"), BID, LIMITS)
    assert r.action in ("buy", "hold")
    if r.krw is not None:
        assert r.krw * (1 + UPBIT_FEE_RATE) <= Decimal(20000)
