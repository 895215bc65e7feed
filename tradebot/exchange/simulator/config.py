"""What a simulator instance is built from: ``SimulatorConfig``, the fault switches ``Faults`` and the
default (fake) credentials."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

# Fake credentials for local use. The secret is >= 64 bytes so PyJWT never warns about a short HMAC key.
DEFAULT_ACCESS_KEY = "tradebot-simulator-access-key"
DEFAULT_SECRET_KEY = "tradebot-simulator-secret-key-" + "0123456789abcdef" * 3

FaultBody = Literal["json", "text"]


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
      identifier is used up, as on Upbit), and the switch clears. With ``reject_market`` set, only an order
      for that market is refused (the orders of other markets before it go through).
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
    reject_market: str | None = None

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
    warned: tuple[str, ...] = ()  # markets /v1/market/all flags with Upbit's investment warning
    # Refuse a request beyond Upbit's per-second limit of its group with Upbit's 429 (None: on with the wall
    # clock, off with a test clock, which may stand still).
    rate_limits: bool | None = None
    correlation: float = 0.6  # of two markets' hourly shocks (several markets; majors correlate 0.5-0.8 hourly)

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
        object.__setattr__(self, "warned", tuple(self.warned))
        object.__setattr__(self, "start_prices", {k: Decimal(str(v)) for k, v in self.start_prices.items()})
        if not 0 <= self.correlation < 1:
            raise ValueError("correlation must be at least 0 and below 1")
        if self.history_hours < 48:
            raise ValueError("history_hours must be >= 48")
