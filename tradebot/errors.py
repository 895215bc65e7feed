"""The one exception tree of tradebot.

Adapters translate vendor exceptions into these (``raise ... from e``); the CLI maps them to a one-line
``Error: ...`` message and an exit code. Messages never contain secrets: adapters build them from names,
hosts and exchange error names, never from a vendor exception's text (``requests`` puts full URLs, and so
Telegram tokens, into its messages).
"""

from __future__ import annotations

# Exit codes shared by every command (documented in the README).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another cycle holds the lock; cron's flock uses the same code.


class TradebotError(Exception):
    """Root of every error tradebot raises on purpose."""

    exit_code: int = EXIT_FAILURE


class ConfigError(TradebotError):
    """A setting is missing or malformed; ``variable`` names it."""

    exit_code = EXIT_USAGE

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


class StorageError(TradebotError):
    """The database could not be reached or used."""


class SchemaVersionError(StorageError):
    """The database schema is older or newer than this code."""


class LockedError(TradebotError):
    """Another process holds the lock this command needs."""

    exit_code = EXIT_LOCKED


class ExchangeError(TradebotError):
    """Something went wrong talking to the exchange.

    ``name`` is Upbit's error name (``insufficient_funds_bid`` ...) when the exchange gave one.
    """

    def __init__(self, message: str, *, name: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.status = status


class ExchangeTransientError(ExchangeError):
    """Timeout, connection failure, 429 or 5xx: the same request may succeed later."""


class OrderRejectedError(ExchangeError):
    """The exchange (or our pre-trade check) refused the order; nothing was placed."""


class OrderNotFoundError(ExchangeError):
    """The exchange has no order with that uuid or identifier."""


class AdvisorError(TradebotError):
    """The advisor gave no usable decision (timeout, refusal, malformed answer)."""


class NotifierError(TradebotError):
    """A notification could not be delivered (never fails a cycle)."""
