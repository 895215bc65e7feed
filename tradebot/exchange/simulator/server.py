"""The public face of the simulator: ``SimulatorServer`` (a thread, for tests and ``tradebot demo``) and
``serve`` (the foreground process of ``tradebot simulator``)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any, Self

from tradebot.exchange.simulator.config import Faults, SimulatorConfig
from tradebot.exchange.simulator.engine import _Exchange
from tradebot.exchange.simulator.http import _HTTPServer


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
            return self._exchange.market_path(market or self.config.markets[0]).price


def serve(config: SimulatorConfig | None = None) -> None:
    """Run the simulator in the foreground until interrupted (``tradebot simulator``, which
    ``python -m tradebot.exchange.simulator`` runs too)."""
    sim = SimulatorServer(config)
    httpd = sim._bind()
    print(f"Upbit simulator listening on {sim.url} (markets: {', '.join(sim._exchange.markets)})", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
