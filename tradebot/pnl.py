"""Profit-and-loss accounting over completed trades (average-cost method, fees on both sides).

* A buy adds its volume and its full cost, ``total + fee``, to the open position.
* A sell realizes ``(total - fee) - average_cost × volume``, where ``average_cost = cost / volume`` of the
  position just before the sell; the position's cost shrinks by ``average_cost × volume`` (so a partial sell
  leaves the average cost unchanged).
* A sell of more than the recorded position (coins bought outside the bot, or before its records began) is
  matched against what is recorded; the excess volume is reported as ``unmatched_volume`` and realizes
  nothing, because its cost is unknown.

All arithmetic is Decimal (default 28-digit context); nothing is rounded until it is displayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True)
class LedgerEntry:
    """One completed trade, as the ledger needs it."""

    at: datetime
    side: str
    price: Decimal
    amount: Decimal
    total: Decimal
    fee: Decimal
    trade_id: str | None = None
    recovered: bool = False


@dataclass(frozen=True)
class RealizedSell:
    at: datetime
    trade_id: str | None
    volume: Decimal
    proceeds: Decimal  # total - fee
    cost: Decimal  # average cost × matched volume
    pnl: Decimal
    unmatched_volume: Decimal = ZERO
    price: Decimal = ZERO


@dataclass
class Ledger:
    """The running position of one symbol and mode."""

    volume: Decimal = ZERO
    cost: Decimal = ZERO  # including buy fees
    fees: Decimal = ZERO
    realized: list[RealizedSell] = field(default_factory=list)
    round_trips: int = 0  # times the position went from open back to flat

    @property
    def average_cost(self) -> Decimal:
        return self.cost / self.volume if self.volume else ZERO

    def apply(self, e: LedgerEntry) -> None:
        self.fees += e.fee
        if e.side == "buy":
            self.volume += e.amount
            self.cost += e.total + e.fee
            return
        matched = min(e.amount, self.volume)
        unmatched = e.amount - matched
        proceeds = e.total - e.fee
        matched_proceeds = proceeds if not unmatched else proceeds * matched / e.amount
        cost = self.average_cost * matched
        self.realized.append(RealizedSell(e.at, e.trade_id, e.amount, proceeds, cost, matched_proceeds - cost, unmatched, e.price))
        self.volume -= matched
        self.cost -= cost
        if self.volume == 0:
            self.cost = ZERO
            if matched:
                self.round_trips += 1

    @property
    def realized_pnl(self) -> Decimal:
        return sum((r.pnl for r in self.realized), ZERO)


def replay(entries: Iterable[LedgerEntry]) -> Ledger:
    """A ledger after every entry (oldest first)."""
    ledger = Ledger()
    for e in entries:
        ledger.apply(e)
    return ledger


def realized_loss_since(entries: Iterable[LedgerEntry], since: datetime) -> Decimal:
    """KRW lost by sells at or after ``since`` (positive), 0 when they made money in total."""
    ledger = replay(entries)
    pnl = sum((r.pnl for r in ledger.realized if r.at >= since), ZERO)
    return -pnl if pnl < 0 else ZERO


# ------------------------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class PeriodRow:
    """One row of ``pnl --by day|week|month`` (periods start at 00:00 UTC; weeks on Monday)."""

    period: str
    symbol: str
    mode: str
    realized_pnl: Decimal
    fees: Decimal
    buys: int
    sells: int
    bought_volume: Decimal
    sold_volume: Decimal


@dataclass(frozen=True)
class PnlReport:
    """Profit and loss of one symbol and mode over ``[since, until)`` (see the module docstring)."""

    symbol: str
    mode: str
    since: datetime | None
    until: datetime | None
    trades: int
    buys: int
    sells: int
    position_volume: Decimal
    average_cost: Decimal  # per coin, buy fees included
    cost_basis: Decimal
    price: Decimal | None
    price_source: str
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal
    total_pnl: Decimal | None
    fees: Decimal
    round_trips: int
    win_rate: Decimal | None
    best_trade: Decimal | None
    worst_trade: Decimal | None
    unmatched_volume: Decimal
    max_drawdown: Decimal  # KRW, largest fall of cumulative P&L (realized + unrealized at each fill's price)
    capital: Decimal  # largest cost basis held at once: the money the strategy needed
    return_on_capital: Decimal | None
    buy_hold_pnl: Decimal | None
    buy_hold_return: Decimal | None
    realized_sells: tuple[RealizedSell, ...] = ()


def _in(at: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or at >= since) and (until is None or at < until)


def report(symbol: str, mode: str, entries: list[LedgerEntry], *, price: Decimal | None, price_source: str,
           since: datetime | None = None, until: datetime | None = None) -> PnlReport:
    """Replay ``entries`` (all completed trades of ``symbol``/``mode`` before ``until``, oldest first).

    Trades before ``since`` build the position and its average cost but are not counted in the window's
    figures. Buy-and-hold: the capital the bot needed (largest cost basis) put into the coin at the first
    fill price of the window and held to ``price``, paying the 0.05 % fee on both sides.
    """
    from tradebot.exchange.base import UPBIT_FEE_RATE

    ledger = Ledger()
    window: list[LedgerEntry] = []
    peak = ZERO
    max_dd = ZERO
    capital = ZERO
    fees = ZERO
    realized_before = ZERO
    for e in entries:
        if since is not None and e.at < since:
            ledger.apply(e)
            realized_before = ledger.realized_pnl
            continue
        ledger.apply(e)
        window.append(e)
        fees += e.fee
        capital = max(capital, ledger.cost)
        # P&L curve marked at this fill's price: realized in the window + unrealized.
        curve = ledger.realized_pnl - realized_before + ledger.volume * e.price - ledger.cost
        peak = max(peak, curve)
        max_dd = max(max_dd, peak - curve)
    sells = [r for r in ledger.realized if _in(r.at, since, until)]
    realized = sum((r.pnl for r in sells), ZERO)
    unrealized = None if price is None else ledger.volume * price - ledger.cost
    total = None if unrealized is None else realized + unrealized
    if price is not None and window:
        final_curve = realized + (unrealized or ZERO)
        max_dd = max(max_dd, peak - final_curve)
    first_price = window[0].price if window else None
    bh_pnl = bh_ret = None
    if price is not None and first_price and capital:
        bought = capital / (1 + UPBIT_FEE_RATE) / first_price
        bh_pnl = bought * price * (1 - UPBIT_FEE_RATE) - capital
        bh_ret = bh_pnl / capital
    return PnlReport(
        symbol=symbol, mode=mode, since=since, until=until, trades=len(window),
        buys=sum(1 for e in window if e.side == "buy"), sells=len(sells),
        position_volume=ledger.volume, average_cost=ledger.average_cost, cost_basis=ledger.cost,
        price=price, price_source=price_source, unrealized_pnl=unrealized, realized_pnl=realized, total_pnl=total,
        fees=fees, round_trips=ledger.round_trips,
        win_rate=(Decimal(sum(1 for r in sells if r.pnl > 0)) / len(sells)) if sells else None,
        best_trade=max((r.pnl for r in sells), default=None), worst_trade=min((r.pnl for r in sells), default=None),
        unmatched_volume=sum((r.unmatched_volume for r in sells), ZERO),
        max_drawdown=max_dd, capital=capital,
        return_on_capital=(total / capital) if (total is not None and capital) else None,
        buy_hold_pnl=bh_pnl, buy_hold_return=bh_ret, realized_sells=tuple(sells),
    )


def period_key(at: datetime, by: str) -> str:
    from datetime import UTC, timedelta

    at = at.astimezone(UTC)
    if by == "day":
        return at.strftime("%Y-%m-%d")
    if by == "week":
        monday = at - timedelta(days=at.weekday())
        return monday.strftime("%Y-%m-%d")
    return at.strftime("%Y-%m")


def periods(symbol: str, mode: str, entries: list[LedgerEntry], by: str, *, since: datetime | None = None,
            until: datetime | None = None) -> list[PeriodRow]:
    """Per-period realized P&L, fees and volumes (the ledger is replayed from the first trade)."""
    ledger = Ledger()
    rows: dict[str, dict[str, Any]] = {}
    for e in entries:
        n = len(ledger.realized)
        ledger.apply(e)
        if not _in(e.at, since, until):
            continue
        key = period_key(e.at, by)
        r = rows.setdefault(key, {"realized_pnl": ZERO, "fees": ZERO, "buys": 0, "sells": 0,
                                  "bought_volume": ZERO, "sold_volume": ZERO})
        r["fees"] += e.fee
        if e.side == "buy":
            r["buys"] += 1
            r["bought_volume"] += e.amount
        else:
            r["sells"] += 1
            r["sold_volume"] += e.amount
            r["realized_pnl"] += sum((x.pnl for x in ledger.realized[n:]), ZERO)
    return [PeriodRow(period=k, symbol=symbol, mode=mode, **v) for k, v in sorted(rows.items())]
