"""Hourly candles from a CSV file: Upbit's candle fields or a simple ``time,open,high,low,close[,volume]``.

:func:`read_csv_columns` reads a file one row at a time into float64 columns (:class:`CsvCandles`): a file
of millions of rows fits in memory, and only the rows a backtest uses become :class:`~tradebot.models.Candle`
objects. Importing this module imports no NumPy (``tradebot --help`` and the CLI's option parsing stay
fast); reading a file does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.errors import ConfigError
from tradebot.models import Candle

if TYPE_CHECKING:
    import numpy.typing as npt

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

    def times(self, lo: int, hi: int) -> list[datetime]:
        """The starts of candles ``lo`` to ``hi`` (exclusive)."""
        return [_EPOCH + timedelta(microseconds=t) for t in self.starts[lo:hi].tolist()]

    def index(self, at: datetime, *, after: bool = False) -> int:
        """How many candles start before ``at`` (with ``after``: at or before it), as ``bisect`` counts."""
        import numpy as np

        return int(np.searchsorted(self.starts, _micros(at), side="right" if after else "left"))

    def candles(self, lo: int = 0, hi: int | None = None) -> list[Candle]:
        """Candles ``lo`` to ``hi`` (exclusive) as :class:`Candle` objects."""
        hi = len(self) if hi is None else hi
        starts = self.starts[lo:hi].tolist()
        cols = [c[lo:hi].tolist() for c in (self.open, self.high, self.low, self.close, self.volume, self.value)]
        return [Candle(_EPOCH + timedelta(microseconds=t), _short(o), _short(h), _short(lo_), _short(c), _short(v),
                       _short(val)) for t, o, h, lo_, c, v, val in zip(starts, *cols, strict=True)]


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

