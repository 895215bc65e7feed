"""Backtesting several markets together (``tradebot backtest --markets A,B,C``): the rule strategy of every
market replayed hour by hour through the live portfolio gate.

The same rules as the one-market backtest (:mod:`tradebot.backtest.simulate`) — a signal on a completed
candle fills at the OPEN of that market's next candle, 0.05 % fee on both sides, volumes truncated to 8
decimals, the rule's confidence and ``BUY_FRACTION`` / ``SELL_FRACTION`` as the decision — plus what a
portfolio adds, exactly as the live cycle does it: **one KRW balance** shared by every market, and the
hour's orders sequenced by :func:`tradebot.portfolio.sequence` (sells first, then buys by confidence, each
gated against the KRW left after the earlier fills and ``TRADEBOT_KRW_RESERVE``, under
``TRADEBOT_MAX_EXPOSURE_KRW``, ``TRADEBOT_MAX_OPEN_POSITIONS`` and the portfolio's daily loss limit).

Money is Decimal throughout (an hour's orders are few); the equity is marked every hour at each market's
last close (a market without a candle that hour keeps its previous close). A market's buy-and-hold is its
first open → last close of the period; the portfolio's is the average of the markets' (equal weights).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from tradebot.errors import TradebotError
from tradebot.models import Candle, Decision, GateResult, Market, Position
from tradebot.portfolio import Filled, MarketTurn, sequence
from tradebot.upbit_rules import FEE_RATE, VOLUME_STEP

if TYPE_CHECKING:
    from tradebot.risk import RiskLimits

ZERO = Decimal(0)


@dataclass
class MarketBook:
    """One market's side of a portfolio backtest: its trades, fees, realized P&L (average cost, fees
    included), its position at the end and how the gate treated its signals."""

    market: Market
    bars: int = 0
    buys: int = 0
    sells: int = 0
    wins: int = 0
    fees: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    volume: Decimal = ZERO
    cost: Decimal = ZERO  # cost basis of the volume held, buy fees included
    last_close: Decimal | None = None
    first_open: Decimal | None = None
    vetoes: dict[str, int] = field(default_factory=dict)
    clamps: dict[str, int] = field(default_factory=dict)

    @property
    def trades(self) -> int:
        return self.buys + self.sells

    @property
    def value(self) -> Decimal:
        return self.volume * (self.last_close or ZERO)

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.value - self.cost

    @property
    def buy_hold_return(self) -> float | None:
        if not self.first_open or self.last_close is None:
            return None
        return float(self.last_close / self.first_open - 1)


@dataclass(frozen=True, eq=False)
class PortfolioBacktest:
    """The outcome of ``tradebot backtest --markets``. Returns and drawdown are fractions, money in KRW."""

    markets: tuple[MarketBook, ...]
    since: datetime
    until: datetime
    hours: int
    starting_krw: Decimal
    final_krw: Decimal
    final_equity: Decimal
    total_return: float
    buy_hold_return: float | None
    max_drawdown: float
    sharpe: float
    trades: int
    fees: Decimal
    win_rate: float | None
    limits: RiskLimits
    compute_seconds: float
    times: tuple[datetime, ...]
    equity: tuple[float, ...]
    source: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Signal:
    market: Market
    action: str
    strength: float
    price: Decimal  # the next candle's open: where it fills


def _signals(market: Market, candles: Sequence[Candle], since: datetime, until: datetime,
             warmup: int) -> tuple[dict[datetime, _Signal], list[Candle]]:
    """The market's fills by hour (a signal on bar i fills at bar i + 1's start) and its period's candles."""
    from tradebot.market import indicators as ind
    from tradebot.market import strategy

    ordered = sorted((c for c in candles if c.start < until), key=lambda c: c.start)
    first = bisect.bisect_left([c.start for c in ordered], since)
    used = ordered[max(0, first - warmup):]
    k = first - max(0, first - warmup)
    o, _, _, c, _ = ind.arrays(used)
    signal, strength = strategy.signal_strengths(o, c)
    fills: dict[datetime, _Signal] = {}
    for i in range(k, len(used) - 1):
        if signal[i] != strategy.HOLD:
            action = "buy" if signal[i] == strategy.BUY else "sell"
            fills[used[i + 1].start] = _Signal(market, action, float(strength[i]), used[i + 1].open)
    return fills, used[k:]


