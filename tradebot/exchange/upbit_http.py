"""HTTP plumbing of the live Upbit adapter (:mod:`tradebot.exchange.upbit`).

``UpbitHttp`` owns the ``requests.Session`` and the API keys: it signs private requests (a JWT made by
pyupbit, imported lazily because ``import pyupbit`` pulls in pandas), paces calls by Upbit's
``Remaining-Req`` header, retries idempotent GETs on 429/5xx/network failures, and turns every reply into
its JSON payload or a typed :mod:`tradebot.errors` exception whose text never carries a key. It also parses
Upbit's timestamps. It knows nothing of orders or candles; the adapter does.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests

from tradebot.errors import (
    ExchangeError,
    ExchangeTransientError,
    OrderNotFoundError,
    OrderRejectedError,
    scrub,
)

# The adapter's logger name, not this module's: log lines ("%(name)s") read as they did before the split.
log = logging.getLogger("tradebot.exchange.upbit")

KST = timezone(timedelta(hours=9))
DEFAULT_API_URL = "https://api.upbit.com"
_AUTH_HINT = (
    "check UPBIT_ACCESS_KEY / UPBIT_SECRET_KEY and that this machine's IP address is allowed for the key"
)
_AUTH_ERROR_NAMES = frozenset(
    {
        "jwt_verification",
        "invalid_query_payload",
        "expired_access_key",
        "nonce_used",
        "no_authorization_i_p",
        "no_authorization_ip",
        "out_of_scope",
        "invalid_access_key",
    }
)


def parse_upbit_time(text: str, *, naive: timezone = KST) -> datetime:
    """Parse an Upbit timestamp (``2026-11-26T15:00:00+09:00``) into a tz-aware UTC datetime.

    Upbit always writes an offset on order times; ``candle_date_time_utc`` has none and is UTC, so callers
    say what a naive value means (``naive=UTC`` for candles, Korean time otherwise).
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=naive)
    return dt.astimezone(UTC)


def parse_remaining_req(header: str | None) -> tuple[str, int] | None:
    """Parse ``Remaining-Req: group=default; min=1800; sec=29`` into ``("default", 29)``.

    Tolerant by design (pyupbit returns ``None`` for a placed order when this header surprises it): any
    spacing, order or extra fields; ``None`` when the group or ``sec`` cannot be found.
    """
    if not header:
        return None
    fields: dict[str, str] = {}
    for part in re.split(r"[;,]", header):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    group, sec = fields.get("group"), fields.get("sec")
    if not group or sec is None or not sec.isdigit():
        return None
    return group, int(sec)


@dataclass(frozen=True)
class Reply:
    """One HTTP response, parsed as far as possible (``data`` is None when the body is not JSON)."""

    status: int
    data: Any


