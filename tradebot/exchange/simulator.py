"""A local HTTP server that speaks the subset of Upbit's REST API tradebot uses (``tradebot simulator``).

The simulator is a fake *at the seam*: the real clients (pyupbit, ``requests``) talk to it over loopback HTTP
and see Upbit's wire format — quotation numbers as JSON numbers, exchange numbers as strings, Upbit's error
names and shapes, the ``Remaining-Req`` header, JWT verification with ``query_hash``. It is stdlib-only
(``http.server``) plus PyJWT, which is imported lazily so that importing this module stays cheap.

Behaviour worth knowing:

* **Price path.** Each market has an hourly candle path. Without ``candles_csv`` it is a seeded synthetic
  random walk with GARCH(1,1) volatility clustering and fat-tailed shocks (``random.Random``, no NumPy); the
  same seed gives the same prices. A CSV of Upbit-style candles drives its market (the CSV's ``market``
  column, else the first configured market). The rows are taken, oldest first, as *consecutive* hours and
  **re-timed so that the last row is the current UTC hour** (the original timestamps only order the rows).
* **Time.** The newest candle is the still-forming one and starts at the current UTC hour. When the wall
  clock enters a new hour, new candles are generated. ``POST /_sim/advance`` appends candles *without*
  moving the clock, so the whole history is re-timed one hour back per appended candle: the newest candle
  always starts at the current hour, and the market "moved" between two bot cycles.
* **Orders.** Only market orders: buy = ``side=bid, ord_type=price`` (``price`` is the KRW to spend), sell =
  ``side=ask, ord_type=market`` (``volume``). A fill walks the simulated 30-level orderbook, one trade per
  level touched; all money math is exact ``Decimal``. With ``fill_delay_s`` an order stays ``wait`` until the
  delay has passed and is then filled, on the next read, **at the orderbook of that moment** (a market moved
  with ``/_sim/advance`` in between changes the fill).
* **Faults** (``Faults``) can be set at construction and at runtime through ``POST /_sim/faults``.

Control endpoints live under ``/_sim/`` only and need no JWT; they are documented on ``SimulatorServer``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import itertools
import json
import logging
import math
import random
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    InvalidOperation,
    localcontext,
)
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

_log = logging.getLogger(__name__)

# Upbit's KRW-market rules, written down here on purpose instead of imported from tradebot.exchange.base:
# the simulator plays the exchange, so a wrong constant in the bot must not silently agree with it.
FEE_RATE = Decimal("0.0005")
MIN_TOTAL_KRW = Decimal(5000)
MAX_TOTAL_KRW = Decimal(1_000_000_000)
VOLUME_PLACES = 8
BOOK_LEVELS = 30
MAX_CANDLES = 200
MAX_CLOSED_WINDOW = timedelta(days=7)

KST = timezone(timedelta(hours=9))
HOUR = timedelta(hours=1)

# Fake credentials for local use. The secret is >= 64 bytes so PyJWT never warns about a short HMAC key.
DEFAULT_ACCESS_KEY = "tradebot-simulator-access-key"
DEFAULT_SECRET_KEY = "tradebot-simulator-secret-key-" + "0123456789abcdef" * 3

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

_Q8 = Decimal(1).scaleb(-VOLUME_PLACES)
# Money math is exact: 28 digits (the default) could round a product of two long decimals.
_EXACT = Context(prec=100, rounding=ROUND_HALF_EVEN)
_PLAIN_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")

FaultBody = Literal["json", "text"]


# --------------------------------------------------------------------------------------------------- helpers


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


def _s(value: Decimal) -> str:
    """Upbit's string form of an exchange number: plain, no exponent, trailing zeros dropped, ``"5000.0"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("", "-0"):
        text = "0"
    return text if "." in text else text + ".0"


