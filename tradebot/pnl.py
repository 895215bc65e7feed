"""Profit-and-loss accounting over completed trades (average-cost method, fees on both sides).

* A buy adds its volume and its full cost, ``total + fee``, to the open position.
* A sell realizes ``(total - fee) - average_cost × volume``, where ``average_cost = cost / volume`` of the
  position just before the sell; the position's cost shrinks by ``average_cost × volume`` (so a partial sell
  leaves the average cost unchanged). A sell that closes the position realizes against the whole remaining
  cost, so a round trip's realized P&L is exact (buy 3 for 10, sell 1 for 4 and 2 for 8: exactly 2).
* A sell of more than the recorded position (coins bought outside the bot, or before its records began) is
  matched against what is recorded; the excess volume is reported as ``unmatched_volume`` and realizes
  nothing, because its cost is unknown.

All arithmetic is Decimal (default 28-digit context); nothing is rounded until it is displayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tradebot.models import LedgerEntry

ZERO = Decimal(0)


@dataclass(slots=True)  # not frozen: a frozen one costs 1 µs more to build, once per sell of every replay
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
    realized_pnl: Decimal = ZERO  # running sum of realized[].pnl

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
        # A full close takes the whole remaining cost basis: average_cost × volume is rounded (10/3 has no exact
        # decimal), and what the rounding left over would otherwise vanish when the position goes flat.
        cost = self.cost if matched == self.volume else self.cost / self.volume * matched  # average_cost × matched
        pnl = matched_proceeds - cost
        self.realized.append(RealizedSell(e.at, e.trade_id, e.amount, proceeds, cost, pnl, unmatched, e.price))
        self.realized_pnl += pnl
        self.volume -= matched
        self.cost -= cost
        if self.volume == 0:
            self.cost = ZERO
            if matched:
                self.round_trips += 1


    def to_json(self) -> dict[str, Any]:
        """The running position without the realized sells (a checkpoint's or a day snapshot's ``ledger``)."""
        return {"volume": str(self.volume), "cost": str(self.cost), "fees": str(self.fees),
                "round_trips": self.round_trips, "realized_pnl": str(self.realized_pnl)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Ledger:
        return cls(volume=Decimal(d["volume"]), cost=Decimal(d["cost"]), fees=Decimal(d["fees"]),
                   round_trips=int(d["round_trips"]), realized_pnl=Decimal(d["realized_pnl"]))


def replay(entries: Iterable[LedgerEntry]) -> Ledger:
    """A ledger after every entry (oldest first)."""
    ledger = Ledger()
    for e in entries:
        ledger.apply(e)
    return ledger


def realized_pnl_since(entries: Iterable[LedgerEntry], since: datetime) -> Decimal:
    """Realized P&L (KRW, signed) of the sells at or after ``since``."""
    return sum((r.pnl for r in replay(entries).realized if r.at >= since), ZERO)


def realized_loss_since(entries: Iterable[LedgerEntry], since: datetime) -> Decimal:
    """KRW lost by sells at or after ``since`` (positive), 0 when they made money in total."""
    pnl = realized_pnl_since(entries, since)
    return -pnl if pnl < 0 else ZERO


# ------------------------------------------------------------------------------------------- the report
@dataclass(slots=True)  # not frozen: a frozen row costs 1 µs more to build, and `--by day` builds 16,000
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


@dataclass
class DayTotals:
    """One UTC day's :class:`PeriodRow` figures, summed trade by trade exactly as :func:`periods` sums them."""

    day: date
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    buys: int = 0
    sells: int = 0
    bought_volume: Decimal = ZERO
    sold_volume: Decimal = ZERO

    def add(self, e: LedgerEntry, pnl: Decimal | None) -> None:
        self.fees += e.fee
        if e.side == "buy":
            self.buys += 1
            self.bought_volume += e.amount
        else:
            self.sells += 1
            self.sold_volume += e.amount
            self.realized_pnl += sum((pnl,) if pnl is not None else (), ZERO)

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "realized_pnl": str(self.realized_pnl), "fees": str(self.fees),
                "buys": self.buys, "sells": self.sells, "bought_volume": str(self.bought_volume),
                "sold_volume": str(self.sold_volume)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DayTotals:
        return cls(date.fromisoformat(d["day"]), Decimal(d["realized_pnl"]), Decimal(d["fees"]), int(d["buys"]),
                   int(d["sells"]), Decimal(d["bought_volume"]), Decimal(d["sold_volume"]))

    def row(self, symbol: str, mode: str) -> PeriodRow:
        return PeriodRow(self.day.isoformat(), symbol, mode, self.realized_pnl, self.fees, self.buys, self.sells,
                         self.bought_volume, self.sold_volume)


