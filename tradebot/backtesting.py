"""``tradebot backtest``: the live rule strategy and the live risk gate replayed over historical hourly candles.

What is simulated, and how (the fill assumptions):

* **Candles.** Completed hourly (``minute60``) candles, oldest first. Hours without trades have no candle
  and stay gaps: indicators and fills simply see the next candle, as the live cycle does. Candles come from
  a CSV file or from the exchange through the ``candles`` cache (:func:`load_market_candles`).
* **Signals.** The rule of :mod:`tradebot.market.strategy` over the whole series; the signal of bar ``i``
  uses bars ``<= i`` only. Candles before the period (up to ``TRADEBOT_HOURLY_CANDLES`` + 48, when there
  are any) only warm the indicators up; no signal of theirs trades. The live ``rules`` advisor evaluates
  the same rule over its last ``TRADEBOT_HOURLY_CANDLES`` candles, whose EMAs are seeded later: their
  values can differ slightly. ``--compare-live`` replays the exact live window.
* **Fills.** A signal on bar ``i`` fills at the OPEN of bar ``i + 1`` (the next candle that exists), with no
  spread or slippage, Upbit's 0.05 % fee on both sides and volumes truncated to 8 decimals (see
  :mod:`tradebot.market.backtest`). The last bar's signal never fills.
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
import csv
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.errors import ConfigError, ExchangeError, TradebotError
from tradebot.models import Candle, Decision, IndicatorSnapshot, Position

if TYPE_CHECKING:
    import numpy.typing as npt
    import psycopg

    from tradebot.config import Settings
    from tradebot.exchange.base import Exchange, Interval
    from tradebot.market.backtest import BacktestResult, BacktestTrade
    from tradebot.pnl import LedgerEntry
    from tradebot.risk import RiskLimits
    from tradebot.store.history import RecordedDecision, RecordedOrder

HOUR = timedelta(hours=1)
INTERVAL: Interval = "minute60"
DEFAULT_DAYS = 365
MIN_BARS = 60  # tradebot.market.strategy.MIN_BARS (not imported here: it pulls in NumPy)
WARMUP_SLACK = 48  # extra warm-up candles beyond TRADEBOT_HOURLY_CANDLES (some hours have no candle)


def floor_hour(at: datetime) -> datetime:
    """The start of the UTC hour containing ``at``."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# ------------------------------------------------------------------------------------------------- records
@dataclass(frozen=True, eq=False)
class BacktestReport:
    """The outcome of ``tradebot backtest``. Returns and drawdown are fractions (0.05 = 5 %), money in KRW."""

    market: str
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
class LoadedCandles:
    """Candles for a period, where they came from, and what the user should know about them."""

    candles: list[Candle]
    source: str
    fetched: int = 0
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------- CSV input
_UPBIT_COLUMNS = ("candle_date_time_utc", "opening_price", "high_price", "low_price", "trade_price",
                  "candle_acc_trade_volume", "candle_acc_trade_price")
_SIMPLE_COLUMNS = ("time", "open", "high", "low", "close", "volume", "value")
# Prices a KRW market can have: from Upbit's smallest KRW tick up to far beyond any coin. Outside them a file
# is wrong, and the simulation would be too: 1e400 is no float, and below one tick the risk gate's volumes
# need more than the 28 digits of its Decimal context.
MIN_CSV_PRICE = Decimal("0.0000001")
MAX_CSV_PRICE = Decimal("1e15")
_MIN_PRICE_F, _MAX_PRICE_F = float(MIN_CSV_PRICE), float(MAX_CSV_PRICE)
# Candle times: from the Unix epoch to the last year whose hours (and an hour after the last candle) are
# still datetimes.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_END = datetime(9999, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_END_US = (_TIME_END - _EPOCH) // _US
_TIME_RANGE = "1970-01-01 to 9998-12-31 (UTC)"


class _OutOfRange(ValueError):
    """A time that parses but is outside :data:`_TIME_RANGE`."""


def _micros(at: datetime) -> int:
    """Microseconds from the Unix epoch to ``at`` (aware), exactly."""
    return (at - _EPOCH) // _US


