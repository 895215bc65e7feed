"""Typed records shared by every part of tradebot.

All money and volumes are ``Decimal`` built from the exchange's strings (never from floats); all times are
timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Literal

Side = Literal["buy", "sell"]
Mode = Literal["paper", "live"]


class Market(str):
    """An Upbit market code such as ``KRW-BTC``: ``quote`` is the currency prices are in (always KRW for
    tradebot), ``base`` the coin traded. Parsed and validated once where it enters (settings, a command-line
    option); inside the code a ``Market`` is known to be good. It is a ``str``, so SQL parameters, JSON, the
    ``trades.symbol`` column and metric labels see the plain code."""

    __slots__ = ()
    PATTERN = re.compile(r"^[A-Z]{2,5}-[A-Z0-9]{1,15}$")

    def __new__(cls, code: str) -> Market:
        if isinstance(code, Market):
            return code
        if not cls.PATTERN.fullmatch(code):
            raise ValueError(f"must be an Upbit market code like KRW-BTC; got {code!r}")
        if not code.startswith("KRW-"):
            raise ValueError(f"must be a KRW market (KRW-...), tradebot trades KRW markets only; got {code!r}")
        return super().__new__(cls, code)

    @classmethod
    def parse(cls, text: str) -> Market:
        """A market from user input: case-insensitive, validated; ValueError with the reason otherwise."""
        return cls(text.upper())

    @property
    def quote(self) -> str:
        return self.split("-", 1)[0]

    @property
    def base(self) -> str:
        return self.split("-", 1)[1]


def to_decimal(value: object) -> Decimal:
    """Turn an exchange value into a Decimal without passing through binary floating point semantics.

    Exchange responses carry strings; quotation responses carry JSON numbers that Python parsed as float.
    ``str(float)`` gives the shortest repr that round-trips, which is the number the exchange wrote.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, str)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    raise ValueError(f"not a number: {value!r}")


def plain(value: Decimal, places: int | None = None) -> str:
    """Format a Decimal as a plain decimal string (never scientific notation), as Upbit expects.

    With ``places``, the value is truncated (rounded down) to that many decimals first, as Upbit truncates
    volumes to 8 decimals.
    """
    from decimal import ROUND_DOWN

    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class Candle:
    """One OHLCV candle; ``start`` is the UTC start of its period."""

    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal  # traded coin volume
    value: Decimal = Decimal(0)  # traded KRW value


@dataclass(frozen=True)
class Balance:
    """One currency of the account; ``free`` excludes ``locked``."""

    currency: str
    free: Decimal
    locked: Decimal
    avg_buy_price: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class OrderbookLevel:
    ask_price: Decimal
    ask_size: Decimal
    bid_price: Decimal
    bid_size: Decimal


@dataclass(frozen=True)
class MarketQuote:
    """One Upbit market as ``tradebot markets`` lists it: names, Upbit's warning flags, the last price, the
    change since the previous day's close (a fraction) and the KRW traded over the last 24 hours."""

    market: Market
    korean_name: str
    english_name: str
    warning: bool  # Upbit's investment warning (투자유의)
    cautions: tuple[str, ...]  # Upbit's caution reasons (주의), e.g. PRICE_FLUCTUATIONS
    price: Decimal
    change_rate: Decimal
    traded_value_24h: Decimal


@dataclass(frozen=True)
class Orderbook:
    """Levels best first (index 0 holds the best ask and the best bid)."""

    market: str
    levels: tuple[OrderbookLevel, ...]

    @property
    def best_bid(self) -> Decimal:
        return self.levels[0].bid_price

    @property
    def best_ask(self) -> Decimal:
        return self.levels[0].ask_price


class OrderState(str, Enum):
    """Upbit order states."""

    WAIT = "wait"
    WATCH = "watch"
    DONE = "done"
    CANCEL = "cancel"

    @property
    def final(self) -> bool:
        return self in (OrderState.DONE, OrderState.CANCEL)


@dataclass(frozen=True)
class Execution:
    """One exchange trade (partial execution) of an order."""

    price: Decimal
    volume: Decimal
    funds: Decimal  # price × volume in KRW, before fee
    created_at: datetime | None = None


