"""The backtest engine: a fast long-only spot simulation of a signal array over hourly OHLC bars.

Pure arrays in, a :class:`BacktestResult` out: no candles, no settings, no database, no risk gate. It knows
only the fill model below; the gate enters as a ``size_order_at`` callback. Two callers: the cycle's
backtest filter (the rule signals over the recent window) and :mod:`tradebot.backtest`, which feeds it real
candles (CSV, or the exchange through the cache) through the live risk gate and builds the command's
reports (``tradebot backtest``, ``--compare-live``, ``--plot``).

Floats are deliberate: this is a simulation that runs over thousands of bars per cycle (issue 7) and its
results are statistics, never order amounts; real orders are sized in Decimal by the risk gate.

Fill assumptions (the same in ``tests/reference_impl.py``, the per-bar loop reference):

* **Timing.** A signal on bar ``i`` (known once bar ``i`` has closed) fills at the OPEN of bar ``i + 1``;
  the trade's ``index`` is ``i + 1``. The last bar's signal does not fill. No look-ahead: the trades
  filled at indices ``<= k`` and the equity up to ``k`` depend only on bars ``<= k``.
* **Position.** Long-only, spot, one aggregate position in one coin. Buys while holding add to it (cost
  basis is the average, buy fees included); a sell signal without coin does nothing.
* **Buy sizing.** ``budget = buy_fraction × free KRW`` (or ``size_order("buy", ...)``), capped by
  ``max_order_krw`` and by the free KRW; the budget includes the fee, so the notional is
  ``budget / (1 + fee_rate)``. The volume is that notional / price truncated to 8 decimals (as Upbit does;
  decided exactly where float division would land a hair under a whole unit, see :func:`_units`);
  the notional is then ``volume × price``, the fee ``notional × fee_rate``, and the KRW spent is
  notional + fee ``<= free KRW``.
* **Sell sizing.** ``volume = sell_fraction × held volume`` (or ``size_order("sell", ...)``, capped by the
  holding), truncated to 8 decimals; proceeds are ``volume × price − fee``. A sell's ``pnl`` is its
  proceeds minus the cost basis of the volume sold.
* **Fees and minimums.** ``fee_rate`` (Upbit KRW: 0.05 %) on both sides. An order whose notional is below
  ``min_order_krw`` (5,000 KRW) is skipped, buy or sell (dust stays held and marked to market).
* **Equity** is free KRW + volume × CLOSE of each bar (a fill at bar ``j``'s open is in ``equity[j]``).

Only the bars with a non-zero signal are visited in Python (the position state machine); the equity curve
and every metric are vectorized.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from tradebot.market.strategy import BUY_FRACTION, SELL_FRACTION
from tradebot.models import Side

FloatArray = npt.NDArray[np.float64]

HOURS_PER_YEAR = 24 * 365
VOLUME_UNITS = 100_000_000  # volumes are truncated to 8 decimals: held as an integer count of 1e-8

SizeOrder = Callable[[Side, float, float, float], float]
"""``size_order(side, free_krw, coin_volume, price)`` → KRW to spend incl. fee (buy) or coin volume to sell.

A non-positive answer skips the order; the answer is still capped by the free KRW / held volume, by
``max_order_krw`` (buys), truncated to 8 decimals and checked against the minimum order.
"""

SizeOrderAt = Callable[[int, Side, float, float, float], float]
"""``size_order_at(signal_index, side, free_krw, coin_volume, price)``: :data:`SizeOrder` told which bar's
signal it sizes (the fill is at ``signal_index + 1``), for sizing rules that depend on the bar (a confidence,
a daily loss limit). It is called only where an order is possible: buy signals, and sell signals with coin.
"""

NextVisit = Callable[[int, float, float], int]
"""``next_visit(signal_index, free_krw, coin_volume)``, asked after the buy signal of ``signal_index`` was sized to
nothing: the first later signal index worth visiting. Nothing changes without a fill, so every signal before it
must be a buy that ``size_order_at`` would size to nothing as well with the same KRW and coin (a baseline that
buys every hour: thousands of buys refused for want of room under the position cap, skipped in bulk).
"""


@dataclass(frozen=True)
class BacktestTrade:
    """One simulated fill. Money in KRW, ``volume`` in coin; ``pnl`` only for sells (None for buys)."""

    index: int  # the bar whose open filled it (the signal was on index - 1)
    side: Side
    price: float
    volume: float
    krw: float  # notional = volume × price, before fee
    fee: float
    pnl: float | None  # sell proceeds after fee − cost basis (buy notional + buy fee) of the volume sold
    at: datetime | None = None  # times[index] when times were given


# eq=False: the generated __eq__ would compare the equity arrays element-wise and fail on truthiness.
@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Outcome of :func:`run_backtest`. Returns and drawdown are fractions (0.05 = 5 %)."""

    total_return: float  # final equity / starting KRW − 1
    buy_hold_return: float  # first open → last close, no fees
    max_drawdown: float  # largest peak-to-trough fall of the equity curve, positive
    sharpe: float  # mean / std (ddof=0) of hourly equity returns × sqrt(24·365); 0 when std is 0
    trades: tuple[BacktestTrade, ...]
    n_trades: int
    win_rate: float | None  # share of sells with pnl > 0 after fees; None without sells
    equity: FloatArray  # marked to each bar's close
    final_equity: float
    # The state after the last bar, to go on from (``starting_krw``, ``starting_units``, ``starting_basis``).
    final_cash: float = 0.0
    final_units: int = 0  # 1e-8 coin
    final_basis: float = 0.0


