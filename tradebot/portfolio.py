"""Sequencing a portfolio's orders (issue 12): the rule that two orders of one cycle never together overdraw
the account or break a portfolio limit.

The cycle decides for every market first, then calls :func:`sequence`, which gates and places the orders one
at a time: **sells first** (in the configured order of markets), then **buys by confidence** (highest first;
ties in market order). Each order is gated by :func:`tradebot.risk.gate` against the account *as it really
is at that moment*: the free KRW left after the earlier orders' real fills (a sell's proceeds after its fee
are added, a buy's cost with its fee taken), the exposure and the number of open positions after them.
Amounts come from the fills the exchange reported, never from what was asked for. An order that failed
changes nothing; the next one is gated as if it had not been tried.

Pure logic over the records of :mod:`tradebot.models`; placing an order is the injected ``place``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from tradebot.models import Decision, GateResult, Market, Position
from tradebot.risk import PortfolioState, RiskLimits, gate, holds


@dataclass(frozen=True)
class MarketTurn:
    """One market's part of a cycle: its position (``free_krw`` is the account's at the start of the cycle),
    the advisor's decision (None: no usable one), the best bid, whether its buys are paused, and whether it
    is blocked from trading (it was already traded in this cycle slot by another run)."""

    market: Market
    position: Position
    decision: Decision | None
    best_bid: Decimal
    paused: bool = False
    blocked: str | None = None  # why this market may not trade at all this cycle (a veto named ``cycle_slot``)


@dataclass(frozen=True)
class Filled:
    """What the exchange reported for a placed order: volume, gross KRW (before the fee) and the fee."""

    volume: Decimal
    gross: Decimal
    fee: Decimal


@dataclass(frozen=True)
class Step:
    """One market's outcome: the gate's verdict at its turn, and the fill (None: nothing placed or filled)."""

    market: Market
    gate: GateResult
    filled: Filled | None


def order_of(turns: Sequence[MarketTurn]) -> list[MarketTurn]:
    """Sells first in the given order, then buys by confidence (highest first, ties in the given order),
    then the rest (holds and markets without a usable decision)."""
    def action(t: MarketTurn) -> str:
        return t.decision.action if t.decision is not None else "hold"

    sells = [t for t in turns if action(t) == "sell"]
    buys = sorted((t for t in turns if action(t) == "buy"),
                  key=lambda t: -t.decision.confidence if t.decision is not None else Decimal(0))
    return sells + buys + [t for t in turns if action(t) == "hold"]


def sequence(turns: Sequence[MarketTurn], limits: RiskLimits, place: Callable[[MarketTurn, GateResult], Filled | None],
             *, realized_loss_today: Decimal = Decimal(0), others: Sequence[Position] = ()) -> list[Step]:
    """Gate and place every market's order in turn (see the module docstring); returns one step per market,
    in the order they were taken. ``place`` sends one order and returns its real fill, or None when nothing
    was filled (rejected or failed: the cycle records why). An order accepted but not final yet is reported
    by ``place`` as what it may still spend (a buy's whole amount and fee), so later buys never count on
    that KRW. ``others`` are the positions of the portfolio's markets that have no turn this time (failed,
    filtered, no signal): they count in the exposure and the open positions all the same."""
    if not turns:
        return []
    krw = turns[0].position.free_krw
    values = {p.market: p.position_value for p in others}
    values.update({t.market: t.position.position_value for t in turns})
    open_ = {p.market for p in others if holds(p)} | {t.market for t in turns if holds(t.position)}
    open_ -= {t.market for t in turns if not holds(t.position)}
    steps: list[Step] = []
    for t in order_of(turns):
        position = replace(t.position, free_krw=krw)
        state = PortfolioState(sum(values.values(), Decimal(0)), len(open_))
        verdict = gate(t.decision, position, t.best_bid, limits, paused=t.paused,
                       realized_loss_today=realized_loss_today, portfolio=state)
        if t.blocked is not None and verdict.action != "hold":
            verdict = GateResult("hold", clamps=verdict.clamps, vetoes=({"rule": "cycle_slot", "detail": t.blocked},))
        filled = place(t, verdict) if verdict.action in ("buy", "sell") else None
        if filled is not None:
            if verdict.action == "buy":
                krw -= filled.gross + filled.fee
                volume = t.position.coin_volume + filled.volume
            else:
                krw += filled.gross - filled.fee
                volume = max(t.position.coin_volume - filled.volume, Decimal(0))
            values[t.market] = volume * t.position.price
            after = replace(t.position, coin_volume=volume)
            if holds(after):
                open_.add(t.market)
            else:
                open_.discard(t.market)
        steps.append(Step(t.market, verdict, filled))
    return steps


def unlisted_hint(market: Market, listed: Sequence[Market]) -> str:
    """Why ``market`` is not traded, for the owner: it is not among the exchange's listed KRW markets, with
    the closest listed names (compared without the shared ``KRW-``, which would make every name look alike)."""
    import difflib

    close = [f"KRW-{b}" for b in difflib.get_close_matches(market.base, [m.base for m in listed], n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(close)}?" if close else "`tradebot markets` lists them"
    return f"{market} is not among Upbit's {len(listed)} KRW markets — {hint}"
