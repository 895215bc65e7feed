"""The price side of the simulator: Upbit's tick sizes, each market's hourly candle path (a seeded
synthetic random walk, or the rows of a candle CSV continued by one) and the orderbook around its price."""

from __future__ import annotations

import csv
import functools
import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

from tradebot.exchange.simulator.wire import _EXACT, _Q8, HOUR, _hour_floor, _parse_time

BOOK_LEVELS = 30

# Starting levels of the synthetic paths (roughly real KRW prices); other markets start at 10,000 KRW.
DEFAULT_LEVELS: Mapping[str, Decimal] = {
    "KRW-BTC": Decimal(130_000_000),
    "KRW-ETH": Decimal(5_000_000),
    "KRW-SOL": Decimal(250_000),
    "KRW-XRP": Decimal(3_000),
    "KRW-DOGE": Decimal(300),
}

# GARCH(1,1) on hourly log returns: long-run hourly volatility ~0.6 % (BTC-like), persistent clustering.
_GARCH_ALPHA = 0.07
_GARCH_BETA = 0.90
_LONG_RUN_VAR = 0.006**2
_STUDENT_NU = 5.0  # fat tails: Student-t shocks scaled to unit variance
_HOURLY_VALUE_KRW = 15_000_000_000.0  # typical traded KRW per hour (volume = value / price)
_BOOK_BASE_KRW = 300_000.0  # KRW at the best level; deeper levels grow ~(i+1)^1.6 (> 1e9 KRW in total)


# --------------------------------------------------------------------------------------------- tick sizes


# (lower bound, tick) from the top; below 100 KRW the steps continue by powers of ten.
_TICKS: tuple[tuple[Decimal, Decimal], ...] = tuple(
    (Decimal(floor), Decimal(tick))
    for floor, tick in (
        ("1000000", "1000"),
        ("500000", "500"),
        ("100000", "100"),
        ("50000", "50"),
        ("10000", "10"),
        ("5000", "5"),
        ("100", "1"),
        ("10", "0.01"),
        ("1", "0.001"),
        ("0.1", "0.0001"),
        ("0.01", "0.00001"),
        ("0.001", "0.000001"),
    )
)


def tick_size(price: Decimal) -> Decimal:
    """Upbit's KRW price unit for ``price`` (the table in force since 2025-07-31).

    Below 100 KRW the steps continue by powers of ten (10–100 → 0.01, 1–10 → 0.001, …).
    """
    for floor, tick in _TICKS:
        if price >= floor:
            return tick
    return Decimal("0.0000001")


