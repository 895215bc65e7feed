"""``tradebot backtest --compare-live``: the bot's recorded decisions and fills against the rule strategy.

:func:`compare_live` replays each recorded decision on the live advisor's candle window through the live risk
gate, measures the slippage of every filled order, and runs :func:`tradebot.backtest.simulate.backtest_candles`
over the decisions' period to set the strategy's P&L beside the bot's (its :mod:`tradebot.pnl` ledger). It is
given the records, the ledger and the candles; reading them from the database is the caller's job.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradebot.backtest.candles import HOUR, WARMUP_SLACK, floor_hour
from tradebot.backtest.simulate import BacktestReport, backtest_candles
from tradebot.errors import TradebotError
from tradebot.models import Candle, IndicatorSnapshot, Market

if TYPE_CHECKING:
    from tradebot.models import LedgerEntry, RecordedDecision, RecordedOrder
    from tradebot.risk import RiskLimits


@dataclass(frozen=True)
class DecisionComparison:
    """One recorded decision next to what the rule strategy and the gate would have done in its place."""

    decision_id: int
    at: datetime
    candle: datetime | None  # start of the last completed candle before the decision
    strategy_proposal: str | None  # the rules advisor's decision on the live window (None: not comparable); JSON key kept
    strategy_action: str | None  # after the risk gate, with the bot's recorded position
    strategy_krw: Decimal | None
    strategy_volume: Decimal | None
    bot_advisor: str
    bot_proposal: str | None
    bot_action: str
    bot_krw: Decimal | None
    bot_volume: Decimal | None
    note: str  # what may explain a difference on the bot's side
    differs: bool


@dataclass(frozen=True)
class SlippageRow:
    """A filled order against the price recorded with its decision. Positive bps = worse than that price."""

    decision_id: int
    trade_id: int
    at: datetime
    side: str
    decision_price: Decimal
    fill_price: Decimal
    bps: Decimal
    requested: Decimal  # KRW for a buy, coin for a sell
    filled: Decimal  # gross KRW for a buy, coin for a sell
    fee: Decimal


@dataclass(frozen=True, eq=False)
class CompareReport:
    """``tradebot backtest --compare-live``: the bot's recorded decisions and fills against the strategy."""

    market: Market
    mode: str
    first_decision: datetime
    last_decision: datetime
    decisions: int
    comparable: int  # decisions with a recorded position (the cycle got past the portfolio step)
    matching: int
    differing: int
    candle_mismatches: int  # decisions whose recorded last close differs from the replayed candle's
    comparisons: tuple[DecisionComparison, ...]
    slippage: tuple[SlippageRow, ...]
    slippage_avg_bps: Decimal | None
    slippage_worst_bps: Decimal | None
    orders: int  # orders placed for these decisions (any status)
    filled_orders: int
    bot_fees: Decimal  # fees of the bot's completed trades in the period
    starting_equity: Decimal  # the bot's equity at its first decision (the backtest starts with it in KRW)
    bot_pnl: Decimal  # realized + change of unrealized over the period (tradebot.pnl ledger)
    bot_return: Decimal
    strategy_pnl: float
    strategy_return: float
    pnl_gap: float  # strategy − bot, KRW
    return_gap: float
    backtest: BacktestReport
    notes: tuple[str, ...] = ()

    @property
    def differences(self) -> tuple[DecisionComparison, ...]:
        return tuple(c for c in self.comparisons if c.differs)


def _bot_note(d: RecordedDecision, orders: Sequence[RecordedOrder]) -> str:
    parts = [f"advisor {d.advisor}"]
    if d.decision is not None and d.decision != d.action:
        parts.append(f"proposed {d.decision}")
    if d.filtered:
        parts.append("filtered by the backtest filter")
    if d.vetoes:
        parts.append("vetoed: " + ", ".join(d.vetoes))
    if d.error:
        parts.append(f"failed: {d.error[:80]}")
    if d.dry_run:
        parts.append("dry run")
    for o in orders:
        if o.status != "completed":
            parts.append(f"order {o.status}")
    return "; ".join(parts)


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.8g}"