@dataclass
class Accumulator:
    """Everything ``report`` needs, built one trade at a time; serializable so it can be checkpointed.

    ``keep_sells`` keeps every realized sell (for ``--detail``); checkpoints never do. With ``track_days`` (the
    whole-history checkpoint) it also sums each UTC day's :class:`DayTotals`: the current day's in ``day``,
    the finished ones in ``finished_days`` until :meth:`drain_days` hands them over for storage, so that
    ``pnl --by day`` reads them instead of replaying every trade.
    """

    ledger: Ledger = field(default_factory=Ledger)
    keep_sells: bool = False
    trades: int = 0
    buys: int = 0
    sells: int = 0
    wins: int = 0
    round_trips: int = 0
    realized: Decimal = ZERO  # in the window
    fees: Decimal = ZERO
    best: Decimal | None = None
    worst: Decimal | None = None
    unmatched: Decimal = ZERO
    peak: Decimal = ZERO
    max_dd: Decimal = ZERO
    capital: Decimal = ZERO
    first_price: Decimal | None = None
    track_days: bool = False
    day: DayTotals | None = None
    finished_days: list[DayTotals] = field(default_factory=list)

    def before_window(self, e: LedgerEntry) -> None:
        """A trade before ``since``: it shapes the position, it is not counted."""
        self.ledger.apply(e)
        if not self.keep_sells:
            self.ledger.realized.clear()

    def apply(self, e: LedgerEntry) -> None:
        ledger = self.ledger
        trips = ledger.round_trips
        ledger.apply(e)
        self.trades += 1
        self.fees += e.fee
        if self.first_price is None:
            self.first_price = e.price
        if self.track_days:
            today = e.at.astimezone(UTC).date()
            if self.day is None or self.day.day != today:
                if self.day is not None:
                    self.finished_days.append(self.day)
                self.day = DayTotals(today)
            self.day.add(e, ledger.realized[-1].pnl if e.side == "sell" else None)
        if e.side == "buy":
            self.buys += 1
        else:
            r = ledger.realized[-1]
            self.sells += 1
            self.wins += r.pnl > 0
            self.realized += r.pnl
            self.unmatched += r.unmatched_volume
            # Comparisons instead of max()/min() calls (a million trades fold through here); a tie keeps the
            # value held, as max() and min() do.
            if self.best is None or r.pnl > self.best:
                self.best = r.pnl
            if self.worst is None or r.pnl < self.worst:
                self.worst = r.pnl
            self.round_trips += ledger.round_trips - trips
            if not self.keep_sells:
                ledger.realized.clear()  # O(1) memory over a million trades
        if ledger.cost > self.capital:
            self.capital = ledger.cost
        # The P&L curve, marked at this fill's price: realized in the window + unrealized.
        curve = self.realized + ledger.volume * e.price - ledger.cost
        if curve > self.peak:
            self.peak = curve
        drawdown = self.peak - curve
        if drawdown > self.max_dd:
            self.max_dd = drawdown

    # -- checkpoints ----------------------------------------------------------------------------------
    _DECIMALS = ("realized", "fees", "best", "worst", "unmatched", "peak", "max_dd", "capital",
                 "first_price")
    _INTS = ("trades", "buys", "sells", "wins", "round_trips")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: (None if getattr(self, k) is None else str(getattr(self, k))) for k in self._DECIMALS}
        d.update({k: getattr(self, k) for k in self._INTS})
        d["ledger"] = self.ledger.to_json()
        if self.track_days:
            d["day"] = None if self.day is None else self.day.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Accumulator:
        """The inverse of :meth:`to_json` (checkpoints written by earlier versions carry an unused
        ``realized_before``: ignored)."""
        acc = cls()
        for k in cls._DECIMALS:
            setattr(acc, k, None if d[k] is None else Decimal(d[k]))
        for k in cls._INTS:
            setattr(acc, k, int(d[k]))
        acc.ledger = Ledger.from_json(d["ledger"])
        if "day" in d:  # a checkpoint that tracks its days
            acc.track_days = True
            acc.day = None if d["day"] is None else DayTotals.from_json(d["day"])
        return acc

    def drain_days(self) -> list[dict[str, Any]]:
        """The days finished since the last call, as JSON (for ``pnl_days``); forgets them."""
        out = [d.to_json() for d in self.finished_days]
        self.finished_days.clear()
        return out

    def snapshot(self) -> dict[str, Any]:
        """The day snapshot of the whole-history accumulator: its running position."""
        return self.ledger.to_json()

    def report(self, symbol: str, mode: str, *, price: Decimal | None, price_source: str,
               since: datetime | None = None, until: datetime | None = None) -> PnlReport:
        """The report at ``price``. Buy-and-hold: the capital the bot needed (largest cost basis) put into the
        coin at the window's first fill price and held to ``price``, paying the 0.05 % fee on both sides."""
        from tradebot.upbit_rules import FEE_RATE

        ledger = self.ledger
        unrealized = None if price is None else ledger.volume * price - ledger.cost
        total = None if unrealized is None else self.realized + unrealized
        max_dd = self.max_dd
        if total is not None and self.trades:
            max_dd = max(max_dd, self.peak - total)
        bh_pnl = bh_ret = None
        if price is not None and self.first_price and self.capital:
            bought = self.capital / (1 + FEE_RATE) / self.first_price
            bh_pnl = bought * price * (1 - FEE_RATE) - self.capital
            bh_ret = bh_pnl / self.capital
        return PnlReport(
            symbol=symbol, mode=mode, since=since, until=until, trades=self.trades, buys=self.buys, sells=self.sells,
            position_volume=ledger.volume, average_cost=ledger.average_cost, cost_basis=ledger.cost,
            price=price, price_source=price_source, unrealized_pnl=unrealized, realized_pnl=self.realized,
            total_pnl=total, fees=self.fees, round_trips=self.round_trips,
            win_rate=(Decimal(self.wins) / self.sells) if self.sells else None,
            best_trade=self.best, worst_trade=self.worst, unmatched_volume=self.unmatched,
            max_drawdown=max_dd, capital=self.capital,
            return_on_capital=(total / self.capital) if (total is not None and self.capital) else None,
            buy_hold_pnl=bh_pnl, buy_hold_return=bh_ret,
            realized_sells=tuple(ledger.realized) if self.keep_sells else (),
        )