def _round_tick(price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Put a price on its tick grid (never below one tick)."""
    tick = tick_size(price)
    with localcontext(_EXACT):
        on_grid = (price / tick).to_integral_value(rounding=rounding) * tick
    return max(on_grid, tick)


def _tick_below(price: Decimal) -> Decimal:
    """The next lower valid price: the tick just *below* ``price`` decides (1,000,000 → 999,500)."""
    return price - tick_size(price - Decimal("1e-12"))


def _dec_from_float(x: float) -> Decimal:
    # repr() is the shortest string that round-trips; never Decimal(float), which drags binary noise along.
    return Decimal(repr(x))

# ------------------------------------------------------------------------------------------------ price path


@dataclass
class _Bar:
    """One hourly candle; its start time is derived from its position (see ``_MarketPath.start_of``)."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    value: Decimal


@dataclass(frozen=True)
class _Level:
    ask_price: Decimal
    ask_size: Decimal
    bid_price: Decimal
    bid_size: Decimal


@functools.lru_cache(maxsize=65536)
def _market_factor(seed: int, k: int) -> float:
    """The common shock of hour ``k`` (a standard normal draw, the same for every market of a simulator)."""
    return random.Random(f"{seed}:market-factor:{k}").gauss(0.0, 1.0)


class _MarketPath:
    """The hourly candles of one market. The last bar is the forming one and starts at ``anchor``."""

    def __init__(self, market: str, seed: int, anchor: datetime, base_value: float, correlation: float = 0.0) -> None:
        self.market = market
        self.seed = seed
        self.anchor = anchor
        self.bars: list[_Bar] = []
        # A string seed hashes with SHA-512 inside `random`: stable across runs and PYTHONHASHSEED.
        self.rng = random.Random(f"{seed}:{market}")
        self.var = _LONG_RUN_VAR
        self.last_r = 0.0
        self.base_value = base_value
        # Coins move together: the k-th hour's shock of every market shares the market factor's k-th draw, so
        # that two markets' hourly shocks are correlated by ``correlation`` (0: an independent path, exactly as a
        # one-market simulator always drew it).
        self.correlation = correlation
        self.draws = 0

    # -- generation
    def _draw(self) -> tuple[float, float, float, float]:
        """One hour of randomness: (log return, wick up, wick down, volume multiplier)."""
        self.var = (
            _LONG_RUN_VAR * (1 - _GARCH_ALPHA - _GARCH_BETA) + _GARCH_ALPHA * self.last_r**2 + (_GARCH_BETA * self.var)
        )
        chi2 = self.rng.gammavariate(_STUDENT_NU / 2, 2.0)
        shock = self.rng.gauss(0.0, 1.0) / math.sqrt(chi2 / _STUDENT_NU) * math.sqrt((_STUDENT_NU - 2) / _STUDENT_NU)
        if self.correlation:
            # Two markets that each weigh the common shock by sqrt(c) have shocks correlated by c.
            w = math.sqrt(self.correlation)
            shock = w * _market_factor(self.seed, self.draws) + math.sqrt(1 - self.correlation) * shock
        self.draws += 1
        sigma = math.sqrt(self.var)
        r = sigma * shock
        self.last_r = r
        up = abs(self.rng.gauss(0.0, 1.0)) * sigma * 0.6
        down = abs(self.rng.gauss(0.0, 1.0)) * sigma * 0.6
        # Busy hours trade more: volume grows with the size of the move, with lognormal noise.
        vol_mult = (0.5 + abs(r) / math.sqrt(_LONG_RUN_VAR)) * self.rng.lognormvariate(0.0, 0.35)
        return r, up, down, vol_mult

    def _bar(self, open_: Decimal, close: Decimal, up: float, down: float, vol_mult: float) -> _Bar:
        with localcontext(_EXACT):
            high = _round_tick(max(open_, close) * _dec_from_float(math.exp(up)), ROUND_CEILING)
            low = _round_tick(min(open_, close) * _dec_from_float(math.exp(-down)), ROUND_FLOOR)
            low = min(low, open_, close)
            typical = (open_ + high + low + close) / 4
            volume = (_dec_from_float(self.base_value * vol_mult) / typical).quantize(_Q8, rounding=ROUND_DOWN)
            volume = max(volume, _Q8)
            value = (volume * typical).quantize(_Q8, rounding=ROUND_HALF_EVEN)
        return _Bar(open_, high, low, close, volume, value)

    def generate_history(self, level: Decimal, hours: int) -> None:
        """``hours`` synthetic bars whose last close is exactly ``level`` (on its tick)."""
        draws = [self._draw() for _ in range(hours)]
        cumulative: list[float] = []
        total = 0.0
        for r, *_ in draws:
            total += r
            cumulative.append(total)
        last = cumulative[-1]
        level = _round_tick(level)
        closes = [
            level if i == hours - 1 else _round_tick(level * _dec_from_float(math.exp(c - last)))
            for i, c in enumerate(cumulative)
        ]
        prev = _round_tick(closes[0] * _dec_from_float(math.exp(-draws[0][0])))
        for close, (_, up, down, vol_mult) in zip(closes, draws, strict=True):
            self.bars.append(self._bar(prev, close, up, down, vol_mult))
            prev = close

    def load_bars(self, bars: list[_Bar]) -> None:
        """Use recorded bars (a CSV); later bars continue as a synthetic walk calibrated on them."""
        self.bars = bars
        closes = [float(b.close) for b in bars[-200:]]
        returns = [math.log(b / a) for a, b in itertools.pairwise(closes) if a > 0 and b > 0]
        if len(returns) >= 10:
            self.var = max(sum(r * r for r in returns) / len(returns), 1e-8)
            self.last_r = returns[-1]
        values = [float(b.value) for b in bars[-24:]]
        if values and sum(values) > 0:
            self.base_value = sum(values) / len(values)

    def step(self, target: Decimal | None = None) -> None:
        """Append one hourly bar; with ``target`` its close is that price (on its tick)."""
        r, up, down, vol_mult = self._draw()
        prev = self.price
        if target is None:
            close = _round_tick(prev * _dec_from_float(math.exp(r)))
        else:
            close = _round_tick(target)
            self.last_r = math.log(float(close) / float(prev))
        self.bars.append(self._bar(prev, close, up, down, vol_mult))

    def sync(self, now: float) -> None:
        """Start a new forming bar for every wall-clock hour that began since the last one."""
        hour = _hour_floor(now)
        missing = int((hour - self.anchor) / HOUR)
        if missing <= 0:
            return
        # A clock that jumps far ahead (a test clock) must not make us generate years of candles.
        for _ in range(min(missing, 24 * 400)):
            self.step()
        self.anchor = hour

    def advance(self, hours: int, target: Decimal | None) -> None:
        """Append ``hours`` bars (a straight geometric path to ``target`` if given) without moving the clock."""
        if target is None:
            for _ in range(hours):
                self.step()
            return
        start = float(self.price)
        end = float(target)
        for k in range(1, hours + 1):
            self.step(target if k == hours else _dec_from_float(start * (end / start) ** (k / hours)))

    def set_price(self, price: Decimal) -> None:
        """Make ``price`` the last trade of the forming bar."""
        bar = self.bars[-1]
        bar.close = _round_tick(price)
        bar.high = max(bar.high, bar.close)
        bar.low = min(bar.low, bar.close)

    # -- reading
    @property
    def price(self) -> Decimal:
        return self.bars[-1].close

    def start_of(self, index: int) -> datetime:
        return self.anchor - (len(self.bars) - 1 - index) * HOUR

    def book(self) -> list[_Level]:
        """30 levels around the last price; a pure function of the path's state, so it is stable between a
        test reading ``/v1/orderbook`` and placing an order."""
        price = self.price
        rng = random.Random(f"{self.seed}:{self.market}:book:{len(self.bars)}:{price}")
        bid = _round_tick(price, ROUND_FLOOR)
        ask = bid + tick_size(bid)
        levels: list[_Level] = []
        with localcontext(_EXACT):
            for i in range(BOOK_LEVELS):
                depth = (i + 1) ** 1.6
                ask_krw = _dec_from_float(_BOOK_BASE_KRW * depth * rng.uniform(0.6, 1.4))
                bid_krw = _dec_from_float(_BOOK_BASE_KRW * depth * rng.uniform(0.6, 1.4))
                ask_size = max((ask_krw / ask).quantize(_Q8, rounding=ROUND_DOWN), _Q8)
                bid_size = max((bid_krw / bid).quantize(_Q8, rounding=ROUND_DOWN), _Q8)
                levels.append(_Level(ask, ask_size, bid, bid_size))
                ask = ask + tick_size(ask)
                bid = max(_tick_below(bid), tick_size(bid))
        return levels


_CSV_REQUIRED = ("candle_date_time_utc", "opening_price", "high_price", "low_price", "trade_price")
# What a candle CSV may hold: times from the Unix epoch to the last whole year of datetime, prices from the
# smallest tick of the table above to far beyond any coin (1e400 is no float, and the path's random walk is).
_CSV_TIMES = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
_CSV_PRICES = (Decimal("0.0000001"), Decimal("1e15"))


def _read_csv(path: Path) -> tuple[str | None, list[_Bar]]:
    """Read Upbit-style candle rows (any order); returns the CSV's market (if it names one) and bars.

    Raises :class:`~tradebot.errors.ConfigError` (``--candles``, exit 2 in the CLI) for a file that cannot be
    read, is not a UTF-8 CSV, lacks the candle columns or has fewer than 2 rows, and for a row whose time or
    numbers are not a candle's, naming its line.
    """
    from tradebot.errors import ConfigError

    def fail(message: str) -> ConfigError:
        return ConfigError("--candles", message)

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {c.strip() for c in reader.fieldnames or () if c is not None}
            if not columns:
                raise fail(f"{path} is empty: a CSV with the columns {', '.join(_CSV_REQUIRED)} is needed")
            missing = [c for c in _CSV_REQUIRED if c not in columns]
            if missing:
                raise fail(f"{path}: missing candle column(s): {', '.join(missing)}")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise fail(f"{path} is not a UTF-8 CSV file ({type(e).__name__})") from None
    if len(rows) < 2:
        raise fail(f"{path}: needs at least 2 candle rows")
    timed: list[tuple[datetime, int, dict[str, str]]] = []
    for line, row in enumerate(rows, start=2):
        text = row["candle_date_time_utc"]
        try:
            at = _parse_time(text)
        except (ValueError, OverflowError, OSError):
            raise fail(f"{path}, line {line}: {text!r} is not a time") from None
        if not _CSV_TIMES[0] <= at < _CSV_TIMES[1]:
            raise fail(f"{path}, line {line}: time {text!r} is outside 1970-01-01 to 9998-12-31 (UTC)")
        timed.append((at, line, row))
    timed.sort(key=lambda t: t[0])
    market = (timed[-1][2].get("market") or "").strip() or None
    bars: list[_Bar] = []
    for _at, line, row in timed:
        try:
            o, h, lo, close = (Decimal(row[k]) for k in _CSV_REQUIRED[1:])
            volume = Decimal(row.get("candle_acc_trade_volume") or "0")
            value = Decimal(row["candle_acc_trade_price"]) if row.get("candle_acc_trade_price") else None
        except (ArithmeticError, ValueError):
            raise fail(f"{path}, line {line}: a candle value is not a number") from None
        if not all(x.is_finite() for x in (o, h, lo, close, volume, value or volume)) or volume < 0:
            raise fail(f"{path}, line {line}: a candle value is not a finite number (or the volume is negative)")
        for k, x in zip(_CSV_REQUIRED[1:], (o, h, lo, close), strict=True):
            if not _CSV_PRICES[0] <= x <= _CSV_PRICES[1]:
                raise fail(f"{path}, line {line}: price {row[k]} is outside what a KRW market can have "
                           f"({_CSV_PRICES[0]:f} to {_CSV_PRICES[1]:,f} KRW)")
        if value is None:
            with localcontext(_EXACT):
                value = (volume * close).quantize(_Q8)
        bars.append(_Bar(o, h, lo, close, volume, value))
    return market, bars