def _csv_time_us(text: str) -> int:
    """A CSV time as microseconds since the epoch: ISO 8601 (UTC unless it has an offset), or Unix seconds or
    milliseconds. Raises ValueError when it is none of these, :class:`_OutOfRange` when it is out of range."""
    text = text.strip()
    if text.replace(".", "", 1).isdigit():  # Unix time, seconds or milliseconds
        seconds = float(text)
        if seconds > 1e11:
            seconds /= 1000
        if not seconds * 1e6 < _END_US:  # also inf; fromtimestamp would raise OverflowError or OSError
            raise _OutOfRange(text)
        at = datetime.fromtimestamp(seconds, UTC)
    else:
        at = datetime.fromisoformat(text)  # Python 3.11 reads "Z" too
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    us = _micros(at)
    if not 0 <= us < _END_US:
        raise _OutOfRange(text)
    return us


@dataclass(frozen=True, eq=False)
class CsvCandles:
    """The candles of a CSV file as float64 columns, oldest first, one per start time.

    Eight bytes a cell, where a :class:`Candle` of Decimals takes about 700 bytes a row: a file of millions
    of rows fits in memory, and only the rows a backtest uses become Candles (:meth:`candles`) or arrays.
    Prices are the floats the simulation uses; ``Candle`` values made from them are their shortest decimals.
    """

    name: str
    starts: npt.NDArray[Any]  # int64 microseconds since the Unix epoch (UTC)
    open: npt.NDArray[Any]
    high: npt.NDArray[Any]
    low: npt.NDArray[Any]
    close: npt.NDArray[Any]
    volume: npt.NDArray[Any]
    value: npt.NDArray[Any]
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def start(self, i: int) -> datetime:
        """The start of candle ``i`` (negative counts from the end)."""
        return _EPOCH + timedelta(microseconds=int(self.starts[i]))

    def index(self, at: datetime, *, after: bool = False) -> int:
        """How many candles start before ``at`` (with ``after``: at or before it), as ``bisect`` counts."""
        import numpy as np

        return int(np.searchsorted(self.starts, _micros(at), side="right" if after else "left"))

    def candles(self, lo: int = 0, hi: int | None = None) -> list[Candle]:
        """Candles ``lo`` to ``hi`` (exclusive) as :class:`Candle` objects."""
        hi = len(self) if hi is None else hi
        cols = [c[lo:hi].tolist() for c in (self.open, self.high, self.low, self.close, self.volume, self.value)]
        return [Candle(_EPOCH + timedelta(microseconds=t), _short(o), _short(h), _short(lo_), _short(c), _short(v),
                       _short(val)) for t, o, h, lo_, c, v, val in zip(self.starts[lo:hi].tolist(), *cols)]


def _short(x: float) -> Decimal:
    # The shortest decimal of the float, and whole numbers without ".0" (as a CSV or Upbit writes them).
    return Decimal(int(x)) if x.is_integer() and abs(x) < 1e16 else Decimal(repr(x))


