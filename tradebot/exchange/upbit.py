"""The live Upbit (KRW market) adapter: ``UpbitExchange`` implements :class:`tradebot.exchange.base.Exchange`.

All HTTP is done here with one ``requests.Session`` (pyupbit hard-codes ``https://api.upbit.com``, sets no
timeouts and turns errors into ``None`` or error dicts). pyupbit is used for one sound thing only: signing a
request (``Upbit._request_headers``), imported lazily because ``import pyupbit`` pulls in pandas.

Order placement is written around one rule: an order POST is never sent twice. Once the exchange may have
accepted an order, the adapter returns a :class:`~tradebot.models.Fill` (resolved or not) and never raises,
so the caller always gets the uuid it needs to reconcile. See :meth:`UpbitExchange.market_buy`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests

from tradebot.errors import ExchangeError, ExchangeTransientError, OrderNotFoundError, OrderRejectedError, scrub
from tradebot.exchange.base import Interval, check_buy, check_sell
from tradebot.faults import crashpoint
from tradebot.models import (
    Balance,
    Candle,
    Execution,
    Fill,
    Orderbook,
    OrderbookLevel,
    OrderState,
    Side,
    plain,
    to_decimal,
)

__all__ = ["UpbitExchange", "parse_upbit_time", "parse_remaining_req"]

log = logging.getLogger(__name__)

KST = timezone(timedelta(hours=9))
DEFAULT_API_URL = "https://api.upbit.com"
CANDLE_PAGE = 200  # Upbit's maximum ``count`` per candle request
CLOSED_ORDERS_LIMIT = 1000  # Upbit's maximum ``limit`` for /v1/orders/closed
CLOSED_ORDERS_WINDOW = timedelta(days=7)  # Upbit's maximum start_time..end_time range

_CANDLE_PATHS: dict[str, tuple[str, timedelta]] = {
    "minute60": ("/v1/candles/minutes/60", timedelta(hours=1)),
    "day": ("/v1/candles/days", timedelta(days=1)),
}
_SIDES: dict[str, Side] = {"bid": "buy", "ask": "sell"}
# Characters that urlencode leaves alone. Signed parameters are restricted to them so that pyupbit's hash
# (of the percent-encoded query) and Upbit's documented hash (of the *unquoted* query) are the same bytes.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._\-]+$")
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
class _Reply:
    """One HTTP response, parsed as far as possible (``data`` is None when the body is not JSON)."""

    status: int
    data: Any


class UpbitExchange:
    """Live trading on Upbit's KRW markets over its REST API.

    ``timeout`` is the (connect, read) timeout of every request. After an order is accepted the adapter
    polls ``GET /v1/order`` every ``poll_interval_s`` until the order is final, for at most ``poll_timeout_s``
    seconds and ``max_poll_attempts`` requests. ``sleep``, ``clock`` (monotonic seconds) and ``now`` (UTC
    wall time, used to drop the still-forming candle and for order-history windows) are injectable for tests.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: tuple[float, float] = (3.05, 10),
        poll_timeout_s: float = 10.0,
        poll_interval_s: float = 0.25,
        max_poll_attempts: int = 40,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        get_retries: int = 2,
        retry_backoff_s: float = 0.5,
        lookup_attempts: int = 4,
    ) -> None:
        # Name-mangled so that neither vars() dumps nor a careless f-string pick them up by accident.
        self.__access_key = access_key
        self.__secret_key = secret_key
        self._signer: Any = None  # pyupbit.Upbit, created on the first private request
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.poll_timeout_s = poll_timeout_s
        self.poll_interval_s = poll_interval_s
        self.max_poll_attempts = max_poll_attempts
        self.get_retries = get_retries
        self.retry_backoff_s = retry_backoff_s
        self.lookup_attempts = max(1, lookup_attempts)
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._now: Callable[[], datetime] = now if now is not None else (lambda: datetime.now(UTC))
        # Rate limiting: which Remaining-Req group each path belongs to (learned from responses) and the
        # monotonic time before which that group must not be called again.
        self._group_of: dict[str, str] = {}
        self._not_before: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"UpbitExchange(api_url={self.api_url!r})"  # never the keys

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    # ------------------------------------------------------------------ account and market data

    def balances(self) -> list[Balance]:
        """All currencies of the account (KRW included); ``free`` excludes what open orders lock."""
        data = self._get("/v1/accounts", private=True)
        if not isinstance(data, list):
            raise self._shape_error("GET", "/v1/accounts")
        try:
            return [
                Balance(
                    currency=str(row["currency"]),
                    free=to_decimal(row["balance"]),
                    locked=to_decimal(row.get("locked", "0")),
                    avg_buy_price=to_decimal(row.get("avg_buy_price") or "0"),
                )
                for row in data
            ]
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:
            raise self._shape_error("GET", "/v1/accounts") from e

    def candles(self, ticker: str, interval: Interval, count: int, *, to: datetime | None = None) -> list[Candle]:
        """Up to ``count`` completed candles before ``to`` (exclusive; default: now), oldest first.

        Pages backwards 200 at a time (``to`` = the oldest start seen so far). The still-forming candle (whose
        period has not ended at ``now``) is dropped; hours without trades have no candle and stay gaps.
        Fewer than ``count`` candles come back when the market has no older history.
        """
        if interval not in _CANDLE_PATHS:
            raise ValueError(f"unsupported interval {interval!r}; use 'minute60' or 'day'")
        if count <= 0:
            return []
        if to is not None and to.tzinfo is None:
            raise ValueError("candles(to=...) must be timezone-aware")
        path, period = _CANDLE_PATHS[interval]
        now = self._now()
        by_start: dict[datetime, Candle] = {}
        cursor = to
        while True:
            completed = [c for c in by_start.values() if c.start + period <= now]
            if len(completed) >= count:
                break
            # Ask for one extra: the newest candle of the first page may be the forming one.
            want = min(CANDLE_PAGE, count - len(completed) + 1)
            params: list[tuple[str, str]] = [("market", ticker), ("count", str(want))]
            if cursor is not None:
                params.append(("to", _format_candle_to(cursor)))
            page = self._market_get(path, params, ticker)
            if not isinstance(page, list):
                raise self._shape_error("GET", path)
            parsed = [self._parse_candle(row, path) for row in page]
            new = [c for c in parsed if c.start not in by_start and (cursor is None or c.start < cursor)]
            for c in new:
                by_start[c.start] = c
            if not new or len(page) < want:
                break  # no older history (or the exchange repeats itself): stop instead of looping
            cursor = min(c.start for c in new)
        completed = sorted((c for c in by_start.values() if c.start + period <= now), key=lambda c: c.start)
        return completed[-count:]

    def ticker_price(self, ticker: str) -> Decimal:
        """Last trade price of ``ticker`` (``KRW-BTC``)."""
        data = self._market_get("/v1/ticker", [("markets", ticker)], ticker)
        try:
            row = data[0]
            return to_decimal(row["trade_price"])
        except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as e:
            raise self._shape_error("GET", "/v1/ticker") from e

    def orderbook(self, ticker: str) -> Orderbook:
        """Current orderbook of ``ticker``, best levels first."""
        data = self._market_get("/v1/orderbook", [("markets", ticker)], ticker)
        try:
            row = data[0]
            levels = tuple(
                OrderbookLevel(
                    ask_price=to_decimal(u["ask_price"]),
                    ask_size=to_decimal(u["ask_size"]),
                    bid_price=to_decimal(u["bid_price"]),
                    bid_size=to_decimal(u["bid_size"]),
                )
                for u in row["orderbook_units"]
            )
            market = str(row.get("market", ticker))
        except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as e:
            raise self._shape_error("GET", "/v1/orderbook") from e
        if not levels:
            raise ExchangeError(f"Upbit returned an empty orderbook for {ticker}")
        return Orderbook(market=market, levels=levels)

    # ------------------------------------------------------------------ orders

    def market_buy(self, ticker: str, krw: Decimal, client_order_id: str) -> Fill:
        """Spend ``krw`` (whole KRW, before the fee) on ``ticker`` at market.

        Pre-trade checks (5,000 ≤ krw ≤ 1,000,000,000; krw × 1.0005 ≤ free KRW) raise
        :class:`OrderRejectedError` before anything is sent; so does an exchange 4xx rejection.

        Once the order may exist on the exchange this method never raises. It returns:

        * a resolved ``Fill`` when the order reached ``done``/``cancel`` (``volume == 0`` means accepted and
          cancelled with nothing filled; a filled market buy usually ends in ``cancel``);
        * ``Fill(resolved=False, uuid=<uuid>)`` when the order was accepted but its final state was not seen
          within the poll budget;
        * ``Fill(resolved=False, uuid="")`` when the POST outcome was ambiguous (timeout, connection loss,
          429, 5xx) and looking the order up by ``client_order_id`` kept failing.

        In both unresolved cases the caller keeps the trade ``pending`` and reconciles it later with
        ``get_order(client_order_id=...)``. When the ambiguous POST is shown not to have created an order
        (``order_not_found`` by identifier), :class:`ExchangeTransientError` is raised: nothing was placed,
        and since Upbit identifiers are single-use a retry needs a new client order id.
        """
        _check_identifier(client_order_id)
        amount = check_buy(krw, self._free("KRW"))  # whole KRW; min, max and fee headroom
        body = {
            "market": ticker,
            "side": "bid",
            "ord_type": "price",
            "price": plain(amount),
            "identifier": client_order_id,
        }
        return self._place(body, ticker, "buy", client_order_id)

    def market_sell(self, ticker: str, volume: Decimal, client_order_id: str) -> Fill:
        """Sell ``volume`` of ``ticker``'s coin at market (truncated to 8 decimals).

        Pre-trade checks (volume ≤ free coin; volume × best bid ≥ 5,000 KRW, which is how Upbit values a
        market sell) raise :class:`OrderRejectedError` before anything is sent. Results and the unresolved /
        ambiguous cases are exactly as for :meth:`market_buy`.
        """
        _check_identifier(client_order_id)
        free = self._free(ticker.split("-", 1)[-1])
        # 8 decimals, free balance, and value at the best *bid* (how Upbit values a market sell) ≥ 5,000 KRW.
        qty = check_sell(ticker, volume, free, self.orderbook(ticker).best_bid)
        body = {
            "market": ticker,
            "side": "ask",
            "ord_type": "market",
            "volume": plain(qty),
            "identifier": client_order_id,
        }
        return self._place(body, ticker, "sell", client_order_id)

    def get_order(self, *, uuid: str | None = None, client_order_id: str | None = None) -> Fill:
        """One order with its trades, by Upbit ``uuid`` or by our ``client_order_id`` (Upbit ``identifier``).

        ``resolved`` is True only when the order is final (``done``/``cancel``) and its trades add up to its
        executed volume. Raises :class:`OrderNotFoundError` when the exchange has no such order.
        """
        if (uuid is None) == (client_order_id is None):
            raise ValueError("get_order needs exactly one of uuid= or client_order_id=")
        if uuid is not None:
            params = [("uuid", _check_param("uuid", uuid))]
        else:
            assert client_order_id is not None
            params = [("identifier", _check_param("client_order_id", client_order_id))]
        data = self._get("/v1/order", params=params, private=True)
        return self._fill_or_shape_error(data, "/v1/order")

    def closed_orders(self, ticker: str, since: datetime) -> list[Fill]:
        """The account's done/cancelled orders on ``ticker`` created since ``since``, oldest first.

        Upbit answers at most 7 days and 1,000 orders per request, so longer spans are walked in 7-day
        windows and a full window is split in half until it fits. The list endpoint carries no ``trades``:
        volume, gross and fee come from ``executed_volume``, ``executed_funds`` and ``paid_fee``.
        """
        if since.tzinfo is None:
            raise ValueError("closed_orders(since=...) must be timezone-aware")
        end = self._now()
        found: dict[str, Fill] = {}
        start = since
        while start < end:
            window_end = min(start + CLOSED_ORDERS_WINDOW, end)
            for fill in self._closed_window(ticker, start, window_end):
                found[fill.uuid] = fill
            start = window_end
        far_past = datetime.min.replace(tzinfo=UTC)
        return sorted(found.values(), key=lambda f: (f.created_at or far_past, f.uuid))

    # ------------------------------------------------------------------ order internals

    def _place(self, body: dict[str, str], ticker: str, side: Side, client_order_id: str) -> Fill:
        """POST the order once, then resolve it (see market_buy for the contract)."""
        path = "/v1/orders"
        try:
            reply = self._send("POST", path, body=body, private=True)
            if reply.status == 201:
                crashpoint("after_post")
        except ExchangeTransientError as e:  # timeout / connection error: the request may have arrived
            return self._resolve_ambiguous(ticker, side, client_order_id, f"{e}")
        # (Any other ExchangeError from _send happened before the request left: nothing was placed.)
        try:
            data = self._check(reply, "POST", path, order=True)
        except ExchangeTransientError as e:  # 429, 5xx, unparseable 2xx
            return self._resolve_ambiguous(ticker, side, client_order_id, f"{e}")
        uuid = data.get("uuid") if isinstance(data, dict) else None
        if not isinstance(uuid, str) or not uuid:
            return self._resolve_ambiguous(
                ticker, side, client_order_id, f"POST {path} answered {reply.status} without an order uuid"
            )
        log.info("order %s (%s) accepted for %s %s", uuid, client_order_id, side, ticker)
        # The POST reply is never the fill (a market buy answers state "wait", volume null): always read the
        # order back so the fill is computed from its trades.
        first = self._try_parse_fill(data) or _pending_fill(uuid, client_order_id, ticker, side)
        return self._poll(replace(first, resolved=False), client_order_id)

    def _resolve_ambiguous(self, ticker: str, side: Side, client_order_id: str, reason: str) -> Fill:
        """The POST may or may not have created an order: look it up by identifier, never resend."""
        log.warning("order %s: outcome unknown (%s); looking it up by identifier", client_order_id, reason)
        not_found_last = False
        delay = self.poll_interval_s
        for attempt in range(self.lookup_attempts):
            if attempt:
                self._sleep(delay)
                delay *= 2  # the exchange may still be processing the request that timed out
            try:
                data = self._get("/v1/order", params=[("identifier", client_order_id)], private=True, retries=0)
            except OrderNotFoundError:
                not_found_last = True
                continue
            except ExchangeError as e:
                log.warning("order %s: lookup failed (%s)", client_order_id, e)
                not_found_last = False
                continue
            fill = self._try_parse_fill(data)
            if fill is None:
                not_found_last = False
                continue
            log.info("order %s found as %s after an ambiguous POST", client_order_id, fill.uuid)
            return self._poll(fill, client_order_id)
        if not_found_last:
            raise ExchangeTransientError(
                f"order {client_order_id} was not placed: the request failed ({reason}) and Upbit has no "
                "order with that identifier; retry with a new client order id (identifiers are single-use)",
                name="order_not_found",
            )
        log.warning("order %s: could not be looked up; leaving it unresolved for reconciliation", client_order_id)
        return _pending_fill("", client_order_id, ticker, side)

    def _poll(self, fill: Fill, client_order_id: str) -> Fill:
        """Re-read an accepted order until it is final, within poll_timeout_s and max_poll_attempts."""
        if fill.client_order_id is None:  # orders created before 2024-10-18 echo no identifier
            fill = replace(fill, client_order_id=client_order_id)
        if fill.resolved:
            return fill
        deadline = self._clock() + self.poll_timeout_s
        last = fill
        for _ in range(self.max_poll_attempts):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._sleep(min(self.poll_interval_s, remaining))
            try:
                data = self._get("/v1/order", params=[("uuid", fill.uuid)], private=True, retries=0)
            except ExchangeError as e:
                # order_not_found right after acceptance, 429, 5xx, timeouts: keep polling within budget.
                log.debug("order %s: poll failed (%s)", fill.uuid, e)
                continue
            parsed = self._try_parse_fill(data)
            if parsed is None:
                continue
            if parsed.client_order_id is None:
                parsed = replace(parsed, client_order_id=client_order_id)
            if parsed.resolved:
                return parsed
            last = parsed
        log.warning("order %s (%s) not final within the poll budget", fill.uuid, fill.client_order_id)
        return replace(last, resolved=False)

    def _closed_window(self, ticker: str, start: datetime, end: datetime, depth: int = 0) -> list[Fill]:
        params = [
            ("market", ticker),
            ("states[]", "done"),
            ("states[]", "cancel"),
            # Millisecond timestamps, not ISO-8601: Upbit documents "Failed to verify the query of Jwt" for
            # ISO times (the '+' and ':' get percent-encoded differently by clients and server).
            ("start_time", str(_ms(start))),
            ("end_time", str(_ms(end))),
            ("limit", str(CLOSED_ORDERS_LIMIT)),
            ("order_by", "asc"),
        ]
        path = "/v1/orders/closed"
        data = self._get(path, params=params, private=True)
        if not isinstance(data, list):
            raise self._shape_error("GET", path)
        if len(data) >= CLOSED_ORDERS_LIMIT:
            if depth >= 12 or end - start <= timedelta(seconds=1):
                raise ExchangeError(f"GET {path}: more than {CLOSED_ORDERS_LIMIT} orders in one second")
            mid = start + (end - start) / 2
            return self._closed_window(ticker, start, mid, depth + 1) + self._closed_window(
                ticker, mid, end, depth + 1
            )
        fills: list[Fill] = []
        for row in data:
            fill = self._try_parse_fill(row)
            if fill is None:
                raise self._shape_error("GET", path)
            if fill.created_at is None or start <= fill.created_at <= end:
                fills.append(fill)
        return fills

    def _fill_or_shape_error(self, data: Any, path: str) -> Fill:
        try:
            return _parse_order(data)
        except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as e:
            raise self._shape_error("GET", path) from e

    @staticmethod
    def _try_parse_fill(data: Any) -> Fill | None:
        try:
            return _parse_order(data)
        except (KeyError, IndexError, TypeError, ValueError, ArithmeticError):
            return None

    def _free(self, currency: str) -> Decimal:
        for b in self.balances():
            if b.currency == currency:
                return b.free
        return Decimal(0)

    # ------------------------------------------------------------------ HTTP

    def _get(
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
                reply = self._send("GET", path, params=params, private=private)
                return self._check(reply, "GET", path)
            except ExchangeTransientError as e:
                if attempt >= retries:
                    raise
                # A 429 already pushed the group's not-before time forward; other failures back off a bit.
                if e.status != 429:
                    self._sleep(self.retry_backoff_s * (2**attempt))
                log.info("GET %s failed (%s); retrying", path, e)
        raise AssertionError("unreachable")

    def _market_get(self, path: str, params: Sequence[tuple[str, str]], ticker: str) -> Any:
        """A quotation GET about one market: Upbit's bare 404 ``Code not found`` names the market instead."""
        try:
            return self._get(path, params=params)
        except ExchangeError as e:
            if e.status == 404 and not isinstance(e, OrderNotFoundError):
                raise ExchangeError(f"Upbit has no market {ticker} (GET {path} answered 404 Code not found); "
                                    "check the market code (TRADEBOT_TICKER)", name="market_not_found",
                                    status=404) from e
            raise

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, str] | None = None,
        private: bool = False,
    ) -> _Reply:
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
        return _Reply(status=resp.status_code, data=data)

    def _check(self, reply: _Reply, method: str, path: str, *, order: bool = False) -> Any:
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
                import pyupbit  # lazy: it imports pandas (~0.45 s) and only private calls need it
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

    def _shape_error(self, method: str, path: str) -> ExchangeError:
        return ExchangeError(f"{method} {path}: unexpected response shape from Upbit")

    def _parse_candle(self, row: Any, path: str) -> Candle:
        try:
            return Candle(
                start=parse_upbit_time(str(row["candle_date_time_utc"]), naive=UTC),
                open=to_decimal(row["opening_price"]),
                high=to_decimal(row["high_price"]),
                low=to_decimal(row["low_price"]),
                close=to_decimal(row["trade_price"]),
                volume=to_decimal(row["candle_acc_trade_volume"]),
                value=to_decimal(row.get("candle_acc_trade_price", 0)),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:
            raise self._shape_error("GET", path) from e


# ---------------------------------------------------------------------- helpers


def _encode(params: Sequence[tuple[str, str]]) -> str:
    # The string pyupbit hashes (urlencode, then "%5B%5D=" back to "[]="): with plain characters only, it is
    # also the unquoted query Upbit hashes on its side.
    return urlencode(list(params), doseq=True).replace("%5B%5D=", "[]=")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _format_candle_to(dt: datetime) -> str:
    # Upbit reads a `to` without offset as UTC; quotation requests are unsigned, so encoding is harmless.
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def _check_identifier(client_order_id: str) -> None:
    if not client_order_id or not _SAFE_VALUE.match(client_order_id):
        raise OrderRejectedError(
            f"client order id {client_order_id!r} must be non-empty and use only letters, digits, '.', '_' "
            "and '-' (other characters are hashed differently by clients and Upbit when signing)",
            name="invalid_identifier",
        )


def _check_param(label: str, value: str) -> str:
    if not value or not _SAFE_VALUE.match(value):
        raise ValueError(f"{label} {value!r} must use only letters, digits, '.', '_' and '-'")
    return value


def _pending_fill(uuid: str, client_order_id: str | None, ticker: str, side: Side) -> Fill:
    return Fill(
        uuid=uuid,
        client_order_id=client_order_id,
        market=ticker,
        side=side,
        state=OrderState.WAIT,
        volume=Decimal(0),
        gross=Decimal(0),
        fee=Decimal(0),
        resolved=False,
    )


def _parse_order(data: Any) -> Fill:
    """Build a Fill from an Upbit order object (``GET /v1/order``, a POST reply or a closed-list row).

    With ``trades``: volume = Σ trades.volume, gross = Σ trades.funds. Without (list endpoints): the order's
    ``executed_volume`` and ``executed_funds``. ``resolved`` needs a final state and, when trades are
    present, trades that add up to ``executed_volume`` (a partial trade list is not a fill yet).
    """
    if not isinstance(data, dict):
        raise TypeError("order is not an object")
    side = _SIDES[str(data["side"])]
    state = OrderState(str(data["state"]))
    executed = to_decimal(data.get("executed_volume") or "0")
    trades = data.get("trades")
    executions: tuple[Execution, ...] = ()
    consistent = True
    if isinstance(trades, list):
        executions = tuple(
            Execution(
                price=to_decimal(t["price"]),
                volume=to_decimal(t["volume"]),
                funds=to_decimal(t["funds"]),
                created_at=parse_upbit_time(t["created_at"]) if t.get("created_at") else None,
            )
            for t in trades
        )
        volume = sum((e.volume for e in executions), Decimal(0))
        gross = sum((e.funds for e in executions), Decimal(0))
        consistent = volume == executed
    else:
        volume = executed
        funds = data.get("executed_funds")
        if funds is None:
            if executed != 0:
                consistent = False  # executed volume but neither trades nor executed_funds: cannot compute
            gross = Decimal(0)
        else:
            gross = to_decimal(funds)
    created = data.get("created_at")
    identifier = data.get("identifier")
    return Fill(
        uuid=str(data["uuid"]),
        client_order_id=str(identifier) if identifier else None,
        market=str(data["market"]),
        side=side,
        state=state,
        volume=volume,
        gross=gross,
        fee=to_decimal(data.get("paid_fee") or "0"),
        executions=executions,
        created_at=parse_upbit_time(created) if created else None,
        resolved=state.final and consistent,
    )