def report(symbol: str, mode: str, entries: list[LedgerEntry], *, price: Decimal | None, price_source: str,
           since: datetime | None = None, until: datetime | None = None, detail: bool = True,
           start: Ledger | None = None) -> PnlReport:
    """Replay ``entries`` (all completed trades of ``symbol``/``mode`` before ``until``, oldest first; with
    ``start``, the position after the trades before the first of them — a day snapshot).

    Trades before ``since`` build the position and its average cost but are not counted in the window's
    figures (realized P&L, fees, trades, win rate, drawdown, round trips).
    """
    acc = Accumulator(ledger=start or Ledger(), keep_sells=detail)
    for e in entries:
        if since is not None and e.at < since:
            acc.before_window(e)
        else:
            acc.apply(e)
    if detail:
        acc.ledger.realized[:] = [r for r in acc.ledger.realized if _in(r.at, since, until)]
    return acc.report(symbol, mode, price=price, price_source=price_source, since=since, until=until)


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


# ------------------------------------------------------------------------------------- the checkpoints
def whole_history(conn: Any, symbol: str, mode: str) -> tuple[Accumulator, Decimal | None]:
    """The whole-history accumulator of ``symbol``/``mode`` (on ``conn``, the tradebot database) with its
    checkpoint, day snapshots and day totals brought up to date — only the trades after the checkpoint are
    folded — and the last fill price (None: no trade yet)."""
    from tradebot.store.trades import checkpointed

    def load(state: dict[str, Any] | None) -> Accumulator:
        # A new checkpoint sums its days (for `pnl --by day` and today's realized P&L).
        return Accumulator(track_days=True) if state is None else Accumulator.from_json(state)

    return checkpointed(conn, symbol, mode, load=load, fold=Accumulator.apply, dump=Accumulator.to_json,
                        snapshot=Accumulator.snapshot, days=Accumulator.drain_days)


def fold_all(conn: Any) -> int:
    """Bring the whole-history checkpoint (with its day snapshots and day totals) of every market and mode that
    has completed trades up to date (:func:`whole_history`); how many trades that folded (0: all were)."""
    from tradebot.store.trades import checkpoint_trades, ledger_pairs

    folded = 0
    for symbol, mode in ledger_pairs(conn, None, None):
        before = checkpoint_trades(conn, symbol, mode)
        folded += whole_history(conn, symbol, mode)[0].trades - before
    return folded


def realized_today(acc: Accumulator, today: date) -> Decimal:
    """Realized P&L (signed) of the sells of ``today`` (UTC) in a whole-history accumulator: the day totals of
    its last day when that is today — the same sum, in the same order, as :func:`realized_pnl_since` over the
    whole ledger from 00:00 UTC."""
    return acc.day.realized_pnl if acc.day is not None and acc.day.day == today else ZERO


# ---------------------------------------------------------------------------------------- the portfolio
PORTFOLIO = "PORTFOLIO"  # the symbol of the total row of several markets