def read_csv_columns(path: Path) -> CsvCandles:
    """Hourly candles from a CSV file, read one row at a time into columns (see :class:`CsvCandles`).

    Two headers are understood: Upbit's candle fields (``candle_date_time_utc, opening_price, high_price,
    low_price, trade_price`` [, ``candle_acc_trade_volume``, ``candle_acc_trade_price``]) and a simple
    ``time,open,high,low,close[,volume]``. Times without an offset are UTC; Unix seconds or milliseconds
    work too. Rows whose prices are not a consistent OHLC are skipped (and counted in a note); a repeated
    time keeps its last row. Raises :class:`ConfigError` (exit 2) for an unreadable file or header, a row
    that is not a candle, and a time or price out of range (:data:`MIN_CSV_PRICE`, :data:`MAX_CSV_PRICE`),
    naming the line.
    """
    from array import array

    import numpy as np

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            raw_header = next(reader, [])
            header = [h.strip() for h in raw_header]
            if set(_UPBIT_COLUMNS[:5]) <= set(header):
                names = _UPBIT_COLUMNS
            elif set(_SIMPLE_COLUMNS[:5]) <= set(header):
                names = _SIMPLE_COLUMNS
            else:
                raise ConfigError("--csv", f"{path}: the header must have Upbit's candle fields "
                                           f"({', '.join(_UPBIT_COLUMNS[:6])}) or time,open,high,low,close,volume; "
                                           f"found {', '.join(header) or 'nothing'}")
            position = {name: i for i, name in enumerate(header)}  # a repeated name: its last column
            ti, oi, hi, li, ci = (position[n] for n in names[:5])
            vi, vali = (position.get(n) for n in names[5:])  # optional columns
            width = max(ti, oi, hi, li, ci, vi or 0, vali or 0) + 1
            starts = array("q")
            raw = [array("d") for _ in range(6)]  # open, high, low, close, volume, value
            records = bad = first_bad = 0
            # The loop runs once a row (millions of times for a long file): names bound once.
            fromisoformat, epoch, naive_epoch, one_us, end_us = (datetime.fromisoformat, _EPOCH,
                                                                 _EPOCH.replace(tzinfo=None), _US, _END_US)
            min_price, max_price = _MIN_PRICE_F, _MAX_PRICE_F
            add_t = starts.append
            add_o, add_h, add_l, add_c, add_v, add_val = (a.append for a in raw)
            for row in reader:
                if not row:
                    continue  # csv.DictReader skips blank rows: lines are numbered as it numbers them
                records += 1
                if len(row) < width:
                    row += [""] * (width - len(row))
                # The usual time, plain ISO 8601, directly; anything else (spaces, Unix time, out of range, not
                # a time) through _row_time, which raises the error.
                t_s = row[ti]
                start = -1
                if t_s[4:5] == "-":
                    try:
                        at = fromisoformat(t_s)
                    except ValueError:
                        pass
                    else:
                        start = (at - naive_epoch) // one_us if at.tzinfo is None else (at - epoch) // one_us
                if not 0 <= start < end_us:
                    start = _row_time(path, records + 1, t_s)
                o_s, h_s, l_s, c_s = row[oi], row[hi], row[li], row[ci]
                v_s = row[vi] if vi is not None else ""
                val_s = row[vali] if vali is not None else ""
                try:
                    o, h, lo, c = float(o_s), float(h_s), float(l_s), float(c_s)
                    v = float(v_s) if v_s else 0.0
                    val = float(val_s) if val_s else 0.0
                    # float() rounds, but never across a strict inequality: these rows need no Decimal.
                    fast = min_price < lo < o < h < max_price and lo < c < h and v > 0.0 and val - val == 0.0
                except ValueError:
                    fast = False  # Decimal reads a few things float does not (sNaN, NaN123): it decides
                if not fast:
                    exact = _exact_row(path, records + 1, o_s, h_s, l_s, c_s, v_s.strip(), val_s.strip())
                    if exact is None:
                        bad += 1
                        first_bad = first_bad or records + 1
                        continue
                    o, h, lo, c, v, val = exact
                add_t(start)
                add_o(o)
                add_h(h)
                add_l(lo)
                add_c(c)
                add_v(v)
                add_val(val)
    except OSError as e:
        raise ConfigError("--csv", f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError("--csv", f"{path} is not a UTF-8 CSV file ({type(e).__name__})") from None

    del add_t, add_o, add_h, add_l, add_c, add_v, add_val  # (they hold the arrays)
    t = np.frombuffer(starts, dtype=np.int64)
    columns: list[npt.NDArray[Any]] = [np.frombuffer(a, dtype=np.float64) for a in raw]
    if t.size > 1 and not bool(np.all(t[1:] > t[:-1])):
        # Out of order or repeated: sort (stable, so the last row of a repeated time stays last) and keep the
        # last of each time. A file in order (the usual case) is never copied; otherwise each column's
        # original is let go as soon as its copy exists.
        order = np.argsort(t, kind="stable")
        t_sorted = t[order]
        last = np.ones(t.size, dtype=bool)
        last[:-1] = t_sorted[1:] != t_sorted[:-1]
        keep = order[last]
        del order, t_sorted, last
        t = t[keep]
        del starts
        for i in range(6):
            columns[i] = columns[i][keep]
            raw[i] = array("d")
    notes: list[str] = []
    if bad:
        notes.append(f"{path.name}: skipped {bad} row(s) whose prices are not a valid candle "
                     f"(first at line {first_bad})")
    repeated = records - bad - int(t.size)
    if repeated:
        notes.append(f"{path.name}: {repeated} repeated time(s); the last row of each was kept")
    return CsvCandles(path.name, t, columns[0], columns[1], columns[2], columns[3], columns[4], columns[5],
                      tuple(notes))


def _row_time(path: Path, line: int, text: str) -> int:
    """:func:`_csv_time_us` of a row's time, or the ConfigError that names its line."""
    try:
        return _csv_time_us(text)
    except _OutOfRange:
        raise ConfigError("--csv", f"{path}, line {line}: time {text.strip()!r} is outside {_TIME_RANGE}") from None
    except ValueError:
        raise ConfigError("--csv", f"{path}, line {line}: not a candle (time and prices must be numbers)") from None


def _exact_row(path: Path, line: int, *texts: str) -> tuple[float, float, float, float, float, float] | None:
    """A row the float fast path could not decide, decided in Decimal: its floats, or None when its prices are
    not a valid candle (skipped). Raises ConfigError when a cell is not a number or a price is out of range."""
    o_s, h_s, l_s, c_s, v_s, val_s = texts
    try:
        o, h, lo, c = (Decimal(x) for x in (o_s, h_s, l_s, c_s))
        volume, value = Decimal(v_s or "0"), Decimal(val_s or "0")
    except (ValueError, ArithmeticError):
        raise ConfigError("--csv", f"{path}, line {line}: not a candle (time and prices must be numbers)") from None
    if not (all(x.is_finite() for x in (o, h, lo, c, volume, value)) and lo > 0 and lo <= min(o, c)
            and h >= max(o, c) and volume >= 0):
        return None
    for x, text in ((lo, l_s), (h, h_s)):  # the lowest and highest of the four
        if not MIN_CSV_PRICE <= x <= MAX_CSV_PRICE:
            raise ConfigError("--csv", f"{path}, line {line}: price {text.strip()} is outside what a KRW market "
                                       f"can have ({MIN_CSV_PRICE:f} to {MAX_CSV_PRICE:,f} KRW)")
    return float(o), float(h), float(lo), float(c), float(volume), float(value)


def read_candles_csv(path: Path) -> tuple[list[Candle], tuple[str, ...]]:
    """Every candle of a CSV file (see :func:`read_csv_columns`), oldest first, and notes about skipped rows."""
    data = read_csv_columns(path)
    return data.candles(), data.notes


# -------------------------------------------------------------------------------------- candles + cache
def load_market_candles(conn: psycopg.Connection[Any], exchange: Exchange, market: str, since: datetime,
                        until: datetime) -> LoadedCandles:
    """Completed hourly candles of ``market`` with ``since <= start < until``, through the ``candles`` cache.

    Only what the cache lacks is fetched: candles older than the oldest cached one when ``since`` is
    earlier, and newer than the newest cached one when ``until`` is later (``count`` = the hours missing,
    paginated 200 per request with ``to`` by the exchange adapter). When the exchange cannot be reached the
    cached candles are used with a note; with nothing cached the error is raised.
    """
    from tradebot.store.candles import cached_range, load_candles, save_candles

    have = cached_range(conn, market, INTERVAL)
    wanted: list[tuple[datetime, datetime]] = []
    if have is None:
        wanted.append((since, until))
    else:
        if since < have.oldest:
            wanted.append((since, have.oldest))
        if until > have.newest + HOUR:
            wanted.append((have.newest + HOUR, until))
    fetched = 0
    notes: list[str] = []
    for start, end in wanted:
        hours = math.ceil((end - start) / HOUR)
        try:
            got = exchange.candles(market, INTERVAL, hours, to=end)
        except ExchangeError as e:
            notes.append(f"could not fetch {market} candles {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC "
                         f"from the exchange ({e}); using the cached ones")
            continue
        # Everything returned is stored (also candles before `start` when the exchange had gaps): each fetch
        # ends at the cached range or at `until`, so the cached range stays gap-free apart from real gaps.
        fetched += save_candles(conn, market, INTERVAL, [c for c in got if c.start < end])
    candles = load_candles(conn, market, INTERVAL, since, until)
    if not candles and notes:
        raise ExchangeError(notes[0].replace("; using the cached ones", "; and no candles of that period are cached"))
    source = "exchange" if have is None else ("cache+exchange" if fetched else "cache")
    return LoadedCandles(candles, source, fetched, tuple(notes))


# ------------------------------------------------------------------------------------------ the risk gate
class _GateSizer:
    """``size_order_at`` for :func:`~tradebot.market.backtest.run_backtest` that asks :func:`tradebot.risk.gate`.

    Realized P&L (for the daily loss limit) is tracked from what the backtest reports at each call: between
    two calls the state changes only by the trade of the earlier call, so a change of the coin volume is that
    trade, priced by the change of KRW (average-cost basis, as the backtest and ``tradebot.pnl`` use).

    The gate is asked only where it could let an order through (issue 7: a year must take milliseconds).
    Buy signals repeat every hour of a trend, so two of the gate's holds are decided here without building
    its Decimal inputs: less than the minimum order could be bought or sold (with a 1 KRW margin, so no
    possible order is missed), and the rule's confidence is below ``min_confidence`` (the gate's first test,
    on the same Decimal). Both are counted like the gate's own vetoes.
    """

    def __init__(self, market: str, strengths: Sequence[float], times: Sequence[datetime] | None,
                 limits: RiskLimits, fee_rate: float) -> None:
        from tradebot.exchange.base import MIN_ORDER_KRW
        from tradebot.market import strategy
        from tradebot.risk import gate

        self.market = market
        self.strengths = strengths
        self.times = times
        self.limits = limits
        self.fee_rate = fee_rate
        self.calls = 0
        self.vetoes: dict[str, int] = {}
        self.clamps: dict[str, int] = {}
        self._gate = gate
        self._confidence = strategy.confidence
        self._buy_fraction, self._sell_fraction = strategy.BUY_FRACTION, strategy.SELL_FRACTION
        self._buy_share = float(strategy.BUY_FRACTION)
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

    def __call__(self, i: int, side: str, cash: float, coin: float, price: float) -> float:
        self._observe(cash, coin)
        j = i + 1  # the fill bar: "today" for the daily loss limit
        day = int(self.times[j].timestamp()) // 86400 if self.times is not None else j // 24
        self._last = (cash, coin, day)
        if side == "buy":
            room = min(self._buy_share * cash, self._max_order, self._max_position - coin * price,
                       cash / (1.0 + self.fee_rate))
            if room < self._minimum:
                return self._veto("min_order")
        elif coin * price < self._minimum:
            return self._veto("min_order")
        confidence = self._confidence(self.strengths[i])
        if confidence < self.limits.min_confidence:
            return self._veto("min_confidence")
        self.calls += 1
        decision = Decision("buy" if side == "buy" else "sell", confidence,
                            self._buy_fraction if side == "buy" else self._sell_fraction, "rule signal (backtest)")
        px, c = _dec(price), _dec(coin)
        position = Position(ticker=self.market, free_krw=_dec(cash), locked_krw=Decimal(0), coin_volume=c,
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


# ------------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True, eq=False)
class Simulation:
    """:func:`simulate`'s result: the backtest, the gate's statistics and the compute time."""

    result: BacktestResult
    gate_calls: int
    vetoes: dict[str, int]
    clamps: dict[str, int]
    compute_seconds: float


def simulate(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
             volume: npt.ArrayLike, *, limits: RiskLimits, market: str = "KRW-BTC", starting_krw: float = 1_000_000.0,
             fee_rate: float | None = None, times: Sequence[datetime] | None = None, trade_from: int = 0) -> Simulation:
    """The rule strategy through the risk gate over float OHLCV arrays (oldest first).

    Signals are computed over every bar; bars before ``trade_from`` are warm-up only (the backtest and its
    metrics start at ``trade_from``). ``times`` (one per bar) date the fills and the daily loss limit.
    """
    import numpy as np

    from tradebot.exchange.base import UPBIT_FEE_RATE
    from tradebot.market import strategy
    from tradebot.market.backtest import run_backtest

    rate = float(UPBIT_FEE_RATE) if fee_rate is None else fee_rate
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
                     market: str = "KRW-BTC", starting_krw: float = 1_000_000.0, source: str = "candles",
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


def backtest_csv(data: CsvCandles, *, since: datetime, until: datetime, limits: RiskLimits, market: str = "KRW-BTC",
                 starting_krw: float = 1_000_000.0, warmup: int = 200 + WARMUP_SLACK) -> BacktestReport:
    """:func:`backtest_candles` over a CSV file's columns: only the period and its warm-up are ever touched."""
    lead_end, end = data.index(since), data.index(until)
    lead = max(0, lead_end - warmup)
    _check_bars(end - lead_end, market, since, until)
    times = [_EPOCH + timedelta(microseconds=t) for t in data.starts[lead:end].tolist()]
    o, h, lo, c, v = (col[lead:end] for col in (data.open, data.high, data.low, data.close, data.volume))
    return _backtest_bars(o, h, lo, c, v, times, lead_end - lead, since=since, until=until, limits=limits,
                          market=market, starting_krw=starting_krw, source=f"csv {data.name}", notes=data.notes)


def _check_bars(bars: int, market: str, since: datetime, until: datetime) -> None:
    if bars < 2:
        raise TradebotError(f"only {bars} hourly candle(s) of {market} between {since:%Y-%m-%d %H:%M} and "
                            f"{until:%Y-%m-%d %H:%M} UTC; the backtest needs at least 2")


def _backtest_bars(o: npt.NDArray[Any], h: npt.NDArray[Any], lo: npt.NDArray[Any], c: npt.NDArray[Any],
                   v: npt.NDArray[Any], times: list[datetime], k: int, *, since: datetime, until: datetime,
                   limits: RiskLimits, market: str, starting_krw: float, source: str,
                   notes: Sequence[str]) -> BacktestReport:
    """The backtest of float bars (oldest first, ``times`` their starts) whose first ``k`` only warm up."""
    from tradebot.exchange.base import UPBIT_FEE_RATE

    sim = simulate(o, h, lo, c, v, limits=limits, market=market, starting_krw=starting_krw,
                   fee_rate=float(UPBIT_FEE_RATE), times=times, trade_from=k)
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
        win_rate=r.win_rate, fees=sum(t.fee for t in r.trades), fee_rate=float(UPBIT_FEE_RATE), limits=limits,
        gate_calls=sim.gate_calls, vetoes=sim.vetoes, clamps=sim.clamps, compute_seconds=sim.compute_seconds,
        fills=r.trades, equity=r.equity, times=tuple(period), closes=c[k:], notes=tuple(out_notes))


# --------------------------------------------------------------------------------------------- the command
@dataclass(frozen=True)
class BacktestRequest:
    """What ``tradebot backtest`` was asked for. ``days`` and ``since`` are exclusive (the CLI checks)."""

    market: str
    days: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    csv: Path | None = None
    starting_krw: Decimal | None = None


def limits_of(settings: Settings) -> RiskLimits:
    """The live risk gate's limits, from the same settings the cycle uses."""
    from tradebot.risk import RiskLimits

    return RiskLimits(settings.min_confidence, settings.max_order_krw, settings.max_position_krw,
                      settings.daily_loss_limit_krw)


def _period(req: BacktestRequest, end: datetime) -> tuple[datetime, datetime]:
    """[since, until) from the request; ``end`` is the default ``until`` (now, or the end of the CSV data)."""
    until = req.until or end
    since = req.since or until - timedelta(days=req.days or DEFAULT_DAYS)
    if since >= until:
        raise ConfigError("--since", f"({since:%Y-%m-%d %H:%M}) must be before --until ({until:%Y-%m-%d %H:%M})")
    return since, until


def _exchange_candles(settings: Settings, market: str, since: datetime, until: datetime) -> LoadedCandles:
    from tradebot.store.db import database_url, open_checked
    from tradebot.wiring import market_data

    exchange = market_data(settings)
    try:
        with open_checked(database_url(settings)) as conn:
            return load_market_candles(conn, exchange, market, since, until)
    finally:
        exchange.close()


def _csv_data(path: Path) -> CsvCandles:
    data = read_csv_columns(path)
    if not len(data):
        raise ConfigError("--csv", f"{path} has no candles")
    return data


def run_backtest_command(settings: Settings, req: BacktestRequest) -> BacktestReport:
    """Everything ``tradebot backtest`` computes: the candles (CSV, or the exchange through the cache) of the
    period and its warm-up, then :func:`backtest_csv` / :func:`backtest_candles` with the live gate's limits.

    The period is ``[until - days, until)``; ``until`` defaults to the current hour (the forming candle is
    never used) or, with ``csv``, to the end of the file's last candle.
    """
    warmup = settings.hourly_candles + WARMUP_SLACK
    starting = float(req.starting_krw if req.starting_krw is not None else settings.paper_krw)
    if req.csv is not None:
        # Columns, not Candles: a file of millions of rows is read in one pass, and only the period is used.
        data = _csv_data(req.csv)
        since, until = _period(req, data.start(-1) + HOUR)
        return backtest_csv(data, since=since, until=until, limits=limits_of(settings), market=req.market,
                            starting_krw=starting, warmup=warmup)
    else:
        # Candles exist only for hours that are over: a later --until is the current hour.
        now_hour = floor_hour(datetime.now(UTC))
        if req.until is not None and req.until > now_hour:
            req = replace(req, until=now_hour)
        since, until = _period(req, now_hour)
        loaded = _exchange_candles(settings, req.market, since - warmup * HOUR, until)
    return backtest_candles(loaded.candles, since=since, until=until, limits=limits_of(settings), market=req.market,
                            starting_krw=starting, source=loaded.source, warmup=warmup, notes=loaded.notes)


# ---------------------------------------------------------------------------------------- --compare-live
@dataclass(frozen=True)
class DecisionComparison:
    """One recorded decision next to what the rule strategy and the gate would have done in its place."""

    decision_id: int
    at: datetime
    candle: datetime | None  # start of the last completed candle before the decision
    strategy_proposal: str | None  # the rules advisor's action on the live window (None: not comparable)
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

    market: str
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
    if d.proposal is not None and d.proposal != d.action:
        parts.append(f"proposed {d.proposal}")
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
                 candles: Sequence[Candle], *, market: str, mode: str, limits: RiskLimits, window: int,
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
                                                  d.proposal, d.action, d.order_krw, d.order_volume,
                                                  note + "; not comparable: no recorded position", False))
            continue
        proposal = strategy.decide(AdvisorInput(position=d.position, indicators=_stub_snapshot(win), hourly=tuple(win),
                                                daily=(), history=()))
        day_start = d.created_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        lo, hi = bisect.bisect_left(sell_times, day_start), bisect.bisect_left(sell_times, d.created_at)
        day_pnl = sum((s.pnl for s in sells[lo:hi]), Decimal(0))
        result = gate(proposal, d.position, d.price or d.position.price, limits, paused="paused" in d.vetoes,
                      realized_loss_today=-day_pnl if day_pnl < 0 else Decimal(0))
        comparisons.append(DecisionComparison(
            d.id, d.created_at, candle, proposal.action, result.action, result.krw, result.volume, d.advisor,
            d.proposal, d.action, d.order_krw, d.order_volume, note, result.action != d.action))

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