def backtest_portfolio(candles: Mapping[Market, Sequence[Candle]], *, since: datetime, until: datetime,
                       limits: RiskLimits, starting_krw: Decimal, warmup: int, source: str = "",
                       notes: Sequence[str] = ()) -> PortfolioBacktest:
    """Replay every market of ``candles`` (completed hourly candles, any order) together over
    ``[since, until)``; up to ``warmup`` earlier candles of each market only warm its indicators up."""
    from tradebot.market import strategy

    started = time.perf_counter()
    books = {m: MarketBook(m) for m in candles}
    fills: dict[datetime, list[_Signal]] = {}
    closes: dict[datetime, list[tuple[Market, Decimal]]] = {}
    for m, cs in candles.items():
        market_fills, period = _signals(m, cs, since, until, warmup)
        if len(period) < 2:
            raise TradebotError(f"only {len(period)} hourly candle(s) of {m} between {since:%Y-%m-%d %H:%M} and "
                                f"{until:%Y-%m-%d %H:%M} UTC; the backtest needs at least 2 per market")
        books[m].bars, books[m].first_open = len(period), period[0].open
        for t, s in market_fills.items():
            fills.setdefault(t, []).append(s)
        for c in period:
            closes.setdefault(c.start, []).append((m, c.close))
    krw = starting_krw
    realized_by_day: dict[int, Decimal] = {}
    times, equity = [], []

    def place(turn: MarketTurn, verdict: GateResult) -> Filled | None:
        """Fill at the turn's price (the candle's open); ``hour`` is the loop's current hour."""
        nonlocal krw
        b, price = books[turn.market], turn.best_bid
        day = int(hour.timestamp()) // 86400
        if verdict.action == "buy" and verdict.krw is not None:
            volume = (verdict.krw / price).quantize(VOLUME_STEP, rounding=ROUND_DOWN)
            fee = verdict.krw * FEE_RATE
            krw -= verdict.krw + fee
            b.volume += volume
            b.cost += verdict.krw + fee
            b.buys += 1
            b.fees += fee
            return Filled(volume, verdict.krw, fee)
        if verdict.action == "sell" and verdict.volume is not None:
            volume = min(verdict.volume, b.volume)
            gross = volume * price
            fee = gross * FEE_RATE
            cost = b.cost if volume == b.volume else b.cost * volume / b.volume
            pnl = gross - fee - cost
            krw += gross - fee
            b.volume -= volume
            b.cost -= cost
            b.sells += 1
            b.wins += pnl > 0
            b.fees += fee
            b.realized_pnl += pnl
            realized_by_day[day] = realized_by_day.get(day, ZERO) + pnl
            return Filled(volume, gross, fee)
        return None

    for hour in sorted(set(closes) | set(fills)):
        turns = []
        for s in fills.get(hour, []):
            b = books[s.market]
            avg = b.cost / b.volume if b.volume else ZERO
            position = Position(market=s.market, free_krw=krw, locked_krw=ZERO, coin_volume=b.volume,
                                coin_free=b.volume, avg_buy_price=avg, price=s.price)
            fraction = strategy.BUY_FRACTION if s.action == "buy" else strategy.SELL_FRACTION
            decision = Decision(s.action, strategy.confidence(s.strength), fraction, "rule signal (backtest)")  # type: ignore[arg-type]
            turns.append(MarketTurn(s.market, position, decision, s.price))
        if turns:
            today = realized_by_day.get(int(hour.timestamp()) // 86400, ZERO)
            moving = {t.market for t in turns}
            others = [Position(m, krw, ZERO, b.volume, b.volume, ZERO, b.last_close or ZERO)
                      for m, b in books.items() if m not in moving and b.volume > 0]
            for st in sequence(turns, limits, place, realized_loss_today=-today if today < 0 else ZERO, others=others):
                book = books[st.market]
                for note in st.gate.clamps:
                    book.clamps[note["rule"]] = book.clamps.get(note["rule"], 0) + 1
                for note in st.gate.vetoes:
                    book.vetoes[note["rule"]] = book.vetoes.get(note["rule"], 0) + 1
        for m, close in closes.get(hour, []):
            books[m].last_close = close
        if hour >= since:
            times.append(hour)
            equity.append(float(krw + sum((b.value for b in books.values()), ZERO)))
    return _report(books, since, until, starting_krw, krw, limits, times, equity, started, source, notes)


def _report(books: dict[Market, MarketBook], since: datetime, until: datetime, starting: Decimal, krw: Decimal,
            limits: RiskLimits, times: list[datetime], equity: list[float], started: float, source: str,
            notes: Sequence[str]) -> PortfolioBacktest:
    final = krw + sum((b.value for b in books.values()), ZERO)
    peak, max_dd = -math.inf, 0.0
    for e in equity:
        peak = max(peak, e)
        max_dd = max(max_dd, (peak - e) / peak if peak > 0 else 0.0)
    rets = [b / a - 1 for a, b in zip(equity, equity[1:], strict=False) if a > 0]
    mean = sum(rets) / len(rets) if rets else 0.0
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)) if len(rets) > 1 else 0.0
    holds = [r for b in books.values() if (r := b.buy_hold_return) is not None]
    sells = sum(b.sells for b in books.values())
    return PortfolioBacktest(
        markets=tuple(books.values()), since=since, until=until, hours=len(times), starting_krw=starting,
        final_krw=krw, final_equity=final, total_return=float(final / starting - 1) if starting else 0.0,
        buy_hold_return=sum(holds) / len(holds) if holds else None, max_drawdown=max_dd,
        sharpe=mean / sd * math.sqrt(8760) if sd > 0 else 0.0, trades=sum(b.trades for b in books.values()),
        fees=sum((b.fees for b in books.values()), ZERO),
        win_rate=sum(b.wins for b in books.values()) / sells if sells else None, limits=limits,
        compute_seconds=time.perf_counter() - started, times=tuple(times), equity=tuple(equity), source=source,
        notes=tuple(notes))