def _utc_str(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _kst_str(at: datetime) -> str:
    return at.astimezone(KST).strftime("%Y-%m-%dT%H:%M:%S")


def _kst_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, KST).isoformat(timespec="seconds")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _hour_floor(epoch: float) -> datetime:
    at = datetime.fromtimestamp(epoch, UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def _parse_time(text: str) -> datetime:
    """Parse Upbit's ``to``/``start_time`` forms: ISO with ``T`` or space, ``Z`` or offset, naive = UTC, or ms."""
    text = text.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    # A literal "+" in a query string arrives as a space: "…T00:00:00 09:00".
    text = re.sub(r" (\d\d:\d\d)$", r"+\1", text)
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


_MARKER = "\x00num" + uuidlib.uuid4().hex + ":"
_MARKER_RE = re.compile(r'"\\u0000num' + _MARKER[4:] + r'(-?[0-9.]+)"')


def _dumps(payload: Any) -> bytes:
    """JSON with every ``Decimal`` written as a bare number (quotation responses carry doubles on Upbit).

    ``json`` cannot write a Decimal as a number without going through float, so Decimals are first turned
    into marked strings and the quotes are stripped afterwards: the digits on the wire are exact.
    """

    def mark(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            # Integral prices get ".0" like the doubles Upbit sends (130000000.0).
            return _MARKER + _s(obj)
        if isinstance(obj, dict):
            return {k: mark(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [mark(v) for v in obj]
        return obj

    text = json.dumps(mark(payload), ensure_ascii=False, separators=(",", ":"))
    return _MARKER_RE.sub(r"\1", text).encode("utf-8")


def _canonical_query(params: Mapping[str, Any] | None) -> str:
    """The string Upbit hashes: ``unquote(urlencode(params, doseq=True))`` (``key[]=a&key[]=b`` for arrays)."""
    if not params:
        return ""
    return unquote(urlencode(params, doseq=True))


def sign_jwt(
    access_key: str,
    secret_key: str,
    params: Mapping[str, Any] | None = None,
    *,
    nonce: str | None = None,
) -> str:
    """A JWT exactly as Upbit expects it (HS256; ``query_hash`` = SHA512 of the url-encoded parameters).

    ``params`` must be in the order they are sent; list values are encoded as repeated keys, so pass array
    parameters under their bracketed name (``{"states[]": ["done", "cancel"]}``). ``nonce`` defaults to a
    fresh uuid4 (pass one explicitly only to test nonce reuse).
    """
    import jwt  # lazy: PyJWT pulls in more than a quick `import` of this module should pay for

    payload: dict[str, Any] = {"access_key": access_key, "nonce": nonce or str(uuidlib.uuid4())}
    if params:
        query = _canonical_query(params).encode("utf-8")
        payload["query_hash"] = hashlib.sha512(query).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    return jwt.encode(payload, secret_key, algorithm="HS256")


# ---------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Faults:
    """Switches that make the simulator misbehave the way the real exchange sometimes does.

    * ``fill_delay_s``: accepted orders stay ``wait`` this long, then fill on the next read.
    * ``drop_next_order_response``: the next N ``POST /v1/orders`` are processed normally (the order is
      recorded when valid) and the connection is then closed without any HTTP response.
    * ``fail_next``: the next N requests matching ``fail_path`` (exact path, any when None) and
      ``fail_method`` (any when None) get HTTP ``fail_status`` (429 or 5xx). ``fail_body`` is ``"json"``
      (``{"error": {...}}``) or ``"text"`` (``Too many API requests.`` for a 429). With
      ``fail_after_accept`` the request is first processed normally — an order is placed — and only the
      response is replaced; otherwise nothing happens on the exchange.
    * ``reject_next_order``: an Upbit error name (``"market_offline"``, ``"create_bid_error"``, …): the next
      authenticated ``POST /v1/orders`` is refused with HTTP 400 and that name, nothing is placed (its
      identifier is used up, as on Upbit), and the switch clears.
    """

    fill_delay_s: float = 0.0
    drop_next_order_response: int = 0
    fail_next: int = 0
    fail_status: int = 429
    fail_path: str | None = None
    fail_method: str | None = None
    fail_body: FaultBody = "json"
    fail_after_accept: bool = False
    reject_next_order: str | None = None

    def __post_init__(self) -> None:
        if self.fill_delay_s < 0:
            raise ValueError("fill_delay_s must be >= 0")
        if self.drop_next_order_response < 0 or self.fail_next < 0:
            raise ValueError("fault counters must be >= 0")
        if not (self.fail_status == 429 or 500 <= self.fail_status <= 599):
            raise ValueError("fail_status must be 429 or 5xx")
        if self.fail_body not in ("json", "text"):
            raise ValueError('fail_body must be "json" or "text"')
        if self.reject_next_order is not None and not (
            isinstance(self.reject_next_order, str) and self.reject_next_order
        ):
            raise ValueError("reject_next_order must be an Upbit error name")

    @classmethod
    def from_json(cls, base: Faults, changes: Mapping[str, Any]) -> Faults:
        """``base`` with the given fields replaced (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return replace(base, **dict(changes))


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything a simulator instance needs. ``port=0`` picks a free port; the host is always loopback.

    ``clock`` returns Unix seconds; tests may pass a controllable clock (it also drives ``fill_delay_s``
    and the ``Remaining-Req`` second windows).
    """

    port: int = 0
    host: str = "127.0.0.1"
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    starting_krw: Decimal = Decimal(1_000_000)
    candles_csv: Path | None = None
    seed: int = 42
    markets: tuple[str, ...] = ("KRW-BTC",)
    start_prices: Mapping[str, Decimal] = field(default_factory=dict)
    history_hours: int = 24 * 60
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        # A frozen dataclass still has to normalise what callers pass (str paths, lists, int amounts).
        if self.host not in ("127.0.0.1", "localhost"):
            raise ValueError("the simulator only listens on 127.0.0.1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")
        if not self.access_key or not self.secret_key:
            raise ValueError("access_key and secret_key must not be empty")
        krw = self.starting_krw
        if isinstance(krw, float):
            raise TypeError("starting_krw must be a Decimal, int or str, not float")
        object.__setattr__(self, "starting_krw", Decimal(str(krw)))
        if self.candles_csv is not None:
            object.__setattr__(self, "candles_csv", Path(self.candles_csv))
        markets = tuple(self.markets)
        for market in markets:
            if not re.fullmatch(r"KRW-[A-Z0-9]+", market):
                raise ValueError(f"not a KRW market code: {market!r}")
        if not markets:
            raise ValueError("at least one market is needed")
        object.__setattr__(self, "markets", markets)
        object.__setattr__(self, "start_prices", {k: Decimal(str(v)) for k, v in self.start_prices.items()})
        if self.history_hours < 48:
            raise ValueError("history_hours must be >= 48")


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


class _MarketPath:
    """The hourly candles of one market. The last bar is the forming one and starts at ``anchor``."""

    def __init__(self, market: str, seed: int, anchor: datetime, base_value: float) -> None:
        self.market = market
        self.seed = seed
        self.anchor = anchor
        self.bars: list[_Bar] = []
        # A string seed hashes with SHA-512 inside `random`: stable across runs and PYTHONHASHSEED.
        self.rng = random.Random(f"{seed}:{market}")
        self.var = _LONG_RUN_VAR
        self.last_r = 0.0
        self.base_value = base_value

    # -- generation
    def _draw(self) -> tuple[float, float, float, float]:
        """One hour of randomness: (log return, wick up, wick down, volume multiplier)."""
        self.var = (
            _LONG_RUN_VAR * (1 - _GARCH_ALPHA - _GARCH_BETA) + _GARCH_ALPHA * self.last_r**2 + (_GARCH_BETA * self.var)
        )
        chi2 = self.rng.gammavariate(_STUDENT_NU / 2, 2.0)
        shock = self.rng.gauss(0.0, 1.0) / math.sqrt(chi2 / _STUDENT_NU) * math.sqrt((_STUDENT_NU - 2) / _STUDENT_NU)
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
        for close, (_, up, down, vol_mult) in zip(closes, draws):
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
        for k, x in zip(_CSV_REQUIRED[1:], (o, h, lo, close)):
            if not _CSV_PRICES[0] <= x <= _CSV_PRICES[1]:
                raise fail(f"{path}, line {line}: price {row[k]} is outside what a KRW market can have "
                           f"({_CSV_PRICES[0]:f} to {_CSV_PRICES[1]:,f} KRW)")
        if value is None:
            with localcontext(_EXACT):
                value = (volume * close).quantize(_Q8)
        bars.append(_Bar(o, h, lo, close, volume, value))
    return market, bars


# ------------------------------------------------------------------------------------------- exchange state


class _ApiError(Exception):
    """An Upbit error response: ``{"error": {"name": ..., "message": ...}}``."""

    def __init__(self, status: int, name: str | int, message: str) -> None:
        super().__init__(f"{status} {name}: {message}")
        self.status = status
        self.name = name
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"error": {"name": self.name, "message": self.message}}


def _not_found_market() -> _ApiError:
    # Upbit's real answer for an unknown market code: HTTP 404 with an *integer* name.
    return _ApiError(404, 404, "Code not found")


def _validation(message: str) -> _ApiError:
    return _ApiError(400, "validation_error", message)


@dataclass
class _Account:
    balance: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)
    avg_buy_price: Decimal = Decimal(0)


@dataclass
class _Trade:
    uuid: str
    price: Decimal
    volume: Decimal
    funds: Decimal
    side: str
    created: float


@dataclass
class _Order:
    uuid: str
    seq: int
    market: str
    side: str
    ord_type: str
    price: Decimal | None
    volume: Decimal | None
    identifier: str | None
    created: float
    fill_due: float
    reserved_fee: Decimal
    locked: Decimal
    state: str = "wait"
    remaining_fee: Decimal = Decimal(0)
    paid_fee: Decimal = Decimal(0)
    executed_volume: Decimal = Decimal(0)
    executed_funds: Decimal = Decimal(0)
    trades: list[_Trade] = field(default_factory=list)

    def to_json(self, *, with_trades: bool) -> dict[str, Any]:
        remaining_volume = None if self.volume is None else _s(self.volume - self.executed_volume)
        data: dict[str, Any] = {
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": None if self.price is None else _s(self.price),
            "state": self.state,
            "market": self.market,
            "created_at": _kst_iso(self.created),
            "volume": None if self.volume is None else _s(self.volume),
            "remaining_volume": remaining_volume,
            "reserved_fee": _s(self.reserved_fee),
            "remaining_fee": _s(self.remaining_fee),
            "paid_fee": _s(self.paid_fee),
            "locked": _s(self.locked),
            "executed_volume": _s(self.executed_volume),
            "executed_funds": _s(self.executed_funds),
            "trades_count": len(self.trades),
            "identifier": self.identifier,
        }
        if with_trades:
            data["trades"] = [
                {
                    "market": self.market,
                    "uuid": t.uuid,
                    "price": _s(t.price),
                    "volume": _s(t.volume),
                    "funds": _s(t.funds),
                    "trend": "up" if t.side == "bid" else "down",
                    "created_at": _kst_iso(t.created),
                    "side": t.side,
                }
                for t in self.trades
            ]
        return data


class _Params:
    """Request parameters in the order received, from the query string and the (form or JSON) body."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, key: str) -> str | None:
        for k, v in self.pairs:
            if k == key:
                return v
        return None

    def getlist(self, key: str) -> list[str]:
        """Values of ``key[]`` (or a repeated or comma-separated ``key``)."""
        values = [v for k, v in self.pairs if k == key + "[]"]
        if not values:
            values = [part for k, v in self.pairs if k == key for part in v.split(",") if part]
        return values


@dataclass(frozen=True)
class _Request:
    params: _Params
    hash_candidates: tuple[str, ...]


# Route → (Remaining-Req group, private?, method name on _Exchange).
_ROUTES: dict[tuple[str, str], tuple[str, bool, str]] = {
    ("GET", "/v1/candles/minutes/60"): ("candles", False, "candles_minutes"),
    ("GET", "/v1/candles/days"): ("candles", False, "candles_days"),
    ("GET", "/v1/ticker"): ("ticker", False, "ticker"),
    ("GET", "/v1/orderbook"): ("orderbook", False, "orderbook"),
    ("GET", "/v1/accounts"): ("default", True, "list_accounts"),
    ("POST", "/v1/orders"): ("order", True, "create_order"),
    ("GET", "/v1/order"): ("default", True, "get_order"),
    ("GET", "/v1/orders/closed"): ("default", True, "closed_orders"),
    ("GET", "/v1/orders/open"): ("default", True, "open_orders"),
    ("GET", "/v1/orders/uuids"): ("default", True, "orders_by_ids"),
    ("GET", "/v1/orders/chance"): ("default", True, "chance"),
}

# Per-second request budgets (Upbit: quotation 10/s per group, exchange 30/s, order creation 8/s) and the
# legacy per-minute figure that pyupbit's header regex still insists on.
_GROUP_LIMITS: dict[str, tuple[int, int]] = {
    "candles": (600, 10),
    "ticker": (600, 10),
    "orderbook": (600, 10),
    "default": (1800, 30),
    "order": (480, 8),
}


class _Exchange:
    """All simulator state behind one lock (request threads and in-process test calls share it)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.reset()

    # -- lifecycle
    def now(self) -> float:
        return self.config.clock()

    def reset(self) -> None:
        """Back to the state right after construction (same seed → same markets)."""
        cfg = self.config
        with self.lock:
            anchor = _hour_floor(self.now())
            markets: dict[str, _MarketPath] = {}
            csv_market: str | None = None
            csv_bars: list[_Bar] | None = None
            if cfg.candles_csv is not None:
                csv_market, csv_bars = _read_csv(cfg.candles_csv)
                csv_market = csv_market or cfg.markets[0]
            names = list(cfg.markets)
            if csv_market is not None and csv_market not in names:
                names.insert(0, csv_market)
            for name in names:
                path = _MarketPath(name, cfg.seed, anchor, _HOURLY_VALUE_KRW)
                if name == csv_market and csv_bars is not None:
                    path.load_bars(list(csv_bars))
                else:
                    level = cfg.start_prices.get(name) or DEFAULT_LEVELS.get(name, Decimal(10_000))
                    path.generate_history(level, cfg.history_hours)
                markets[name] = path
            self.markets = markets
            self.accounts: dict[str, _Account] = {"KRW": _Account(balance=cfg.starting_krw)}
            self.orders: list[_Order] = []
            self.by_uuid: dict[str, _Order] = {}
            self.by_identifier: dict[str, _Order] = {}
            self.used_identifiers: set[str] = set()
            self.nonces: set[str] = set()
            self.faults = cfg.faults
            self.windows: dict[str, tuple[int, int]] = {}

    def _market(self, name: str | None) -> _MarketPath:
        if not name:
            raise _validation("market is required")
        path = self.markets.get(name)
        if path is None:
            raise _not_found_market()
        path.sync(self.now())
        return path

    def _sync_all(self) -> None:
        now = self.now()
        for path in self.markets.values():
            path.sync(now)

    # -- rate limit header and faults
    def remaining_req(self, group: str, *, exhausted: bool = False) -> str:
        per_min, per_sec = _GROUP_LIMITS.get(group, _GROUP_LIMITS["default"])
        with self.lock:
            second = int(self.now())
            start, count = self.windows.get(group, (second, 0))
            count = count + 1 if start == second else 1
            self.windows[group] = (second, count)
        left = 0 if exhausted else max(per_sec - count, 0)
        return f"group={group}; min={per_min}; sec={left}"

    def take_fault(self, method: str, path: str) -> Faults | None:
        """Consume one ``fail_next`` if this request matches; returns the fault settings that apply."""
        with self.lock:
            f = self.faults
            if f.fail_next <= 0:
                return None
            if f.fail_path is not None and f.fail_path != path:
                return None
            if f.fail_method is not None and f.fail_method.upper() != method:
                return None
            self.faults = replace(f, fail_next=f.fail_next - 1)
            return f

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.drop_next_order_response <= 0:
                return False
            self.faults = replace(self.faults, drop_next_order_response=self.faults.drop_next_order_response - 1)
            return True

    # -- authentication
    def verify(self, authorization: str | None, request: _Request) -> None:
        """Check the JWT like Upbit: signature, access key, unused nonce, and the parameters' SHA512 hash."""
        import jwt

        if not authorization or not authorization.startswith("Bearer "):
            raise _ApiError(401, "no_authorization_token", "Please check Authorization Header")
        token = authorization[len("Bearer ") :].strip()
        try:
            claims = jwt.decode(
                token,
                self.config.secret_key,
                algorithms=["HS256", "HS384", "HS512"],
                options={"require": ["access_key", "nonce"]},
            )
        except jwt.PyJWTError:
            raise _ApiError(401, "jwt_verification", "Failed to verify Jwt token.") from None
        if claims.get("access_key") != self.config.access_key:
            raise _ApiError(401, "jwt_verification", "Failed to verify Jwt token.")
        if request.params.pairs or "query_hash" in claims:
            query_hash = claims.get("query_hash")
            if claims.get("query_hash_alg", "SHA512") != "SHA512" or not isinstance(query_hash, str):
                raise _ApiError(401, "invalid_query_payload", "Failed to verify query.")
            candidates = request.hash_candidates or ("",)
            expected = [hashlib.sha512(c.encode("utf-8")).hexdigest() for c in candidates]
            if not any(hmac.compare_digest(e, query_hash.lower()) for e in expected):
                raise _ApiError(401, "invalid_query_payload", "Failed to verify query.")
        nonce = str(claims["nonce"])
        with self.lock:
            if nonce in self.nonces:
                raise _ApiError(401, "nonce_used", "This nonce has already been used.")
            self.nonces.add(nonce)

    # -- quotation
    def _count(self, params: _Params) -> int:
        text = params.get("count") or "1"
        if not text.isdigit() or not 1 <= int(text) <= MAX_CANDLES:
            raise _validation(f"count must be an integer from 1 to {MAX_CANDLES}")
        return int(text)

    def _to(self, params: _Params) -> datetime | None:
        text = params.get("to")
        if not text:
            return None
        try:
            return _parse_time(text)
        except ValueError:
            raise _validation("to is not a valid time") from None

    def candles_minutes(self, params: _Params) -> tuple[int, Any]:
        with self.lock:
            path = self._market(params.get("market"))
            count = self._count(params)
            to = self._to(params)
            now_ms = int(self.now() * 1000)
            out: list[dict[str, Any]] = []
            for i in range(len(path.bars) - 1, -1, -1):
                start = path.start_of(i)
                if to is not None and start >= to:
                    continue
                bar = path.bars[i]
                last_trade = _ms(start) + 3_599_000
                out.append(
                    {
                        "market": path.market,
                        "candle_date_time_utc": _utc_str(start),
                        "candle_date_time_kst": _kst_str(start),
                        "opening_price": bar.open,
                        "high_price": bar.high,
                        "low_price": bar.low,
                        "trade_price": bar.close,
                        "timestamp": min(last_trade, now_ms) if i == len(path.bars) - 1 else last_trade,
                        "candle_acc_trade_price": bar.value,
                        "candle_acc_trade_volume": bar.volume,
                        "unit": 60,
                    }
                )
                if len(out) == count:
                    break
            return 200, out

    def _days(self, path: _MarketPath) -> list[tuple[datetime, _Bar]]:
        """Day candles (00:00 UTC) aggregated from the hourly bars, oldest first; a partial first day is
        dropped because Upbit would have its full history."""
        days: list[tuple[datetime, _Bar]] = []
        # Without a single midnight (a short CSV) the one partial day is all there is.
        first = next((i for i in range(len(path.bars)) if path.start_of(i).hour == 0), 0)
        with localcontext(_EXACT):
            for i in range(first, len(path.bars)):
                bar = path.bars[i]
                day = path.start_of(i).replace(hour=0)
                if days and days[-1][0] == day:
                    agg = days[-1][1]
                    agg.high = max(agg.high, bar.high)
                    agg.low = min(agg.low, bar.low)
                    agg.close = bar.close
                    agg.volume += bar.volume
                    agg.value += bar.value
                else:
                    days.append((day, replace(bar)))
        return days

    def candles_days(self, params: _Params) -> tuple[int, Any]:
        with self.lock:
            path = self._market(params.get("market"))
            count = self._count(params)
            to = self._to(params)
            days = self._days(path)
            now_ms = int(self.now() * 1000)
            out: list[dict[str, Any]] = []
            for k in range(len(days) - 1, -1, -1):
                day, bar = days[k]
                if to is not None and day >= to:
                    continue
                prev_close = days[k - 1][1].close if k > 0 else bar.open
                with localcontext(_EXACT):
                    change = bar.close - prev_close
                    rate = (change / prev_close).quantize(Decimal("1e-10"))
                last_trade = _ms(day) + 86_399_000
                out.append(
                    {
                        "market": path.market,
                        "candle_date_time_utc": _utc_str(day),
                        "candle_date_time_kst": _kst_str(day),
                        "opening_price": bar.open,
                        "high_price": bar.high,
                        "low_price": bar.low,
                        "trade_price": bar.close,
                        "timestamp": min(last_trade, now_ms),
                        "candle_acc_trade_price": bar.value,
                        "candle_acc_trade_volume": bar.volume,
                        "prev_closing_price": prev_close,
                        "change_price": change,
                        "change_rate": rate,
                    }
                )
                if len(out) == count:
                    break
            return 200, out

    def _market_list(self, params: _Params) -> list[_MarketPath]:
        names = params.getlist("markets")
        if not names:
            raise _validation("markets is required")
        return [self._market(n.strip()) for n in names]

    def ticker(self, params: _Params) -> tuple[int, Any]:
        with self.lock:
            paths = self._market_list(params)
            now = datetime.fromtimestamp(self.now(), UTC)
            out = []
            for path in paths:
                days = self._days(path)
                today = days[-1][1]
                prev_close = days[-2][1].close if len(days) > 1 else today.open
                last24 = path.bars[-24:]
                year = path.bars[-24 * 365 :]
                hi_i = max(range(len(year)), key=lambda j: year[j].high)
                lo_i = min(range(len(year)), key=lambda j: year[j].low)
                offset = len(path.bars) - len(year)
                with localcontext(_EXACT):
                    change = today.close - prev_close
                    rate = (change / prev_close).quantize(Decimal("1e-10"))
                    acc_price_24h = sum((b.value for b in last24), Decimal(0))
                    acc_volume_24h = sum((b.volume for b in last24), Decimal(0))
                out.append(
                    {
                        "market": path.market,
                        "trade_date": now.strftime("%Y%m%d"),
                        "trade_time": now.strftime("%H%M%S"),
                        "trade_date_kst": now.astimezone(KST).strftime("%Y%m%d"),
                        "trade_time_kst": now.astimezone(KST).strftime("%H%M%S"),
                        "trade_timestamp": _ms(now),
                        "opening_price": today.open,
                        "high_price": today.high,
                        "low_price": today.low,
                        "trade_price": path.price,
                        "prev_closing_price": prev_close,
                        "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
                        "change_price": abs(change),
                        "change_rate": abs(rate),
                        "signed_change_price": change,
                        "signed_change_rate": rate,
                        "trade_volume": Decimal("0.001"),
                        "acc_trade_price": today.value,
                        "acc_trade_price_24h": acc_price_24h,
                        "acc_trade_volume": today.volume,
                        "acc_trade_volume_24h": acc_volume_24h,
                        "highest_52_week_price": year[hi_i].high,
                        "highest_52_week_date": path.start_of(offset + hi_i).strftime("%Y-%m-%d"),
                        "lowest_52_week_price": year[lo_i].low,
                        "lowest_52_week_date": path.start_of(offset + lo_i).strftime("%Y-%m-%d"),
                        "timestamp": _ms(now),
                    }
                )
            return 200, out

    def orderbook(self, params: _Params) -> tuple[int, Any]:
        with self.lock:
            paths = self._market_list(params)
            out = []
            for path in paths:
                levels = path.book()
                with localcontext(_EXACT):
                    total_ask = sum((lv.ask_size for lv in levels), Decimal(0))
                    total_bid = sum((lv.bid_size for lv in levels), Decimal(0))
                out.append(
                    {
                        "market": path.market,
                        "timestamp": int(self.now() * 1000),
                        "total_ask_size": total_ask,
                        "total_bid_size": total_bid,
                        "orderbook_units": [
                            {
                                "ask_price": lv.ask_price,
                                "bid_price": lv.bid_price,
                                "ask_size": lv.ask_size,
                                "bid_size": lv.bid_size,
                            }
                            for lv in levels
                        ],
                        "level": 0,
                    }
                )
            return 200, out

    # -- accounts
    def _account_json(self, currency: str, acc: _Account) -> dict[str, Any]:
        return {
            "currency": currency,
            "balance": _s(acc.balance),
            "locked": _s(acc.locked),
            "avg_buy_price": format(acc.avg_buy_price.normalize(), "f") if acc.avg_buy_price else "0",
            "avg_buy_price_modified": False,
            "unit_currency": "KRW",
        }

    def accounts_json(self) -> list[dict[str, Any]]:
        with self.lock:
            self.settle()
            return [self._account_json(c, a) for c, a in self.accounts.items()]

    def list_accounts(self, params: _Params) -> tuple[int, Any]:
        return 200, self.accounts_json()

    def chance(self, params: _Params) -> tuple[int, Any]:
        with self.lock:
            self.settle()
            path = self._market(params.get("market"))
            coin = path.market.split("-", 1)[1]
            krw = self.accounts["KRW"]
            held = self.accounts.get(coin, _Account())
            return 200, {
                "bid_fee": _s(FEE_RATE),
                "ask_fee": _s(FEE_RATE),
                "maker_bid_fee": _s(FEE_RATE),
                "maker_ask_fee": _s(FEE_RATE),
                "market": {
                    "id": path.market,
                    "name": f"{coin}/KRW",
                    # Only the two market order types are simulated; a client must not assume more.
                    "order_types": ["price", "market"],
                    "order_sides": ["ask", "bid"],
                    "bid_types": ["price"],
                    "ask_types": ["market"],
                    "bid": {"currency": "KRW", "price_unit": None, "min_total": format(MIN_TOTAL_KRW, "f")},
                    "ask": {"currency": coin, "price_unit": None, "min_total": format(MIN_TOTAL_KRW, "f")},
                    "max_total": format(MAX_TOTAL_KRW, "f"),
                    "state": "active",
                },
                "bid_account": self._account_json("KRW", krw),
                "ask_account": self._account_json(coin, held),
            }

    # -- orders
    @staticmethod
    def _number(text: str | None, *, error: str, places: int) -> Decimal:
        # Plain decimals only: "5e-05", "-1", ".5", "1,000" and too many decimals are all rejected, which is
        # how tests prove that the bot never puts scientific notation on the wire.
        if text is None or not _PLAIN_NUMBER.match(text):
            raise _ApiError(400, error, "Invalid number.")
        value = Decimal(text)
        if value <= 0 or (value.as_tuple().exponent < -places):  # type: ignore[operator]
            raise _ApiError(400, error, "Invalid number.")
        return value

    def create_order(self, params: _Params) -> tuple[int, Any]:
        """``POST /v1/orders`` — market buy (bid/price) or market sell (ask/market) only."""
        with self.lock:
            self.settle()
            identifier = params.get("identifier")
            if identifier is not None:
                # Upbit: an identifier can be used once per account, forever — even if that order failed.
                if identifier in self.used_identifiers:
                    raise _ApiError(400, "duplicate_identifier", "The identifier has already been used.")
                self.used_identifiers.add(identifier)
            if self.faults.reject_next_order:
                name = self.faults.reject_next_order
                self.faults = replace(self.faults, reject_next_order=None)
                raise _ApiError(400, name, "Rejected by the simulator's reject_next_order fault.")
            market_name = params.get("market")
            side = params.get("side")
            ord_type = params.get("ord_type")
            if not market_name or not side or not ord_type:
                raise _validation("market, side and ord_type are required")
            if market_name not in self.markets:
                raise _validation(f"unknown market {market_name}")
            path = self._market(market_name)
            if side not in ("bid", "ask"):
                raise _validation("side must be bid or ask")
            if (side, ord_type) not in (("bid", "price"), ("ask", "market")):
                raise _validation("the simulator supports only market orders: bid/price and ask/market")
            now = self.now()
            coin = market_name.split("-", 1)[1]
            with localcontext(_EXACT):
                if side == "bid":
                    if params.get("volume") is not None:
                        raise _ApiError(400, "create_bid_error", "A market buy takes price, not volume.")
                    krw = self._number(params.get("price"), error="invalid_price_bid", places=VOLUME_PLACES)
                    if krw < MIN_TOTAL_KRW:
                        raise _ApiError(400, "under_min_total_bid", "Order total is below the minimum (5000 KRW).")
                    if krw > MAX_TOTAL_KRW:
                        raise _ApiError(400, "over_max_total_bid", "Order total is above the maximum.")
                    fee = krw * FEE_RATE
                    account = self.accounts["KRW"]
                    if krw + fee > account.balance:
                        raise _ApiError(400, "insufficient_funds_bid", "Insufficient balance for this order.")
                    account.balance -= krw + fee
                    account.locked += krw + fee
                    order = self._new_order(path.market, side, ord_type, krw, None, identifier, now, fee, krw + fee)
                else:
                    if params.get("price") is not None:
                        raise _ApiError(400, "create_ask_error", "A market sell takes volume, not price.")
                    volume = self._number(params.get("volume"), error="invalid_volume_ask", places=VOLUME_PLACES)
                    value = volume * path.book()[0].bid_price
                    # Upbit values a market sell at the best *bid*: a position can be unsellable dust.
                    if value < MIN_TOTAL_KRW:
                        raise _ApiError(
                            400, "under_min_total_market_ask", "Order total is below the minimum (5000 KRW)."
                        )
                    if value > MAX_TOTAL_KRW:
                        raise _ApiError(400, "over_max_total_market_ask", "Order total is above the maximum.")
                    holding = self.accounts.get(coin)
                    if holding is None or volume > holding.balance:
                        raise _ApiError(400, "insufficient_funds_ask", "Insufficient balance for this order.")
                    holding.balance -= volume
                    holding.locked += volume
                    order = self._new_order(
                        path.market, side, ord_type, None, volume, identifier, now, Decimal(0), volume
                    )
            response = order.to_json(with_trades=False)
            if side == "ask":
                response["executed_volume"] = "0"  # Upbit writes the sell's initial value without ".0"
            if order.fill_due <= now:
                self._fill(order)
            return 201, response

    def _new_order(
        self,
        market: str,
        side: str,
        ord_type: str,
        price: Decimal | None,
        volume: Decimal | None,
        identifier: str | None,
        now: float,
        reserved_fee: Decimal,
        locked: Decimal,
    ) -> _Order:
        order = _Order(
            uuid=str(uuidlib.uuid4()),
            seq=len(self.orders),
            market=market,
            side=side,
            ord_type=ord_type,
            price=price,
            volume=volume,
            identifier=identifier,
            created=now,
            fill_due=now + self.faults.fill_delay_s,
            reserved_fee=reserved_fee,
            remaining_fee=reserved_fee,
            locked=locked,
        )
        self.orders.append(order)
        self.by_uuid[order.uuid] = order
        if identifier is not None:
            self.by_identifier[identifier] = order
        return order

    def settle(self) -> None:
        """Fill every waiting order whose fill delay has passed (called before each read)."""
        with self.lock:
            now = self.now()
            for order in self.orders:
                if order.state == "wait" and order.fill_due <= now:
                    self._fill(order)

    def _fill(self, order: _Order) -> None:
        path = self.markets[order.market]
        path.sync(self.now())
        levels = path.book()
        created = max(self.now(), order.created)
        coin = order.market.split("-", 1)[1]
        krw = self.accounts["KRW"]
        with localcontext(_EXACT):
            if order.side == "bid":
                assert order.price is not None
                remaining = order.price
                for lv in levels:
                    spend = min(remaining, lv.ask_price * lv.ask_size)
                    # Integer division of the exact quotient = truncation to 8 decimals, as Upbit does.
                    volume = (spend.scaleb(VOLUME_PLACES) // lv.ask_price).scaleb(-VOLUME_PLACES)
                    if volume <= 0:
                        break
                    funds = lv.ask_price * volume
                    order.trades.append(_Trade(str(uuidlib.uuid4()), lv.ask_price, volume, funds, "bid", created))
                    remaining -= funds
                    if remaining <= 0:
                        break
                executed = sum((t.volume for t in order.trades), Decimal(0))
                funds_total = sum((t.funds for t in order.trades), Decimal(0))
                fee = funds_total * FEE_RATE
                krw.locked -= order.locked
                krw.balance += order.locked - funds_total - fee
                if executed > 0:
                    acc = self.accounts.setdefault(coin, _Account())
                    held = acc.balance + acc.locked
                    acc.avg_buy_price = ((acc.avg_buy_price * held + funds_total) / (held + executed)).quantize(
                        _Q8, rounding=ROUND_HALF_EVEN
                    )
                    acc.balance += executed
                # KRW left over after the truncation is refunded and the order is *cancelled*, like Upbit.
                order.state = "done" if funds_total == order.price else "cancel"
            else:
                assert order.volume is not None
                remaining = order.volume
                for lv in levels:
                    volume = min(remaining, lv.bid_size)
                    funds = lv.bid_price * volume
                    order.trades.append(_Trade(str(uuidlib.uuid4()), lv.bid_price, volume, funds, "ask", created))
                    remaining -= volume
                    if remaining <= 0:
                        break
                executed = sum((t.volume for t in order.trades), Decimal(0))
                funds_total = sum((t.funds for t in order.trades), Decimal(0))
                fee = funds_total * FEE_RATE
                acc = self.accounts[coin]
                acc.locked -= order.volume
                acc.balance += order.volume - executed  # only if the book ran out (cannot happen ≤ max total)
                krw.balance += funds_total - fee
                order.state = "done" if executed == order.volume else "cancel"
                if acc.balance == 0 and acc.locked == 0:
                    del self.accounts[coin]  # Upbit lists only currencies the account holds
            order.executed_volume = executed
            order.executed_funds = funds_total
            order.paid_fee = fee
            order.remaining_fee = Decimal(0)
            order.locked = Decimal(0)

    def _find(self, params: _Params) -> _Order:
        uuid = params.get("uuid")
        identifier = params.get("identifier")
        if not uuid and not identifier:
            raise _validation("uuid or identifier is required")
        order = self.by_uuid.get(uuid) if uuid else self.by_identifier.get(identifier or "")
        if order is None:
            raise _ApiError(404, "order_not_found", "Order not found.")
        return order

    def get_order(self, params: _Params) -> tuple[int, Any]:
        with self.lock:
            self.settle()
            return 200, self._find(params).to_json(with_trades=True)

    @staticmethod
    def _sorted(orders: list[_Order], params: _Params) -> list[_Order]:
        order_by = params.get("order_by") or "desc"
        if order_by not in ("asc", "desc"):
            raise _validation("order_by must be asc or desc")
        return sorted(orders, key=lambda o: (o.created, o.seq), reverse=order_by == "desc")

    @staticmethod
    def _limit(params: _Params, default: int, maximum: int) -> int:
        text = params.get("limit") or str(default)
        if not text.isdigit() or not 1 <= int(text) <= maximum:
            raise _validation(f"limit must be an integer from 1 to {maximum}")
        return int(text)

    def _states(self, params: _Params, allowed: tuple[str, ...]) -> list[str]:
        single = params.get("state")
        states = params.getlist("states") or ([single] if single else list(allowed))
        if any(s not in allowed for s in states):
            raise _validation(f"states must be among {', '.join(allowed)}")
        return states

    def closed_orders(self, params: _Params) -> tuple[int, Any]:
        """``GET /v1/orders/closed``: done/cancel orders created in a window of at most 7 days."""
        with self.lock:
            self.settle()
            market = params.get("market")
            states = self._states(params, ("done", "cancel"))
            limit = self._limit(params, 100, 1000)
            try:
                start = _parse_time(params.get("start_time") or "") if params.get("start_time") else None
                end = _parse_time(params.get("end_time") or "") if params.get("end_time") else None
            except ValueError:
                raise _validation("start_time/end_time is not a valid time") from None
            if start is None and end is None:
                end = datetime.fromtimestamp(self.now(), UTC)
            if start is None:
                assert end is not None
                start = end - MAX_CLOSED_WINDOW
            if end is None:
                end = start + MAX_CLOSED_WINDOW
            if end < start or end - start > MAX_CLOSED_WINDOW:
                raise _validation("the time window must be at most 7 days")
            lo, hi = start.timestamp(), end.timestamp()
            chosen = [
                o
                for o in self.orders
                if o.state in states and (market is None or o.market == market) and lo <= o.created <= hi
            ]
            return 200, [o.to_json(with_trades=False) for o in self._sorted(chosen, params)[:limit]]

    def open_orders(self, params: _Params) -> tuple[int, Any]:
        """``GET /v1/orders/open``: orders still waiting (only with ``fill_delay_s``)."""
        with self.lock:
            self.settle()
            market = params.get("market")
            states = self._states(params, ("wait", "watch"))
            limit = self._limit(params, 100, 100)
            chosen = [o for o in self.orders if o.state in states and (market is None or o.market == market)]
            return 200, [o.to_json(with_trades=False) for o in self._sorted(chosen, params)[:limit]]

    def orders_by_ids(self, params: _Params) -> tuple[int, Any]:
        """``GET /v1/orders/uuids``: up to 100 ``uuids[]`` or ``identifiers[]`` (not both)."""
        with self.lock:
            self.settle()
            uuids = params.getlist("uuids")
            identifiers = params.getlist("identifiers")
            if bool(uuids) == bool(identifiers):
                raise _validation("give either uuids[] or identifiers[]")
            wanted = uuids or identifiers
            if len(wanted) > 100:
                raise _validation("at most 100 uuids or identifiers")
            index = self.by_uuid if uuids else self.by_identifier
            market = params.get("market")
            chosen = [index[k] for k in dict.fromkeys(wanted) if k in index]
            chosen = [o for o in chosen if market is None or o.market == market]
            return 200, [o.to_json(with_trades=False) for o in self._sorted(chosen, params)]

    # -- control (/_sim/)
    def orders_json(self) -> list[dict[str, Any]]:
        with self.lock:
            self.settle()
            return [o.to_json(with_trades=True) for o in self.orders]

    def state_json(self) -> dict[str, Any]:
        with self.lock:
            self.settle()
            self._sync_all()
            return {
                "accounts": self.accounts_json(),
                "prices": {name: format(p.price, "f") for name, p in self.markets.items()},
                "current_hour": _utc_str(next(iter(self.markets.values())).anchor),
                "faults": asdict(self.faults),
            }

    def set_faults(self, changes: Mapping[str, Any]) -> Faults:
        with self.lock:
            self.faults = Faults.from_json(self.faults, changes)
            return self.faults

    def set_price(self, market: str, price: Decimal) -> Decimal:
        with self.lock:
            self.settle()
            path = self._market(market)
            if price <= 0:
                raise _validation("price must be > 0")
            path.set_price(price)
            return path.price

    def advance(self, hours: int, market: str | None, price: Decimal | None, pct: Decimal | None) -> dict[str, Decimal]:
        with self.lock:
            self.settle()
            if hours < 1 or hours > 24 * 60:
                raise _validation("hours must be 1..1440")
            names = [market] if market else list(self.markets)
            paths = [self._market(n) for n in names]
            for path in paths:
                target = price
                if pct is not None:
                    with localcontext(_EXACT):
                        target = path.price * (1 + pct / 100)
                if target is not None and target <= 0:
                    raise _validation("the target price must be > 0")
                path.advance(hours, target)
            return {p.market: p.price for p in paths}

    def set_balance(self, currency: str, balance: Decimal, avg_buy_price: Decimal | None) -> None:
        with self.lock:
            if balance < 0:
                raise _validation("balance must be >= 0")
            acc = self.accounts.setdefault(currency, _Account())
            acc.balance = balance
            if avg_buy_price is not None:
                acc.avg_buy_price = avg_buy_price
            if currency != "KRW" and acc.balance == 0 and acc.locked == 0:
                del self.accounts[currency]


# ------------------------------------------------------------------------------------------------ HTTP layer


def _parse_request(query: str, body: bytes, content_type: str) -> _Request:
    """Collect parameters in the order received and every string a client may have hashed for them."""
    pairs: list[tuple[str, str]] = list(parse_qsl(query, keep_blank_values=True))
    bracketed: list[tuple[str, str]] | None = None
    raws = [query]
    if body:
        text = body.decode("utf-8")
        if "json" in content_type or text.lstrip().startswith("{"):
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("the JSON body must be an object")
            bracketed = list(pairs)
            for key, value in obj.items():
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if v is None:
                        continue
                    if isinstance(v, str):
                        s = v
                    else:  # JSON numbers and booleans hash as their JSON text (true, 5000, 0.5)
                        s = json.dumps(v)
                    pairs.append((key, s))
                    # A JSON array is hashed as key[]=a&key[]=b (Upbit's convention for arrays).
                    bracketed.append((key + "[]" if isinstance(value, list) and not key.endswith("[]") else key, s))
        else:
            pairs.extend(parse_qsl(text, keep_blank_values=True))
            raws.append(text)
    candidates: list[str] = []
    for variant in (pairs, bracketed):
        if variant:
            encoded = urlencode(variant)
            candidates += [encoded, unquote(encoded)]
    candidates += [r for r in raws if r]
    return _Request(_Params(pairs), tuple(dict.fromkeys(candidates)))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], exchange: _Exchange) -> None:
        self.exchange = exchange
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its load balancer
    timeout = 60  # idle keep-alive connections must not pin a thread forever
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK adds ~40 ms each.
    disable_nagle_algorithm = True
    server_version = "upbit-simulator"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing
    def _send(self, status: int, body: bytes, content_type: str, remaining: str | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if remaining is not None:
            self.send_header("Remaining-Req", remaining)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, remaining: str | None) -> None:
        self._send(status, _dumps(payload), "application/json; charset=utf-8", remaining)

    def _send_fault(self, fault: Faults, group: str) -> None:
        ex = self.server.exchange
        status = fault.fail_status
        if status == 429:
            remaining = ex.remaining_req(group, exhausted=True)
            if fault.fail_body == "text":
                self._send(status, b"Too many API requests.", "text/plain; charset=utf-8", remaining)
            else:
                self._send_json(
                    status, {"error": {"name": "too_many_requests", "message": "Too many API requests."}}, remaining
                )
            return
        remaining = ex.remaining_req(group)
        if fault.fail_body == "text":
            self._send(status, b"Internal Server Error", "text/plain; charset=utf-8", remaining)
        else:
            self._send_json(status, {"error": {"name": "server_error", "message": "Internal Server Error"}}, remaining)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path
        body = self._read_body()
        if path.startswith("/_sim/"):
            self._control(method, path, body)
            return
        ex = self.server.exchange
        route = _ROUTES.get((method, path))
        if route is None:
            self._send_json(404, _not_found_market().payload(), ex.remaining_req("default"))
            return
        group, private, handler = route
        fault = ex.take_fault(method, path)
        if fault is not None and not fault.fail_after_accept:
            self._send_fault(fault, group)
            return
        status: int
        payload: Any
        try:
            try:
                request = _parse_request(split.query, body, self.headers.get("Content-Type", ""))
            except (ValueError, UnicodeDecodeError):
                raise _validation("malformed parameters") from None
            if private:
                ex.verify(self.headers.get("Authorization"), request)
            status, payload = getattr(ex, handler)(request.params)
        except _ApiError as e:
            status, payload = e.status, e.payload()
        except Exception:  # noqa: BLE001
            # A simulator bug must show as a 500, not as a silently closed connection (which is a fault
            # a test may be injecting on purpose).
            _log.exception("simulator error on %s %s", method, path)
            status, payload = 500, {"error": {"name": "simulator_error", "message": "see the simulator log"}}
        if (method, path) == ("POST", "/v1/orders") and ex.take_drop():
            # The order (if valid) is recorded; the client only sees the connection close.
            self.close_connection = True
            return
        if fault is not None:
            self._send_fault(fault, group)
            return
        self._send_json(status, payload, ex.remaining_req(group))

    def _control(self, method: str, path: str, body: bytes) -> None:
        ex = self.server.exchange
        try:
            data: Any = json.loads(body.decode("utf-8")) if body else {}
            if not isinstance(data, dict):
                raise _validation("the body must be a JSON object")
            result = self._control_call(ex, method, path, data)
        except _ApiError as e:
            self._send_json(e.status, e.payload(), None)
            return
        except (ValueError, InvalidOperation, TypeError, KeyError) as e:
            self._send_json(400, {"error": {"name": "validation_error", "message": str(e)}}, None)
            return
        self._send(200, json.dumps(result).encode("utf-8"), "application/json; charset=utf-8", None)

    @staticmethod
    def _control_call(ex: _Exchange, method: str, path: str, data: dict[str, Any]) -> Any:
        def dec(key: str) -> Decimal | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, float):
                raise _validation(f"{key} must be a string or integer, not a float")
            return Decimal(str(value))

        if (method, path) == ("GET", "/_sim/orders"):
            return ex.orders_json()
        if (method, path) == ("GET", "/_sim/state"):
            return ex.state_json()
        if (method, path) == ("GET", "/_sim/faults"):
            return asdict(ex.faults)
        if (method, path) == ("POST", "/_sim/faults"):
            return asdict(ex.set_faults(data))
        if (method, path) == ("POST", "/_sim/price"):
            price = dec("price")
            if price is None:
                raise _validation("price is required")
            market = data.get("market") or ex.config.markets[0]
            return {"market": market, "price": format(ex.set_price(market, price), "f")}
        if (method, path) == ("POST", "/_sim/advance"):
            prices = ex.advance(int(data.get("hours", 1)), data.get("market"), dec("price"), dec("pct"))
            return {"prices": {m: format(p, "f") for m, p in prices.items()}}
        if (method, path) == ("POST", "/_sim/balance"):
            balance = dec("balance")
            if balance is None or not data.get("currency"):
                raise _validation("currency and balance are required")
            ex.set_balance(str(data["currency"]), balance, dec("avg_buy_price"))
            return ex.state_json()
        if (method, path) == ("POST", "/_sim/reset"):
            ex.reset()
            return ex.state_json()
        raise _ApiError(404, "not_found", f"no control endpoint {method} {path}")