class UpbitHttp:
    """Signed, paced, error-mapped requests to one Upbit API base URL.

    ``timeout`` is the (connect, read) timeout of every request; ``get`` retries transient failures
    ``get_retries`` times, backing off ``retry_backoff_s`` × 2^attempt (a 429 waits out its group instead).
    ``sleep`` and ``clock`` (monotonic seconds) are injectable for tests.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: tuple[float, float] = (3.05, 10),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        get_retries: int = 2,
        retry_backoff_s: float = 0.5,
    ) -> None:
        # Name-mangled so that neither vars() dumps nor a careless f-string pick them up by accident.
        self.__access_key = access_key
        self.__secret_key = secret_key
        self._signer: Any = None  # pyupbit.Upbit, created on the first private request
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.get_retries = get_retries
        self.retry_backoff_s = retry_backoff_s
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        # Rate limiting: which Remaining-Req group each path belongs to (learned from responses) and the
        # monotonic time before which that group must not be called again.
        self._group_of: dict[str, str] = {}
        self._not_before: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"UpbitHttp(api_url={self.api_url!r})"  # never the keys

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def get(
        self,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        private: bool = False,
        retries: int | None = None,
    ) -> Any:
        """GET with error mapping; idempotent, so transient failures are retried a couple of times."""
        retries = self.get_retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                reply = self.send("GET", path, params=params, private=private)
                return self.check(reply, "GET", path)
            except ExchangeTransientError as e:
                if attempt >= retries:
                    raise
                # A 429 already pushed the group's not-before time forward; other failures back off a bit.
                if e.status != 429:
                    self._sleep(self.retry_backoff_s * (2**attempt))
                log.info("GET %s failed (%s); retrying", path, e)
        raise AssertionError("unreachable")

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, str] | None = None,
        private: bool = False,
    ) -> Reply:
        """One HTTP request. Raises only for network failures (ExchangeTransientError/ExchangeError)."""
        self._wait_for_rate_limit(path)
        url = self.api_url + path
        headers: dict[str, str] = {"Accept": "application/json"}
        if params:
            # Parameters go in the URL (pyupbit sends private GET parameters as a body) and are signed in the
            # same encoding. requests re-quotes "[]" as "%5B%5D" on the wire; Upbit verifies the hash against
            # the unquoted query, which is exactly the string pyupbit hashed.
            url += "?" + _encode(params)
        if private:
            signed: Sequence[tuple[str, str]] | None = None
            if params:
                signed = list(params)
            elif body:
                signed = list(body.items())
            headers.update(self._auth_headers(signed))
        try:
            if method == "POST":
                resp = self._session.post(url, json=dict(body or {}), headers=headers, timeout=self.timeout)
            else:
                resp = self._session.get(url, headers=headers, timeout=self.timeout)
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as e:
            # The request may have reached Upbit. Never str(e): requests puts the full URL into its messages.
            raise ExchangeTransientError(f"{method} {path} failed: {type(e).__name__}") from e
        except requests.RequestException as e:
            raise ExchangeError(f"{method} {path} failed: {type(e).__name__}") from e
        self._note_rate_limit(path, resp)
        text = resp.text
        try:
            # parse_float=Decimal keeps the digits Upbit wrote for quotation numbers (to_decimal accepts it).
            data = json.loads(text, parse_float=Decimal) if text else None
        except ValueError:
            data = None
        return Reply(status=resp.status_code, data=data)

    def check(self, reply: Reply, method: str, path: str, *, order: bool = False) -> Any:
        """Turn a reply into its JSON payload or a typed exception (never None, never an error dict)."""
        status, data = reply.status, reply.data
        err = data.get("error") if isinstance(data, dict) else None
        name: str | None = None
        detail = ""
        if isinstance(err, dict):
            name = self._scrub(str(err.get("name")), 100) if err.get("name") is not None else None
            detail = self._scrub(str(err.get("message") or ""))
        where = f"{method} {path}"
        if status == 429:  # JSON error or the plain text "Too many API requests."
            raise ExchangeTransientError(
                f"{where}: Upbit rate limit exceeded (429)", name=name or "too_many_requests", status=status
            )
        if status >= 500:
            raise ExchangeTransientError(
                f"{where}: Upbit server error {status}" + (f" ({name})" if name else ""), name=name, status=status
            )
        if 200 <= status < 300:
            if data is None or err is not None:
                # A success status whose body is unreadable (or an error dict): for a POST the order may exist.
                exc_type = ExchangeTransientError if order else ExchangeError
                what = f"error {name} in a success response" if err is not None else "unreadable response body"
                raise exc_type(f"{where}: {what} (HTTP {status})", name=name, status=status)
            return data
        suffix = f": {detail}" if detail else ""
        label = name or f"HTTP {status}"
        if status == 401 or (name in _AUTH_ERROR_NAMES):
            raise ExchangeError(
                f"{where}: Upbit refused the API key ({label}){suffix}; {_AUTH_HINT}", name=name, status=status
            )
        if status == 404 and name == "order_not_found":
            raise OrderNotFoundError(f"{where}: Upbit has no such order{suffix}", name=name, status=status)
        if status == 418:
            raise ExchangeError(
                f"{where}: Upbit blocked this client for exceeding the rate limit (418); wait before retrying",
                name=name,
                status=status,
            )
        if order and 400 <= status < 500:
            raise OrderRejectedError(f"{where}: Upbit rejected the order ({label}){suffix}", name=name, status=status)
        if data is None:
            raise ExchangeError(f"{where}: unreadable error response (HTTP {status})", status=status)
        raise ExchangeError(f"{where}: Upbit error ({label}){suffix}", name=name, status=status)

    def _auth_headers(self, params: Sequence[tuple[str, str]] | None) -> dict[str, str]:
        """``Authorization: Bearer <jwt>`` signed by pyupbit (claims access_key, nonce, query_hash)."""
        if self._signer is None:
            try:
                # lazy: it imports pandas (~0.45 s) and only private calls need it
                import pyupbit  # type: ignore[import-untyped]
            except ImportError as e:
                raise ExchangeError("pyupbit is not installed; it is needed to sign Upbit requests") from e
            self._signer = pyupbit.Upbit(self.__access_key, self.__secret_key)
        if params and "%" in _encode(params):
            # Upbit hashes the unquoted query, pyupbit the quoted one: only identical for plain characters.
            raise ExchangeError("cannot sign a request whose parameters need percent-encoding")
        headers: dict[str, str] = self._signer._request_headers(list(params) if params else None)
        return headers

    def _wait_for_rate_limit(self, path: str) -> None:
        group = self._group_of.get(path)
        if group is None:
            return
        wait = self._not_before.get(group, 0.0) - self._clock()
        if wait > 0:
            log.debug("rate limit: waiting %.3f s before the next %s request", wait, group)
            self._sleep(wait)

    def _note_rate_limit(self, path: str, resp: requests.Response) -> None:
        parsed = parse_remaining_req(resp.headers.get("Remaining-Req"))
        if parsed is not None:
            group, sec = parsed
            self._group_of[path] = group
            if sec <= 0:
                # Budget for this second is spent; the window's phase is unknown, so wait a full second.
                self._not_before[group] = self._clock() + 1.0
        if resp.status_code == 429:
            # Continuing after a 429 gets the IP blocked (418): hold the whole group for a second.
            group = self._group_of.setdefault(path, path)
            self._not_before[group] = max(self._not_before.get(group, 0.0), self._clock() + 1.0)

    def _scrub(self, text: str, limit: int = 200) -> str:
        """Remove the keys, JWTs and bearer tokens from server-supplied text (a misbehaving server or proxy
        could echo the request's ``Authorization`` header, whose JWT carries the access key), then cap it.
        Scrubbed before it is cut, so that no truncated token escapes the patterns."""
        return scrub(text, (self.__access_key, self.__secret_key))[:limit]


def _encode(params: Sequence[tuple[str, str]]) -> str:
    # The string pyupbit hashes (urlencode, then "%5B%5D=" back to "[]="): with plain characters only, it is
    # also the unquoted query Upbit hashes on its side.
    return urlencode(list(params), doseq=True).replace("%5B%5D=", "[]=")