def _stub_snapshot(window: Sequence[Candle]) -> IndicatorSnapshot:
    # strategy.decide() reads the candles and the position only; the snapshot is part of its input type.
    return IndicatorSnapshot(float(window[-1].close) if window else 0.0, *([None] * 13))


def compare_live(decisions: Sequence[RecordedDecision], orders: Sequence[RecordedOrder], ledger: Sequence[LedgerEntry],
                 candles: Sequence[Candle], *, market: Market, mode: str, limits: RiskLimits, window: int,
                 source: str = "candles", notes: Sequence[str] = ()) -> CompareReport:
    """Replay every recorded decision with the rule strategy and the gate, and the period with the backtest.

    * Each decision at time ``t`` is replayed on the last ``window`` candles that were complete at ``t`` (the
      live advisor's input) with the bot's recorded position, through the gate (best bid = the recorded
      price; realized loss since 00:00 UTC from the ledger; paused when the bot's decision was vetoed by
      the pause). It *differs* when the gate's action differs from the bot's.
    * Slippage: each filled order's average price against its decision's recorded price, in basis points,
      positive when worse (a buy above, a sell below).
    * P&L gap: the strategy's backtest over the period's candles (from the first decision's candle to the
      candle after the last decision), starting flat with the bot's first recorded equity in KRW, against
      the bot's mark-to-market P&L over the same period: realized P&L of its sells plus the change of its
      unrealized P&L (average-cost ledger of :mod:`tradebot.pnl`, marked at the first decision's price and
      the period's last close).
    """
    from tradebot.market import strategy
    from tradebot.models import AdvisorInput
    from tradebot.pnl import replay
    from tradebot.risk import gate

    if not decisions:
        raise TradebotError(f"no recorded decisions for {market} ({mode}) in this period: run some cycles first "
                            "(`tradebot run-cycle`)")
    decisions = sorted(decisions, key=lambda d: (d.created_at, d.id))
    ordered = sorted(candles, key=lambda c: c.start)
    starts = [c.start for c in ordered]
    ends = [c.start + HOUR for c in ordered]
    by_decision: dict[int, list[RecordedOrder]] = {}
    for o in orders:
        by_decision.setdefault(o.decision_id, []).append(o)
    ledger = sorted(ledger, key=lambda e: e.at)
    sells = replay(ledger).realized  # in time order
    sell_times = [s.at for s in sells]

    comparisons: list[DecisionComparison] = []
    mismatches = 0
    for d in decisions:
        k = bisect.bisect_right(ends, d.created_at)
        win = ordered[max(0, k - window):k]
        candle = win[-1].start if win else None
        note = _bot_note(d, by_decision.get(d.id, ()))
        if d.indicator_close is not None and win and not math.isclose(d.indicator_close, float(win[-1].close),
                                                                      rel_tol=1e-9):
            mismatches += 1
            note += f"; the bot saw close {_num(d.indicator_close)}, the replay {_num(float(win[-1].close))}"
        if d.position is None:
            comparisons.append(DecisionComparison(d.id, d.created_at, candle, None, None, None, None, d.advisor,
                                                  d.decision, d.action, d.order_krw, d.order_volume,
                                                  note + "; not comparable: no recorded position", False))
            continue
        decision = strategy.decide(AdvisorInput(position=d.position, indicators=_stub_snapshot(win), hourly=tuple(win),
                                                daily=(), history=()))
        day_start = d.created_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        lo, hi = bisect.bisect_left(sell_times, day_start), bisect.bisect_left(sell_times, d.created_at)
        day_pnl = sum((s.pnl for s in sells[lo:hi]), Decimal(0))
        result = gate(decision, d.position, d.price or d.position.price, limits, paused="paused" in d.vetoes,
                      realized_loss_today=-day_pnl if day_pnl < 0 else Decimal(0))
        comparisons.append(DecisionComparison(
            d.id, d.created_at, candle, decision.action, result.action, result.krw, result.volume, d.advisor,
            d.decision, d.action, d.order_krw, d.order_volume, note, result.action != d.action))

    # Slippage of every filled order against its decision's price.
    slips: list[SlippageRow] = []
    price_of = {d.id: d.price for d in decisions}
    for o in orders:
        ref_price = price_of.get(o.decision_id)
        if o.status != "completed" or not ref_price or not o.price or o.amount is None or o.total is None:
            continue
        worse_by = o.price - ref_price if o.side == "buy" else ref_price - o.price
        bps = worse_by / ref_price * 10000
        requested = o.requested_krw if o.side == "buy" else o.requested_volume
        got = o.total if o.side == "buy" else o.amount
        slips.append(SlippageRow(o.decision_id, o.id, o.created_at, o.side, ref_price, o.price, bps,
                                 requested or Decimal(0), got, o.fee or Decimal(0)))

    # The period starts at the first decision that recorded the bot's position (the bot's equity then is the
    # backtest's starting KRW) and ends with the candle in which the last decision traded.
    ref_index = next((i for i, d in enumerate(decisions) if d.position is not None and d.position.equity > 0), None)
    if ref_index is None:
        raise TradebotError("no decision in this period recorded the bot's position: nothing to compare")
    ref, last = decisions[ref_index], decisions[-1]
    assert ref.position is not None
    start_equity = ref.position.equity
    since = comparisons[ref_index].candle or floor_hour(ref.created_at) - HOUR
    until = floor_hour(last.created_at) + HOUR
    out_notes = list(notes)
    report = backtest_candles(ordered, since=since, until=until, limits=limits, market=market,
                              starting_krw=float(start_equity), source=source, warmup=window + WARMUP_SLACK)

    # The bot's mark-to-market P&L over the same period, from its average-cost ledger (tradebot.pnl).
    before = replay(e for e in ledger if e.at < ref.created_at)
    after = replay(e for e in ledger if e.at < until)
    start_price = ref.price or ref.position.price
    end_price = ordered[bisect.bisect_right(starts, report.last_candle) - 1].close
    realized = after.realized_pnl - before.realized_pnl
    unrealized_end = after.volume * end_price - after.cost
    unrealized_start = before.volume * start_price - before.cost
    bot_pnl = realized + unrealized_end - unrealized_start
    bot_fees = sum((e.fee for e in ledger if ref.created_at <= e.at < until), Decimal(0))
    bot_return = bot_pnl / start_equity
    strategy_pnl = report.final_equity - report.starting_krw
    filled = [o for o in orders if o.status == "completed"]
    avg = sum((s.bps for s in slips), Decimal(0)) / len(slips) if slips else None
    worst = max((s.bps for s in slips), default=None)
    matching = sum(1 for c in comparisons if c.strategy_action is not None and not c.differs)
    comparable = sum(1 for c in comparisons if c.strategy_action is not None)
    if mismatches:
        out_notes.append(f"{mismatches} decision(s) saw a different last close than the replayed candles "
                         "(candle data or timing differs; see the notes of those decisions)")
    return CompareReport(
        market=market, mode=mode, first_decision=decisions[0].created_at, last_decision=last.created_at,
        decisions=len(decisions), comparable=comparable, matching=matching, differing=comparable - matching,
        candle_mismatches=mismatches, comparisons=tuple(comparisons), slippage=tuple(slips), slippage_avg_bps=avg,
        slippage_worst_bps=worst, orders=len(orders), filled_orders=len(filled), bot_fees=bot_fees,
        starting_equity=start_equity, bot_pnl=bot_pnl, bot_return=bot_return, strategy_pnl=strategy_pnl,
        strategy_return=report.total_return, pnl_gap=strategy_pnl - float(bot_pnl),
        return_gap=report.total_return - float(bot_return), backtest=report, notes=tuple(out_notes))