def run_compare_command(settings: Settings, req: BacktestRequest, mode: str) -> CompareReport:
    """Everything ``tradebot backtest --compare-live`` computes: the recorded decisions (all, or those in
    ``--since/--until/--days``), their orders and the ledger from the database, the candles of their period
    (CSV, or the exchange through the cache), then :func:`compare_live`."""
    from tradebot.store.db import database_url, open_checked
    from tradebot.store.history import orders_of, recorded_decisions
    from tradebot.store.trades import ledger_entries

    since, until = req.since, req.until
    if req.days is not None:
        until = until or datetime.now(UTC)
        since = until - timedelta(days=req.days)
    with open_checked(database_url(settings)) as conn:
        decisions = recorded_decisions(conn, req.market, mode, since, until)
        orders = orders_of(conn, [d.id for d in decisions])
        ledger = ledger_entries(conn, req.market, mode)
    if not decisions:
        raise TradebotError(f"no recorded decisions for {req.market} ({mode}) in this period: run some cycles first "
                            "(`tradebot run-cycle`)")
    warmup = settings.hourly_candles + WARMUP_SLACK
    if req.csv is not None:
        # Only the candles the comparison can use: the first decision's live window and the backtest's warm-up
        # before it (with a candle to spare each), up to the candle in which the last decision traded.
        data = _csv_data(req.csv)
        first_at = min(d.created_at for d in decisions)
        lo = max(0, data.index(first_at - HOUR, after=True) - warmup - 2)
        hi = data.index(floor_hour(max(d.created_at for d in decisions)) + HOUR)
        loaded = LoadedCandles(data.candles(lo, hi), f"csv {data.name}", 0, data.notes)
    else:
        # From the live window of the first decision to the candle in which the last one traded (the hour
        # it was made in), when that candle is complete.
        first = floor_hour(decisions[0].created_at) - HOUR
        end = min(floor_hour(decisions[-1].created_at) + HOUR, floor_hour(datetime.now(UTC)))
        loaded = _exchange_candles(settings, req.market, first - warmup * HOUR, max(end, first + HOUR))
    return compare_live(decisions, orders, ledger, loaded.candles, market=req.market, mode=mode,
                        limits=limits_of(settings), window=settings.hourly_candles, source=loaded.source,
                        notes=loaded.notes)


