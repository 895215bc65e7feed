"""The live rule strategy and the live risk gate replayed over historical hourly candles.

This module feeds candles (already loaded: :mod:`tradebot.backtest.csv`, :mod:`tradebot.backtest.candles`)
to the array engine :func:`tradebot.market.engine.run_backtest`, sizing every order with the live risk gate
(:class:`_GateSizer`), and builds the :class:`BacktestReport` of ``tradebot backtest``.

What is simulated, and how (the fill assumptions):

* **Candles.** Completed hourly (``minute60``) candles, oldest first. Hours without trades have no candle
  and stay gaps: indicators and fills simply see the next candle, as the live cycle does. Candles come from
  a CSV file or from the exchange through the ``candles`` cache
  (:func:`tradebot.backtest.candles.load_market_candles`).
* **Signals.** The rule of :mod:`tradebot.market.strategy` over the whole series; the signal of bar ``i``
  uses bars ``<= i`` only. Candles before the period (up to ``TRADEBOT_HOURLY_CANDLES`` + 48, when there
  are any) only warm the indicators up; no signal of theirs trades. The live ``rules`` advisor evaluates
  the same rule over its last ``TRADEBOT_HOURLY_CANDLES`` candles, whose EMAs are seeded later: their
  values can differ slightly. ``--compare-live`` replays the exact live window.
* **Fills.** A signal on bar ``i`` fills at the OPEN of bar ``i + 1`` (the next candle that exists), with no
  spread or slippage, Upbit's 0.05 % fee on both sides and volumes truncated to 8 decimals (see
  :mod:`tradebot.market.engine`). The last bar's signal never fills.
* **Risk gate.** Every signal where an order is possible goes through :func:`tradebot.risk.gate` with the
  decision the ``rules`` advisor would propose (the rule's confidence, ``BUY_FRACTION`` of free KRW /
  ``SELL_FRACTION`` of the coin) and the simulated position valued at the fill price (also used as the best
  bid): ``TRADEBOT_MIN_CONFIDENCE``, ``TRADEBOT_MAX_ORDER_KRW``, the room under
  ``TRADEBOT_MAX_POSITION_KRW``, the fee headroom, whole KRW, Upbit's 5,000 KRW minimum, the sell dust rule
  and ``TRADEBOT_DAILY_LOSS_LIMIT_KRW`` on the realized loss since 00:00 UTC. A buy is sent as the gate's
  KRW plus the fee (as Upbit locks it). Not simulated: ``tradebot pause`` (an operator switch) and the
  cycle's backtest filter (a backtest inside the backtest).
* **Metrics** over the period's bars: return, buy-and-hold (first open → last close, no fees), maximum
  drawdown, Sharpe ratio of hourly equity returns annualized with √8760, trades, win rate, fees.

Money in the simulation is float64 (statistics, never an order); the gate itself runs in Decimal.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.backtest.candles import HOUR, WARMUP_SLACK
from tradebot.errors import TradebotError
from tradebot.models import Candle, Decision, Market, Position

if TYPE_CHECKING:
    import numpy.typing as npt

    from tradebot.backtest.csv import CsvCandles
    from tradebot.market.engine import BacktestResult, BacktestTrade
    from tradebot.risk import RiskLimits

MIN_BARS = 60  # tradebot.market.strategy.MIN_BARS (not imported here: it pulls in NumPy)
_DEFAULT_MARKET = Market("KRW-BTC")


@dataclass(frozen=True, eq=False)
class BacktestReport:
    """The outcome of ``tradebot backtest``. Returns and drawdown are fractions (0.05 = 5 %), money in KRW."""

    market: Market
    source: str  # "csv FILE", "exchange", "cache" or "cache+exchange"
    since: datetime  # the requested period [since, until)
    until: datetime
    first_candle: datetime  # start of the period's first and last candle
    last_candle: datetime
    bars: int
    warmup_bars: int  # candles before the period that only warmed the indicators up
    gaps: int  # places where consecutive candles are more than an hour apart
    missing_hours: int  # hours inside the period's candle range without a candle
    starting_krw: float
    final_equity: float
    total_return: float
    buy_hold_return: float
    max_drawdown: float
    sharpe: float
    trades: int
    buys: int
    sells: int
    win_rate: float | None
    fees: float
    fee_rate: float
    limits: RiskLimits
    gate_calls: int
    vetoes: dict[str, int]  # signals the gate turned into holds, by rule
    clamps: dict[str, int]  # orders the gate made smaller, by rule
    compute_seconds: float  # signals + gate + fills + metrics (candles already in memory as floats)
    fills: tuple[BacktestTrade, ...]
    equity: npt.NDArray[Any]  # per period bar, marked to its close
    times: tuple[datetime, ...]  # per period bar
    closes: npt.NDArray[Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BacktestRequest:
    """What ``tradebot backtest`` was asked for. ``days`` and ``since`` are exclusive (the CLI checks)."""

    market: Market
    days: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    csv: Path | None = None
    starting_krw: Decimal | None = None


class _GateSizer:
    """``size_order_at`` for :func:`~tradebot.market.engine.run_backtest` that asks :func:`tradebot.risk.gate`.

    Realized P&L (for the daily loss limit) is tracked from what the backtest reports at each call: between
    two calls the state changes only by the trade of the earlier call, so a change of the coin volume is that
    trade, priced by the change of KRW (average-cost basis, as the backtest and ``tradebot.pnl`` use).

    The gate is asked only where it could let an order through (issue 7: a year must take milliseconds).
    Buy signals repeat every hour of a trend, so two of the gate's holds are decided here without building
    its Decimal inputs: less than the minimum order could be bought or sold (with a 1 KRW margin, so no
    possible order is missed), and the rule's confidence is below ``min_confidence`` (the gate's first test,
    on the same Decimal). Both are counted like the gate's own vetoes.
    """

    def __init__(self, market: Market, strengths: Sequence[float], times: Sequence[datetime] | None,
                 limits: RiskLimits, fee_rate: float, days: Sequence[int] | None = None) -> None:
        from tradebot.market import strategy
        from tradebot.risk import gate
        from tradebot.upbit_rules import MIN_ORDER_KRW

        self.market = market
        self.strengths = strengths
        self.times = times
        self.days = days  # each bar's UTC day (unix days), when known already
        self.limits = limits
        self.fee_rate = fee_rate
        self.calls = 0
        self.vetoes: dict[str, int] = {}
        self.clamps: dict[str, int] = {}
        self._gate = gate
        self._confidence = strategy.confidence
        self._buy_fraction, self._sell_fraction = strategy.BUY_FRACTION, strategy.SELL_FRACTION
        self._max_order = float(limits.max_order_krw)
        self._max_position = float(limits.max_position_krw)
        self._minimum = float(MIN_ORDER_KRW) - 1.0
        self._last: tuple[float, float, int] | None = None  # (KRW, coin, day) at the previous call
        self._basis = 0.0
        self._realized_by_day: dict[int, float] = {}

    def _observe(self, cash: float, coin: float) -> None:
        last = self._last
        if last is None or coin == last[1]:
            return
        last_cash, last_coin, last_day = last
        if coin > last_coin:  # the previous call bought
            self._basis += last_cash - cash
            return
        cost = self._basis if coin == 0 else self._basis * (last_coin - coin) / last_coin
        self._basis -= cost
        self._realized_by_day[last_day] = self._realized_by_day.get(last_day, 0.0) + (cash - last_cash) - cost

    def _veto(self, rule: str) -> float:
        self.vetoes[rule] = self.vetoes.get(rule, 0) + 1
        return 0.0

    def decision_at(self, i: int, side: str) -> Decision:
        """The decision behind bar ``i``'s signal: the rule's (its confidence, the rule's fractions)."""
        return Decision("buy" if side == "buy" else "sell", self._confidence(self.strengths[i]),
                        self._buy_fraction if side == "buy" else self._sell_fraction, "rule signal (backtest)")

    def __call__(self, i: int, side: str, cash: float, coin: float, price: float) -> float:
        self._observe(cash, coin)
        j = i + 1  # the fill bar: "today" for the daily loss limit
        if self.days is not None:
            day = self.days[j]
        else:
            day = int(self.times[j].timestamp()) // 86400 if self.times is not None else j // 24
        self._last = (cash, coin, day)
        decision = self.decision_at(i, side)
        if side == "buy":
            room = min(float(decision.fraction) * cash, self._max_order, self._max_position - coin * price, cash / (1.0 + self.fee_rate))
            if room < self._minimum:
                return self._veto("min_order")
        elif coin * price < self._minimum:
            return self._veto("min_order")
        if decision.confidence < self.limits.min_confidence:
            return self._veto("min_confidence")
        self.calls += 1
        px, c = _dec(price), _dec(coin)
        position = Position(market=self.market, free_krw=_dec(cash), locked_krw=Decimal(0), coin_volume=c,
                            coin_free=c, avg_buy_price=Decimal(0), price=px)
        loss = -self._realized_by_day.get(day, 0.0)
        result = self._gate(decision, position, px, self.limits,
                            realized_loss_today=_dec(loss) if loss > 0 else Decimal(0))
        for note in result.clamps:
            self.clamps[note["rule"]] = self.clamps.get(note["rule"], 0) + 1
        for note in result.vetoes:
            self._veto(note["rule"])
        if result.action == "buy" and result.krw is not None:
            return float(result.krw) * (1.0 + self.fee_rate)  # Upbit locks the KRW plus the fee
        if result.action == "sell" and result.volume is not None:
            return float(result.volume)
        return 0.0


def _dec(x: float) -> Decimal:
    # repr is the shortest string that round-trips: the number the simulation holds, without binary noise.
    return Decimal(repr(x))


@dataclass(frozen=True, eq=False)
class Simulation:
    """:func:`simulate`'s result: the backtest, the gate's statistics and the compute time."""

    result: BacktestResult
    gate_calls: int
    vetoes: dict[str, int]
    clamps: dict[str, int]
    compute_seconds: float


def simulate(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
             volume: npt.ArrayLike, *, limits: RiskLimits, market: Market = _DEFAULT_MARKET,
             starting_krw: float = 1_000_000.0, fee_rate: float | None = None, times: Sequence[datetime] | None = None,
             trade_from: int = 0) -> Simulation:
    """The rule strategy through the risk gate over float OHLCV arrays (oldest first).

    Signals are computed over every bar; bars before ``trade_from`` are warm-up only (the backtest and its
    metrics start at ``trade_from``). ``times`` (one per bar) date the fills and the daily loss limit.
    """
    import numpy as np

    from tradebot.market import strategy
    from tradebot.market.engine import run_backtest
    from tradebot.upbit_rules import FEE_RATE

    rate = float(FEE_RATE) if fee_rate is None else fee_rate
    started = time.perf_counter()
    o, h, lo, c = (np.asarray(x, dtype=np.float64) for x in (open_, high, low, close))
    if np.asarray(volume).shape != c.shape:
        raise ValueError("volume must have the same length as close")
    signal, strength = strategy.signal_strengths(o, c)
    k = trade_from
    period_times = list(times[k:]) if times is not None else None
    sizer = _GateSizer(market, strength[k:].tolist(), period_times, limits, rate)
    # The gate is the one authority for minimums (as live: Upbit checks a market buy's KRW, not its fill).
    result = run_backtest(o[k:], h[k:], lo[k:], c[k:], signal[k:], starting_krw=starting_krw, fee_rate=rate,
                          min_order_krw=0.0, times=period_times, size_order_at=sizer)
    return Simulation(result, sizer.calls, dict(sizer.vetoes), dict(sizer.clamps), time.perf_counter() - started)


def _gaps(times: Sequence[datetime]) -> tuple[int, int]:
    gaps = missing = 0
    for a, b in itertools.pairwise(times):
        hours = round((b - a) / HOUR)
        if hours > 1:
            gaps += 1
            missing += hours - 1
    return gaps, missing


def backtest_candles(candles: Sequence[Candle], *, since: datetime, until: datetime, limits: RiskLimits,
                     market: Market = _DEFAULT_MARKET, starting_krw: float = 1_000_000.0, source: str = "candles",
                     warmup: int = 200 + WARMUP_SLACK, notes: Sequence[str] = ()) -> BacktestReport:
    """Backtest the candles with ``since <= start < until``; up to ``warmup`` earlier candles warm up.

    Raises :class:`TradebotError` when the period has fewer than two candles.
    """
    from tradebot.market import indicators as ind

    ordered = sorted((c for c in candles if c.start < until), key=lambda c: c.start)
    starts = [c.start for c in ordered]
    first = bisect.bisect_left(starts, since)
    lead = max(0, first - warmup)
    used = ordered[lead:]
    _check_bars(len(used) - (first - lead), market, since, until)
    o, h, lo, c, v = ind.arrays(used)
    return _backtest_bars(o, h, lo, c, v, [x.start for x in used], first - lead, since=since, until=until,
                          limits=limits, market=market, starting_krw=starting_krw, source=source, notes=notes)


def backtest_csv(data: CsvCandles, *, since: datetime, until: datetime, limits: RiskLimits,
                 market: Market = _DEFAULT_MARKET, starting_krw: float = 1_000_000.0,
                 warmup: int = 200 + WARMUP_SLACK) -> BacktestReport:
    """:func:`backtest_candles` over a CSV file's columns: only the period and its warm-up are ever touched."""
    lead_end, end = data.index(since), data.index(until)
    lead = max(0, lead_end - warmup)
    _check_bars(end - lead_end, market, since, until)
    times = data.times(lead, end)
    o, h, lo, c, v = (col[lead:end] for col in (data.open, data.high, data.low, data.close, data.volume))
    return _backtest_bars(o, h, lo, c, v, times, lead_end - lead, since=since, until=until, limits=limits,
                          market=market, starting_krw=starting_krw, source=f"csv {data.name}", notes=data.notes)


def _check_bars(bars: int, market: Market, since: datetime, until: datetime) -> None:
    if bars < 2:
        raise TradebotError(f"only {bars} hourly candle(s) of {market} between {since:%Y-%m-%d %H:%M} and "
                            f"{until:%Y-%m-%d %H:%M} UTC; the backtest needs at least 2")


def _backtest_bars(o: npt.NDArray[Any], h: npt.NDArray[Any], lo: npt.NDArray[Any], c: npt.NDArray[Any],
                   v: npt.NDArray[Any], times: list[datetime], k: int, *, since: datetime, until: datetime,
                   limits: RiskLimits, market: Market, starting_krw: float, source: str,
                   notes: Sequence[str]) -> BacktestReport:
    """The backtest of float bars (oldest first, ``times`` their starts) whose first ``k`` only warm up."""
    from tradebot.upbit_rules import FEE_RATE

    sim = simulate(o, h, lo, c, v, limits=limits, market=market, starting_krw=starting_krw,
                   fee_rate=float(FEE_RATE), times=times, trade_from=k)
    r = sim.result
    period = times[k:]
    gaps, missing = _gaps(period)
    out_notes = list(notes)
    if k < MIN_BARS - 1:
        out_notes.append(f"{k} candle(s) before the period: the strategy needs {MIN_BARS}, so it holds on the "
                         f"period's first {MIN_BARS - 1 - k} bar(s)")
    return BacktestReport(
        market=market, source=source, since=since, until=until, first_candle=period[0], last_candle=period[-1],
        bars=len(period), warmup_bars=k, gaps=gaps, missing_hours=missing, starting_krw=starting_krw,
        final_equity=r.final_equity, total_return=r.total_return, buy_hold_return=r.buy_hold_return,
        max_drawdown=r.max_drawdown, sharpe=r.sharpe, trades=r.n_trades,
        buys=sum(1 for t in r.trades if t.side == "buy"), sells=sum(1 for t in r.trades if t.side == "sell"),
        win_rate=r.win_rate, fees=sum(t.fee for t in r.trades), fee_rate=float(FEE_RATE), limits=limits,
        gate_calls=sim.gate_calls, vetoes=sim.vetoes, clamps=sim.clamps, compute_seconds=sim.compute_seconds,
        fills=r.trades, equity=r.equity, times=tuple(period), closes=c[k:], notes=tuple(out_notes))
