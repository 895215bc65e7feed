"""Sequencing a portfolio's orders (issue 12, ``tradebot.portfolio``): sells first, buys by confidence, each
gated against the KRW really left after the earlier fills — so that (hypothesis) no sequence of fills ever
overdraws the account, spends the reserve, or breaks the exposure or open-positions limit."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_DOWN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.models import Decision, GateResult, Market, Position
from tradebot.portfolio import Filled, MarketTurn, sequence
from tradebot.risk import RiskLimits, gate, holds
from tradebot.upbit_rules import FEE_RATE

LIMITS = RiskLimits(min_confidence=Decimal("0.6"), max_order_krw=Decimal(500_000), max_position_krw=Decimal(2_000_000),
                    daily_loss_limit_krw=Decimal(0))
MARKETS = [Market(m) for m in ("KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP", "KRW-DOGE")]


def turn(i: int, krw: Decimal, coin: Decimal, price: Decimal, decision: Decision | None) -> MarketTurn:
    p = Position(MARKETS[i], krw, Decimal(0), coin, coin, price, price)
    return MarketTurn(MARKETS[i], p, decision, best_bid=price)


def exchange(slippage: Decimal) -> tuple[list[tuple[Market, str]], object]:
    """A ``place`` that fills everything: buys at the price plus ``slippage`` (never more KRW than asked),
    sells at the bid, Upbit's fee on both, volumes truncated to 8 decimals as Upbit does."""
    placed: list[tuple[Market, str]] = []

    def place(t: MarketTurn, g: GateResult) -> Filled | None:
        placed.append((t.market, g.action))
        if g.action == "buy":
            assert g.krw is not None
            ask = t.position.price * (1 + slippage)
            volume = (g.krw / ask).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
            gross = volume * ask
        else:
            assert g.volume is not None
            volume, gross = g.volume, g.volume * t.best_bid
        return Filled(volume, gross, gross * FEE_RATE)

    return placed, place


def test_sells_first_then_buys_by_confidence_each_against_what_is_left() -> None:
    krw = Decimal(600_000)
    turns = [
        turn(0, krw, Decimal(0), Decimal(100_000_000), Decision("buy", Decimal("0.7"), Decimal(1), "b")),
        turn(1, krw, Decimal(0), Decimal(5_000_000), Decision("buy", Decimal("0.9"), Decimal(1), "b")),
        turn(2, krw, Decimal(2), Decimal(200_000), Decision("sell", Decimal("0.8"), Decimal(1), "s")),
        turn(3, krw, Decimal(0), Decimal(1_000), Decision("hold", Decimal("0.8"), Decimal(0), "h")),
    ]
    placed, place = exchange(Decimal("0.001"))
    steps = sequence(turns, LIMITS, place)  # type: ignore[arg-type]
    assert [(s.market, s.gate.action) for s in steps] == [
        (MARKETS[2], "sell"), (MARKETS[1], "buy"), (MARKETS[0], "buy"), (MARKETS[3], "hold")]
    assert placed == [(MARKETS[2], "sell"), (MARKETS[1], "buy"), (MARKETS[0], "buy")]
    # The sell's 400,000 KRW (less its fee) is spendable by the buys that follow it.
    sell, eth, btc = (s.filled for s in steps[:3])
    assert sell is not None and eth is not None and btc is not None
    assert steps[1].gate.krw == Decimal(500_000)  # the max order, not the 600,000 there were
    left = krw + sell.gross - sell.fee - eth.gross - eth.fee
    assert steps[2].gate.krw is not None and steps[2].gate.krw * (1 + FEE_RATE) <= left


def test_one_market_gates_exactly_as_the_plain_gate() -> None:
    one = replace(LIMITS, max_exposure_krw=LIMITS.max_position_krw, max_open_positions=1)
    for coin in (Decimal(0), Decimal("0.001"), Decimal("0.03")):
        for d in (Decision("buy", Decimal("0.8"), Decimal("0.5"), "x"), Decision("sell", Decimal("0.8"), Decimal(1), "x"),
                  Decision("buy", Decimal("0.5"), Decimal(1), "x"), None):
            t = turn(0, Decimal(1_000_000), coin, Decimal(100_000_000), d)
            [step] = sequence([t], one, lambda t, g: None)
            assert step.gate == gate(d, t.position, t.best_bid, one), (coin, d)


decisions = st.one_of(st.none(), st.builds(Decision, st.sampled_from(["buy", "sell", "hold"]),
                                           st.decimals(Decimal("0.5"), Decimal(1), places=2),
                                           st.decimals(Decimal(0), Decimal(1), places=2), st.just("x")))


@settings(max_examples=300, deadline=None)
@given(krw=st.integers(0, 3_000_000), n=st.integers(1, 5), data=st.data(),
       exposure=st.integers(0, 4_000_000), max_open=st.integers(1, 5), reserve=st.integers(0, 500_000),
       slippage=st.decimals(Decimal(0), Decimal("0.01"), places=4))
def test_no_sequence_overdraws_or_breaks_a_portfolio_limit(krw: int, n: int, data: st.DataObject, exposure: int,
                                                           max_open: int, reserve: int, slippage: Decimal) -> None:
    limits = replace(LIMITS, max_exposure_krw=Decimal(exposure), max_open_positions=max_open, krw_reserve=Decimal(reserve))
    turns = []
    for i in range(n):
        price = Decimal(data.draw(st.sampled_from([100_000_000, 5_000_000, 200_000, 1_000, 300])))
        coin = data.draw(st.decimals(Decimal(0), Decimal(2_000_000) / price, places=8))
        turns.append(turn(i, Decimal(krw), coin, price, data.draw(decisions)))
    placed, place = exchange(slippage)
    steps = sequence(turns, limits, place)  # type: ignore[arg-type]

    left = Decimal(krw)
    values = {t.market: t.position.position_value for t in turns}
    opened = {t.market for t in turns if holds(t.position)}
    actions = [s.gate.action for s in steps if s.filled is not None]
    assert actions == sorted(actions, key=lambda a: a != "sell")  # every sell before every buy
    confidences = [t.decision.confidence for s in steps for t in turns
                   if t.market == s.market and s.gate.action == "buy" and t.decision is not None]
    assert confidences == sorted(confidences, reverse=True)
    by_market = {t.market: t for t in turns}
    for s in steps:
        f, t = s.filled, by_market[s.market]
        if f is None:
            continue
        if s.gate.action == "buy":
            was_open = s.market in opened
            left -= f.gross + f.fee
            assert left >= reserve  # never the reserve, never below zero
            values[s.market] = (t.position.coin_volume + f.volume) * t.position.price
            assert sum(values.values()) <= exposure  # a buy never takes the positions past the exposure cap
            assert was_open or len(opened) < max_open
            if holds(replace(t.position, coin_volume=t.position.coin_volume + f.volume)):
                opened.add(s.market)
        else:
            left += f.gross - f.fee
            values[s.market] = (t.position.coin_volume - f.volume) * t.position.price
            if not holds(replace(t.position, coin_volume=t.position.coin_volume - f.volume)):
                opened.discard(s.market)