def _meant(x: float) -> Decimal | None:
    """The short decimal ``x`` stands for — whole KRW, a tick price, ``budget / (1 + fee)`` of a whole-KRW buy —
    or None when ``x`` is the result of float arithmetic (a fraction of the cash) and stands for no decimal."""
    d = Decimal(f"{x:.12g}")
    return d if abs(float(d) - x) <= 4 * math.ulp(x) else None


def _units(notional: float, price: float) -> int:
    """``floor(notional / price × 1e8)``: the volume ``notional`` KRW buys, in whole 1e-8 coin.

    Float division lands a hair under a whole number about once in 60,000 buys (50,337 KRW at 94,000,000 KRW
    is exactly 53,550 satoshi; the float quotient is 53,549.99999999999), and the floor then loses a unit. So
    near a whole number, when both amounts stand for short decimals (see :func:`_meant`), the floor is taken
    again exactly, in integers; elsewhere the float floor is the exact one already.
    """
    x = notional / price * VOLUME_UNITS
    units = math.floor(x)
    # The float quotient is within ~1e-15 (relative) of the exact one; 1e-13 leaves a wide margin.
    if x - units > 1e-13 * x and units + 1 - x > 1e-13 * x:
        return units
    n, p = _meant(notional), _meant(price)
    if n is None or p is None:
        return units
    n_num, n_den = n.as_integer_ratio()
    p_num, p_den = p.as_integer_ratio()
    return (n_num * p_den * VOLUME_UNITS) // (n_den * p_num)