@dataclass(frozen=True)
class Fill:
    """An order as the exchange reports it, with its fill computed from the individual trades.

    ``resolved`` is False when the order was accepted but its final state could not be seen in time: the
    caller keeps the trade ``pending`` and reconciliation finishes it later. A resolved order with
    ``volume == 0`` was accepted and cancelled with nothing filled.
    """

    uuid: str
    client_order_id: str | None
    market: str
    side: Side
    state: OrderState
    volume: Decimal  # Σ trades.volume
    gross: Decimal  # Σ trades.funds (KRW, before fee)
    fee: Decimal  # paid_fee (KRW)
    executions: tuple[Execution, ...] = ()
    created_at: datetime | None = None
    resolved: bool = True

    @property
    def avg_price(self) -> Decimal:
        """Average fill price = gross / volume (zero when nothing filled)."""
        if self.volume == 0:
            return Decimal(0)
        return self.gross / self.volume

    @property
    def filled(self) -> bool:
        """Upbit: filled means a final state and executed volume > 0 (a filled market buy ends in ``cancel``)."""
        return self.state.final and self.volume > 0


# The columns of a trade in the ``trades`` table's order: what the store selects and ``trades list --format csv``
# writes.
TRADE_COLUMNS = (
    "id", "client_order_id", "trade_id", "symbol", "side", "mode", "status", "price", "amount", "total", "fee",
    "requested_krw", "requested_volume", "error", "decision_id", "recovered", "created_at", "updated_at",
)


@dataclass(frozen=True)
class Trade:
    """A row of the ``trades`` table."""

    id: int
    client_order_id: str
    trade_id: str | None
    symbol: str
    side: Side
    mode: Mode
    status: str
    price: Decimal | None
    amount: Decimal | None
    total: Decimal | None
    fee: Decimal | None
    requested_krw: Decimal | None
    requested_volume: Decimal | None
    error: str | None
    decision_id: int | None
    created_at: datetime
    updated_at: datetime
    recovered: bool = False


Action = Literal["buy", "sell", "hold"]


@dataclass(frozen=True)
class IndicatorSnapshot:
    """The latest value of every indicator the cycle uses, over completed hourly candles.

    Indicators are analytics, computed in float64 for speed (NumPy); they never size an order directly —
    order amounts are Decimal and come from balances and the risk gate. ``None`` means not enough candles.
    """

    close: float
    rsi14: float | None
    sma20: float | None
    sma60: float | None
    ema20: float | None
    ema60: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    bb_mid: float | None
    bb_upper: float | None
    bb_lower: float | None
    atr14: float | None
    volume_change: float | None  # last candle's volume / mean of the previous 20, minus 1

    def as_dict(self) -> dict[str, float | None]:
        """Plain mapping for JSON (the decision log's indicator snapshot)."""
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class Position:
    """The account as the cycle sees it, in KRW and coin."""

    market: Market
    free_krw: Decimal
    locked_krw: Decimal
    coin_volume: Decimal  # free + locked coin
    coin_free: Decimal
    avg_buy_price: Decimal
    price: Decimal  # last trade price

    @property
    def position_value(self) -> Decimal:
        return self.coin_volume * self.price

    @property
    def equity(self) -> Decimal:
        return self.free_krw + self.locked_krw + self.position_value


@dataclass(frozen=True)
class RecordedDecision:
    """One ``decisions`` row read back — the one shape every reader gets (compare-live, the prompt's history):
    what the advisor proposed, what the gate let through, and the context."""

    id: int
    created_at: datetime
    advisor: str
    decision: str | None  # what the advisor proposed (None: no usable decision)
    confidence: Decimal | None
    fraction: Decimal | None
    action: str  # after the risk gate
    order_krw: Decimal | None
    order_volume: Decimal | None
    price: Decimal | None  # the last price when the cycle read the portfolio
    position: Position | None  # None when the cycle failed before reading the portfolio
    indicator_close: float | None  # close of the last candle the cycle saw
    filtered: bool
    vetoes: tuple[str, ...]  # rule names
    error: str | None
    dry_run: bool
    traded: bool  # an order placed for it completed


@dataclass(frozen=True)
class RecordedOrder:
    """One ``trades`` row placed for a decision."""

    id: int
    decision_id: int
    created_at: datetime
    side: str
    status: str
    price: Decimal | None  # average fill price
    amount: Decimal | None
    total: Decimal | None
    fee: Decimal | None
    requested_krw: Decimal | None
    requested_volume: Decimal | None


@dataclass(frozen=True)
class PastDecision:
    """An earlier decision and what the price did after it (fed back to the advisor)."""

    at: datetime
    action: Action
    confidence: Decimal | None
    price_then: Decimal | None
    price_change_since: Decimal | None  # fraction, e.g. Decimal("-0.012") = -1.2 %
    traded: bool

    @classmethod
    def of(cls, d: RecordedDecision, price_now: Decimal) -> PastDecision:
        """The advisor's view of a recorded decision: what it proposed (hold when nothing usable), at what
        price, and the price change since, at ``price_now``."""
        change = (price_now - d.price) / d.price if d.price else None
        action: Action = d.decision if d.decision in ("buy", "sell") else "hold"  # type: ignore[assignment]
        return cls(at=d.created_at, action=action, confidence=d.confidence, price_then=d.price,
                   price_change_since=change, traded=d.traded)


