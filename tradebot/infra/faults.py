"""Test-only fault injection: stop the process dead at a named point of an order's life.

``TRADEBOT_CRASH_AT=<point>`` makes :func:`crashpoint` kill the process with SIGKILL when execution reaches
that point; with the variable unset (always, outside the fault-injection tests) it does nothing. Points:

* ``before_order`` — the ``pending`` row is committed, the order is not sent yet;
* ``after_post`` — the exchange accepted the order (HTTP 201 received), nothing else processed (live only);
* ``after_fill`` — the fill is known, not yet written to the database;
* ``after_record`` — the fill is written;
* ``after_market_order`` — a portfolio cycle finished one market's order (recorded), the next is not sent;
* ``before_decisions`` — a portfolio cycle placed its orders, the other markets' decision rows are not written.
"""

from __future__ import annotations

import os

POINTS = ("before_order", "after_post", "after_fill", "after_record")  # every order's life
PORTFOLIO_POINTS = ("after_market_order", "before_decisions")  # only a cycle over several markets has these


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``TRADEBOT_CRASH_AT`` names ``name``."""
    if os.environ.get("TRADEBOT_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