def _floats(name: str, x: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array")
    return arr


def run_backtest(
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    signals: npt.ArrayLike,
    *,
    starting_krw: float = 1_000_000.0,
    fee_rate: float = 0.0005,
    min_order_krw: float = 5000.0,
    buy_fraction: float = float(BUY_FRACTION),
    sell_fraction: float = float(SELL_FRACTION),
    max_order_krw: float | None = None,
    times: Sequence[datetime] | None = None,
    size_order: SizeOrder | None = None,
    size_order_at: SizeOrderAt | None = None,
    next_visit: NextVisit | None = None,
    starting_units: int = 0,
    starting_basis: float = 0.0,
) -> BacktestResult:
    """Simulate trading ``signals`` (+1 buy, −1 sell, 0 hold per bar) with the fill model of this module.

    The account starts with ``starting_krw`` and ``starting_units`` (1e-8 coin) bought for ``starting_basis``:
    a run can go on from where an earlier one over the bars before stopped (its ``final_*``), with the same
    floats as one run over all the bars. Returns are then measured from the first bar's open.

    ``high`` and ``low`` are validated but not used by the open-price fill model (kept for stop rules).
    Raises ValueError on mismatched lengths, an empty series, non-positive prices, signals outside
    {−1, 0, 1} or out-of-range parameters.
    """
    o, h, lo, c = _floats("open", open_), _floats("high", high), _floats("low", low), _floats("close", close)
    sig = np.asarray(signals)
    n = o.shape[0]
    if n == 0:
        raise ValueError("the backtest needs at least one bar")
    if not (h.shape == lo.shape == c.shape == sig.shape == (n,)):
        raise ValueError("open, high, low, close and signals must have the same length")
    if times is not None and len(times) != n:
        raise ValueError("times must have one entry per bar")
    if not (np.all(np.isfinite(o)) and np.all(np.isfinite(c)) and np.all(o > 0) and np.all(c > 0)):
        raise ValueError("open and close prices must be finite and positive")
    if not np.all((sig == 1) | (sig == 0) | (sig == -1)):
        raise ValueError("signals must be -1, 0 or 1")
    # With coin held (a run going on from another's state), the KRW may be 0 or a float rounding below it.
    if (starting_units == 0 and starting_krw <= 0) or starting_units < 0 or fee_rate < 0 or min_order_krw < 0:
        raise ValueError("starting_krw must be > 0 (without starting units), fee_rate and min_order_krw >= 0")
    if not (0 < buy_fraction <= 1 and 0 < sell_fraction <= 1):
        raise ValueError("buy_fraction and sell_fraction must be in (0, 1]")
    if size_order is not None and size_order_at is not None:
        raise ValueError("give size_order or size_order_at, not both")

    cash = float(starting_krw)
    units = starting_units  # held volume in 1e-8 coin
    basis = starting_basis  # KRW paid (incl. fees) for the held volume
    opens = o.tolist()
    trades: list[BacktestTrade] = []
    trade_index: list[int] = []
    cash_after: list[float] = []
    units_after: list[int] = []
    # The state only changes on a signal, so only those bars are visited (the last bar's never fills).
    found = np.flatnonzero(sig[:-1])
    events, sides = found.tolist(), sig[found].tolist()
    k = 0
    while k < len(events):
        i, side = events[k], sides[k]
        k += 1
        j = i + 1
        price = opens[j]
        at = times[j] if times is not None else None
        if side > 0:
            if size_order_at is not None:
                budget = size_order_at(i, "buy", cash, units / VOLUME_UNITS, price)
            elif size_order is not None:
                budget = size_order("buy", cash, units / VOLUME_UNITS, price)
            else:
                budget = buy_fraction * cash
            if max_order_krw is not None:
                budget = min(budget, max_order_krw)
            budget = min(budget, cash)
            if budget <= 0:
                if next_visit is not None:
                    k = bisect.bisect_left(events, next_visit(i, cash, units / VOLUME_UNITS), k)
                continue
            bought = _units(budget / (1.0 + fee_rate), price)
            volume = bought / VOLUME_UNITS
            krw = volume * price
            fee = krw * fee_rate
            if krw + fee > cash:  # rounding when the whole cash is spent: one unit less
                bought -= 1
                volume = bought / VOLUME_UNITS
                krw = volume * price
                fee = krw * fee_rate
            if bought <= 0 or krw < min_order_krw:
                continue
            cash = cash - krw - fee
            basis = basis + krw + fee
            units += bought
            trades.append(BacktestTrade(j, "buy", price, volume, krw, fee, None, at))
        else:
            if units == 0:
                continue
            if size_order is not None or size_order_at is not None:
                if size_order_at is not None:
                    wanted = size_order_at(i, "sell", cash, units / VOLUME_UNITS, price)
                else:
                    assert size_order is not None
                    wanted = size_order("sell", cash, units / VOLUME_UNITS, price)
                if wanted <= 0:
                    continue
                # The small nudge keeps 0.3 (stored as 0.29999999999999998) from truncating to 0.29999999.
                sold = min(units, math.floor(wanted * VOLUME_UNITS + 1e-6))
            else:
                sold = min(units, math.floor(sell_fraction * units + 1e-6))
            volume = sold / VOLUME_UNITS
            krw = volume * price
            fee = krw * fee_rate
            if sold <= 0 or krw < min_order_krw:
                continue
            cost = basis if sold == units else basis * sold / units
            pnl = krw - fee - cost
            cash = cash + krw - fee
            units -= sold
            basis = 0.0 if units == 0 else basis - cost
            trades.append(BacktestTrade(j, "sell", price, volume, krw, fee, pnl, at))
        trade_index.append(j)
        cash_after.append(cash)
        units_after.append(units)

    # Equity: the state after the latest trade at or before each bar, marked to that bar's close.
    if trades:
        last = np.searchsorted(np.asarray(trade_index), np.arange(n), side="right") - 1
        before_first = last < 0
        last[before_first] = 0
        cash_series = np.where(before_first, float(starting_krw), np.asarray(cash_after)[last])
        coin_series = np.where(before_first, starting_units / VOLUME_UNITS,
                               np.asarray(units_after, dtype=np.float64)[last] / VOLUME_UNITS)
        equity = cash_series + coin_series * c
    elif starting_units:
        equity = float(starting_krw) + starting_units / VOLUME_UNITS * c
    else:
        equity = np.full(n, float(starting_krw))

    peak = np.maximum.accumulate(equity)
    max_drawdown = float(np.max(1.0 - equity / peak))
    returns = equity[1:] / equity[:-1] - 1.0
    std = float(returns.std()) if returns.size else 0.0
    sharpe = float(returns.mean()) / std * math.sqrt(HOURS_PER_YEAR) if std > 0 else 0.0
    sells = [t for t in trades if t.side == "sell"]
    win_rate = sum(1 for t in sells if t.pnl is not None and t.pnl > 0) / len(sells) if sells else None
    final_equity = float(equity[-1])
    start_equity = starting_krw + starting_units / VOLUME_UNITS * float(o[0])
    return BacktestResult(
        total_return=final_equity / start_equity - 1.0,
        buy_hold_return=float(c[-1] / o[0] - 1.0),
        max_drawdown=max_drawdown,
        sharpe=sharpe,
        trades=tuple(trades),
        n_trades=len(trades),
        win_rate=win_rate,
        equity=equity,
        final_equity=final_equity,
        final_cash=cash,
        final_units=units,
        final_basis=basis,
    )