# ------------------------------------------------------------------------------------------------- plot
def plot_report(report: BacktestReport, path: Path) -> Path:
    """Write the equity curve against buy-and-hold, with the fills and the drawdown, as a PNG.

    Needs the optional ``plot`` extra (matplotlib); raises :class:`ConfigError` when it is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot", "needs matplotlib: pip install 'tradebot[plot]'") from None
    import numpy as np

    times = list(report.times)
    equity = np.asarray(report.equity)
    closes = np.asarray(report.closes, dtype=float)
    # Buy and hold from the first open (as its return is defined), so the line ends at the reported figure.
    hold = report.starting_krw * (1 + report.buy_hold_return) * closes / closes[-1]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    try:
        top.plot(times, equity, label=f"strategy {report.total_return * 100:+.2f} %", linewidth=1.2)
        top.plot(times, hold, label=f"buy and hold {report.buy_hold_return * 100:+.2f} %", linewidth=0.9, alpha=0.7)
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            idx = [t.index for t in report.fills if t.side == side]
            if idx:
                top.scatter([times[i] for i in idx], equity[idx], marker=marker, color=color, s=18, label=side, zorder=3)
        top.set_ylabel("equity (KRW)")
        top.set_title(f"{report.market} backtest {report.first_candle:%Y-%m-%d} – {report.last_candle:%Y-%m-%d} "
                      f"({report.bars} hourly bars, {report.trades} trades)")
        top.legend(loc="best", fontsize=8)
        top.grid(alpha=0.3)
        peak = np.maximum.accumulate(equity)
        bottom.fill_between(times, -(1 - equity / peak) * 100, 0, color="tab:red", alpha=0.4)
        bottom.set_ylabel("drawdown %")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(path, dpi=110)
        except OSError as e:
            raise ConfigError("--plot", f"cannot write {path}: {e.strerror or type(e).__name__}") from None
    finally:
        plt.close(fig)
    return path
