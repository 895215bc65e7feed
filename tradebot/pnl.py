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


@dataclass(frozen=True)
class RealizedSell:
    at: datetime
    trade_id: str | None
    volume: Decimal
    proceeds: Decimal  # total - fee
    cost: Decimal  # average cost × matched volume
    pnl: Decimal
    unmatched_volume: Decimal = ZERO


@dataclass
class Ledger:
    """The running position of one symbol and mode."""

    volume: Decimal = ZERO
    cost: Decimal = ZERO  # including buy fees
    fees: Decimal = ZERO
    realized: list[RealizedSell] = field(default_factory=list)

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
        self.realized.append(RealizedSell(e.at, e.trade_id, e.amount, proceeds, cost, matched_proceeds - cost, unmatched))
        self.volume -= matched
        self.cost -= cost
        if self.volume == 0:
            self.cost = ZERO

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