def daily_marks(snapshots: list[tuple[str, date, Decimal, Decimal, Decimal, Decimal | None]],
                finals: dict[str, Decimal], since: datetime | None) -> list[Decimal]:
    """The portfolio's P&L curve marked at the start of each day on which some market traded: the sum over
    the markets of realized P&L + position × last fill price − cost basis (``snapshots``: (symbol, day,
    realized P&L, volume, cost, last fill price), oldest first). A market's state at the start of
    day D is its first day snapshot on or after D (it did not trade in between), or — after its last
    snapshot — its final state, ``finals[symbol]`` (the same sum after its last trade). Days before
    ``since``'s day are not marked."""
    values = [(day, symbol, ZERO if last is None else realized + volume * last - cost)
              for symbol, day, realized, volume, cost, last in snapshots]
    start = since.date() if since is not None else None
    # Walked from the newest day back: a market's value at the start of a day is then simply the last one seen
    # (its snapshot of that day or of the next day it traded), one step per snapshot instead of a search.
    current = dict(finals)
    marks: list[Decimal] = []
    k = len(values) - 1
    for d in sorted({v[0] for v in values}, reverse=True):
        while k >= 0 and values[k][0] >= d:
            _, symbol, value = values[k]
            if symbol in current:
                current[symbol] = value
            k -= 1
        if start is not None and d < start:
            break
        total = ZERO
        for value in current.values():
            total += value
        marks.append(total)
    marks.reverse()
    return marks


def portfolio_report(reports: list[PnlReport], marks: list[Decimal], now: Decimal | None) -> PnlReport:
    """The total row of several markets of one mode: sums of the markets' figures; the maximum drawdown of
    the portfolio's P&L curve marked daily (:func:`daily_marks`) and ``now`` (every market's whole-history
    P&L at today's prices); win rate over every market's sells. Position volume, average cost, price and
    unmatched volume have no meaning across coins: 0, 0, None, 0."""
    def total(name: str) -> Decimal | None:
        values = [getattr(r, name) for r in reports]
        return None if any(v is None for v in values) else sum(values, ZERO)

    curve = marks + ([now] if now is not None else [])
    peak, max_dd = (curve[0] if curve else ZERO), ZERO
    for value in curve:
        peak = max(peak, value)
        max_dd = max(max_dd, peak - value)
    sells = sum(r.sells for r in reports)
    wins = sum(round((r.win_rate or ZERO) * r.sells) for r in reports)
    capital = sum((r.capital for r in reports), ZERO)
    total_pnl = total("total_pnl")
    bh = total("buy_hold_pnl")
    bests = [r.best_trade for r in reports if r.best_trade is not None]
    worsts = [r.worst_trade for r in reports if r.worst_trade is not None]
    first = reports[0]
    return PnlReport(
        symbol=PORTFOLIO, mode=first.mode, since=first.since, until=first.until, trades=sum(r.trades for r in reports),
        buys=sum(r.buys for r in reports), sells=sells, position_volume=ZERO, average_cost=ZERO,
        cost_basis=sum((r.cost_basis for r in reports), ZERO), price=None, price_source="each market's",
        unrealized_pnl=total("unrealized_pnl"), realized_pnl=sum((r.realized_pnl for r in reports), ZERO),
        total_pnl=total_pnl, fees=sum((r.fees for r in reports), ZERO), round_trips=sum(r.round_trips for r in reports),
        win_rate=Decimal(wins) / sells if sells else None, best_trade=max(bests) if bests else None,
        worst_trade=min(worsts) if worsts else None, unmatched_volume=ZERO, max_drawdown=max_dd, capital=capital,
        return_on_capital=total_pnl / capital if total_pnl is not None and capital else None,
        buy_hold_pnl=bh, buy_hold_return=bh / capital if bh is not None and capital else None)


def portfolio_periods(rows: list[PeriodRow]) -> list[PeriodRow]:
    """One total row per period and mode over the markets' period rows (volumes of different coins are not
    added: 0)."""
    # Summed in the rows' order, the first term + 0 (as Decimal arithmetic normalizes it); rows built once.
    sums: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        t = sums.get((r.period, r.mode))
        if t is None:
            sums[(r.period, r.mode)] = [r.realized_pnl + ZERO, r.fees + ZERO, r.buys, r.sells]
        else:
            t[0] = r.realized_pnl + t[0]
            t[1] = r.fees + t[1]
            t[2] += r.buys
            t[3] += r.sells
    out = []
    for period, mode in sorted(sums):
        realized, fees, buys, sells = sums[(period, mode)]
        out.append(PeriodRow(period, PORTFOLIO, mode, realized, fees, buys, sells, ZERO, ZERO))
    return out
