"""A local HTTP server that speaks the subset of Upbit's REST API tradebot uses (``tradebot simulator``).

The simulator is a fake *at the seam*: the real clients (pyupbit, ``requests``) talk to it over loopback HTTP
and see Upbit's wire format — quotation numbers as JSON numbers, exchange numbers as strings, Upbit's error
names and shapes, the ``Remaining-Req`` header, JWT verification with ``query_hash``. It is stdlib-only
(``http.server``) plus PyJWT, which is imported lazily so that importing this package stays cheap.

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

The package, by concern: ``config`` (``SimulatorConfig``, ``Faults``, the default keys), ``wire`` (Upbit's
number, time, JSON and error formats; ``sign_jwt``), ``prices`` (tick sizes, the price path, the CSV input,
the orderbook), ``engine`` (accounts, orders, fills and the exchange's own copy of Upbit's rules),
``endpoints`` (the REST reads), ``http`` (routing, JWT checks, ``Remaining-Req``, faults, ``/_sim/``) and
``server`` (``SimulatorServer``, ``serve``). ``python -m tradebot.exchange.simulator`` is ``tradebot simulator``.
"""

from tradebot.exchange.simulator.config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    FaultBody,
    Faults,
    SimulatorConfig,
)
from tradebot.exchange.simulator.prices import tick_size
from tradebot.exchange.simulator.server import SimulatorServer, serve
from tradebot.exchange.simulator.wire import sign_jwt

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "FaultBody",
    "Faults",
    "SimulatorConfig",
    "SimulatorServer",
    "serve",
    "sign_jwt",
    "tick_size",
]
