"""The one exception tree of tradebot.

Adapters translate vendor exceptions into these (``raise ... from e``); the CLI maps them to a one-line
``Error: ...`` message and an exit code. Messages never contain secrets: adapters build them from names,
hosts and exchange error names, never from a vendor exception's text (``requests`` puts full URLs, and so
Telegram tokens, into its messages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Exit codes shared by every command (documented in the README).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another cycle holds the lock; cron's flock uses the same code.


# What a credential looks like in text that a server or a library may echo back: a JWT (three base64url
# segments of a JSON header, or a truncated one), an ``Authorization`` header value and a bearer token.
# The replacement contains none of the patterns.
_AUTH_HEADER = re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer|basic|token)?\s*[^\s\"',;&}]+")
_BEARER = re.compile(r"(?i)\bbearer(?:\s|%20|\+)+[^\s\"',;&}]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{2,}(?:\.[A-Za-z0-9_\-]*){0,2}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/@:?#]*:)[^\s/@]+@")
REDACTED = "[redacted]"


def scrub(text: str, secrets: Iterable[str] = (), *, url_passwords: bool = False) -> str:
    """``text`` without credentials: the given secret values (4 characters or more), JWTs, bearer tokens
    and ``Authorization`` values are replaced by ``[redacted]``; with ``url_passwords`` also the password
    of any ``scheme://user:password@host`` (off by default: messages quote ``user:password@host`` as a
    template).

    Every error message goes through here (TradebotError does it when it is created, the CLI again before
    it prints, the decision log before it stores), because a misbehaving endpoint or proxy may echo the
    request, ``Authorization: Bearer <JWT>`` included, and a JWT's payload carries the Upbit access key.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    if url_passwords:
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + "****@", text)
    return text


class TradebotError(Exception):
    """Root of every error tradebot raises on purpose. Its message is scrubbed of credentials (:func:`scrub`)."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


class ConfigError(TradebotError):
    """A setting is missing or malformed; ``variable`` names it."""

    exit_code = EXIT_USAGE

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


class StorageError(TradebotError):
    """The database could not be reached or used. ``reason`` is the driver's error class name (e.g.
    ``OperationalError``) when a database call failed: messages name it, never the server's text."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or type(self).__name__


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
        self.name = scrub(name) if name is not None else None  # server-supplied, stored with failed trades
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