# -------------------------------------------------------------------------------------------- public server


class SimulatorServer:
    """The simulator on a daemon thread; a context manager for tests.

    ``with SimulatorServer(cfg) as sim: requests.get(sim.url + "/v1/ticker?markets=KRW-BTC")``.

    Control endpoints (no JWT, only under ``/_sim/``; JSON in and out, amounts as decimal strings):

    * ``GET /_sim/orders`` → every accepted order with its trades (the order book of record).
    * ``GET /_sim/state`` → ``{"accounts": [...], "prices": {market: price}, "current_hour", "faults"}``.
    * ``GET /_sim/faults`` / ``POST /_sim/faults`` ``{"fail_next": 1, "fail_status": 429, ...}`` (partial
      update of ``Faults``; returns the current settings).
    * ``POST /_sim/price`` ``{"market": "KRW-BTC", "price": "125000000"}`` → the forming candle's last trade.
    * ``POST /_sim/advance`` ``{"hours": 3, "market": optional, "price" or "pct": optional}`` → appends
      hourly candles (a random continuation, or a straight path to the price / percent move).
    * ``POST /_sim/balance`` ``{"currency": "BTC", "balance": "0.01", "avg_buy_price": "120000000"}``.
    * ``POST /_sim/reset`` → back to the starting state (same seed, same market, faults from the config).

    The same operations are available in-process as methods.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._exchange = _Exchange(self.config)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            self._httpd = _HTTPServer((self.config.host, self.config.port), self._exchange)
        return self._httpd

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self."""
        httpd = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="upbit-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()
                self._thread.join(timeout=5)
            self._httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (binds now if needed)."""
        return int(self._bind().server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (append ``/v1/...``)."""
        return f"http://127.0.0.1:{self.port}"

    def orders(self) -> list[dict[str, Any]]:
        """Every accepted order with its trades, as ``GET /_sim/orders`` returns them."""
        return self._exchange.orders_json()

    def state(self) -> dict[str, Any]:
        """Balances, prices and faults, as ``GET /_sim/state`` returns them."""
        return self._exchange.state_json()

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fault switches (see ``Faults``); returns the new settings."""
        return self._exchange.set_faults(changes)

    def advance(
        self,
        hours: int = 1,
        *,
        market: str | None = None,
        price: Decimal | None = None,
        pct: Decimal | None = None,
    ) -> dict[str, Decimal]:
        """Append ``hours`` hourly candles to one market (or all); returns the new prices."""
        return self._exchange.advance(hours, market, price, pct)

    def set_price(self, price: Decimal, market: str | None = None) -> Decimal:
        """Set the last trade price (on its tick) of the forming candle; returns it."""
        return self._exchange.set_price(market or self.config.markets[0], price)

    def set_balance(self, currency: str, balance: Decimal, avg_buy_price: Decimal | None = None) -> None:
        """Set a free balance directly (e.g. hold some BTC before a sell test)."""
        self._exchange.set_balance(currency, balance, avg_buy_price)

    def reset(self) -> None:
        """Back to the starting state."""
        self._exchange.reset()

    def price(self, market: str | None = None) -> Decimal:
        """The current price (last trade of the forming candle)."""
        with self._exchange.lock:
            return self._exchange._market(market or self.config.markets[0]).price


def serve(config: SimulatorConfig | None = None) -> None:
    """Run the simulator in the foreground until interrupted (``tradebot simulator``)."""
    sim = SimulatorServer(config)
    httpd = sim._bind()
    print(f"Upbit simulator listening on {sim.url} (markets: {', '.join(sim._exchange.markets)})", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def _main(argv: list[str] | None = None) -> None:
    """``python -m tradebot.exchange.simulator`` (the Typer command is ``tradebot simulator``)."""
    import argparse

    parser = argparse.ArgumentParser(description="A local Upbit REST API simulator.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--candles-csv", type=Path)
    parser.add_argument("--starting-krw", default="1000000")
    parser.add_argument("--markets", default="KRW-BTC", help="comma-separated")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--fill-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    from tradebot.errors import ConfigError

    try:
        serve(
            SimulatorConfig(
                port=args.port,
                seed=args.seed,
                candles_csv=args.candles_csv,
                starting_krw=Decimal(args.starting_krw),
                markets=tuple(m.strip() for m in args.markets.split(",") if m.strip()),
                access_key=args.access_key,
                secret_key=args.secret_key,
                faults=Faults(fill_delay_s=args.fill_delay),
            )
        )
    except ConfigError as e:  # a bad --candles-csv: one line, like the CLI
        parser.exit(2, f"Error: {e}\n")


if __name__ == "__main__":
    _main()