@dataclass(frozen=True)
class ScoredDecision:
    """An earlier decision of the acting advisor and how it turned out (reflection, issue 13): the forward
    return at its longest horizon scored so far and whether it was right after fees."""

    at: datetime
    action: str
    price: Decimal
    horizon_h: int
    forward_return: Decimal
    hit: bool


@dataclass(frozen=True)
class AdvisorInput:
    """Everything an advisor may look at for one decision."""

    position: Position
    indicators: IndicatorSnapshot
    hourly: tuple[Candle, ...]  # completed, oldest first
    daily: tuple[Candle, ...]  # completed, oldest first
    history: tuple[PastDecision, ...]  # newest last
    reflection: tuple[ScoredDecision, ...] | None = None  # None: TRADEBOT_REFLECTION=off; newest last


@dataclass(frozen=True)
class PortfolioView:
    """The account as a portfolio decision sees it: the KRW, what the positions are worth together, and the
    owner's portfolio limits (``max_exposure_krw`` None: no cap)."""

    free_krw: Decimal
    krw_reserve: Decimal
    exposure_krw: Decimal  # every traded market's position at the last price
    equity_krw: Decimal  # KRW (free + locked) + exposure
    open_positions: int
    max_open_positions: int | None
    max_order_krw: Decimal
    max_position_krw: Decimal
    max_exposure_krw: Decimal | None


@dataclass(frozen=True)
class PortfolioInput:
    """Everything an advisor may look at for one cycle over several markets (one ``AdvisorInput`` each)."""

    portfolio: PortfolioView
    markets: tuple[AdvisorInput, ...]


@dataclass(frozen=True)
class Decision:
    """A validated advisor answer. ``fraction`` is the share of free KRW (buy) or held volume (sell)."""

    action: Action
    confidence: Decimal
    fraction: Decimal
    reason: str


@dataclass(frozen=True)
class GateResult:
    """The risk gate's verdict on a :class:`Decision`: what the cycle will do (its ``action``). ``krw`` is set for a buy, ``volume`` for a sell."""

    action: Action
    krw: Decimal | None = None
    volume: Decimal | None = None
    clamps: tuple[dict[str, str], ...] = field(default_factory=tuple)
    vetoes: tuple[dict[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AdvisorResult:
    """An advisor's answer plus everything the decision log records about how it was obtained.

    ``decision`` is None when the advisor failed; ``error`` then says why (the cycle holds and alerts).
    """

    advisor: str
    model: str | None
    decision: Decision | None
    error: str | None = None
    prompt_hash: str | None = None
    raw_response: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_s: float = 0.0


@dataclass(slots=True)  # not frozen: a frozen one costs 1 µs more to build, and `pnl` builds one per trade it reads
class LedgerEntry:
    """One completed trade, as the P&L ledger needs it (read from ``trades`` by the store)."""

    at: datetime
    side: str
    price: Decimal
    amount: Decimal
    total: Decimal
    fee: Decimal
    trade_id: str | None = None
    recovered: bool = False


@dataclass(frozen=True)
class RunInfo:
    """What this process knows about the run that is ending (metrics; remembered for ``tradebot metrics``)."""

    market: Market
    mode: str
    finished_at: float  # unix seconds
    success: bool
    duration_s: float
    position_volume: Decimal | None = None
    equity_krw: Decimal | None = None
    price_krw: Decimal | None = None
    daily_realized_loss_krw: Decimal | None = None  # since 00:00 UTC, positive KRW, 0 in profit
    daily_loss_limit_krw: Decimal | None = None  # TRADEBOT_DAILY_LOSS_LIMIT_KRW (0 = off)


@dataclass(frozen=True)
class PortfolioInfo:
    """The portfolio after a run over several markets (metrics): KRW free, positions at market value, how
    many are open, equity, and how many markets failed."""

    mode: str
    krw_free: Decimal
    exposure_krw: Decimal
    open_positions: int
    equity_krw: Decimal
    markets: int
    markets_failed: int
    max_exposure_krw: Decimal | None = None
    max_open_positions: int | None = None
    daily_realized_loss_krw: Decimal | None = None  # every market together since 00:00 UTC (0 in profit)
    daily_loss_limit_krw: Decimal | None = None
