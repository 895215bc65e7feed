"""The live Upbit (KRW market) adapter: ``UpbitExchange`` implements :class:`tradebot.exchange.base.Exchange`.

All HTTP goes through one :class:`~tradebot.exchange.upbit_http.UpbitHttp` (one ``requests.Session``;
pyupbit hard-codes ``https://api.upbit.com``, sets no timeouts and turns errors into ``None`` or error
dicts). pyupbit is used for one sound thing only: signing a request (``Upbit._request_headers``), imported
lazily there because ``import pyupbit`` pulls in pandas. This module turns Upbit's payloads into our
records and owns the order logic.

Order placement is written around one rule: an order POST is never sent twice. Once the exchange may have
accepted an order, the adapter returns a :class:`~tradebot.models.Fill` (resolved or not) and never raises,
so the caller always gets the uuid it needs to reconcile. See :meth:`UpbitExchange.market_buy`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from tradebot.errors import (
    ExchangeError,
    ExchangeTransientError,
    OrderNotFoundError,
    OrderRejectedError,
)
from tradebot.exchange.base import Interval
from tradebot.exchange.upbit_http import (
    DEFAULT_API_URL,
    UpbitHttp,
    parse_remaining_req,
    parse_upbit_time,
)
from tradebot.exchange.upbit_quotes import shape_error
from tradebot.models import (
    Balance,
    Candle,
    Execution,
    Fill,
    Market,
    MarketQuote,
    Orderbook,
    OrderState,
    Side,
    plain,
    to_decimal,
)
from tradebot.upbit_rules import check_buy, check_sell

__all__ = ["UpbitExchange", "parse_remaining_req", "parse_upbit_time"]

log = logging.getLogger(__name__)

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
        crashpoint: Callable[[str], None] = lambda point: None,
    ) -> None:
        # The HTTP layer holds the keys (name-mangled there); this object never stores them.
        self._http = UpbitHttp(
            access_key,
            secret_key,
            api_url,
            timeout=timeout,
            session=session,
            sleep=sleep,
            clock=clock,
            get_retries=get_retries,
            retry_backoff_s=retry_backoff_s,
        )
        self.poll_timeout_s = poll_timeout_s
        self.poll_interval_s = poll_interval_s
        self.max_poll_attempts = max_poll_attempts
        self.lookup_attempts = max(1, lookup_attempts)
        self._sleep = sleep
        self._clock = clock
        self._now: Callable[[], datetime] = now if now is not None else (lambda: datetime.now(UTC))
        self._crashpoint = crashpoint  # fault-injection hook (tradebot.infra.faults); a no-op in use

    @property
    def api_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._http.api_url

    def __repr__(self) -> str:
        return f"UpbitExchange(api_url={self.api_url!r})"  # never the keys

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._http.close()

    # ------------------------------------------------------------------ account and market data

    def balances(self) -> list[Balance]:
        """All currencies of the account (KRW included); ``free`` excludes what open orders lock."""
        data = self._http.get("/v1/accounts", private=True)
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

    def candles(self, market: Market, interval: Interval, count: int, *, to: datetime | None = None) -> list[Candle]:
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
            params: list[tuple[str, str]] = [("market", market), ("count", str(want))]
            if cursor is not None:
                params.append(("to", _format_candle_to(cursor)))
            page = self._market_get(path, params, market)
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

    def ticker_price(self, market: Market) -> Decimal:
        """Last trade price of ``market`` (``KRW-BTC``)."""
        from tradebot.exchange.upbit_quotes import parse_prices

        return parse_prices(self._market_get("/v1/ticker", [("markets", market)], market), [market])[market]

    def ticker_prices(self, markets: Sequence[Market]) -> dict[Market, Decimal]:
        """Last trade prices of several markets, in one request."""
        from tradebot.exchange.upbit_quotes import parse_prices

        return parse_prices(self._markets_get("/v1/ticker", markets), markets)

    def market_quotes(self) -> list[MarketQuote]:
        """Every KRW market Upbit lists, with its warning flags, price, change and 24-hour traded KRW."""
        from tradebot.exchange.upbit_quotes import krw_markets, quotes

        return quotes(self._http, krw_markets(self._http))

    def listed_markets(self) -> list[Market]:
        """Every KRW market Upbit lists now (``/v1/market/all``)."""
        from tradebot.exchange.upbit_quotes import krw_markets

        return [m for m, *_ in krw_markets(self._http)]

    def orderbook(self, market: Market) -> Orderbook:
        """Current orderbook of ``market``, best levels first."""
        from tradebot.exchange.upbit_quotes import parse_orderbooks

        return parse_orderbooks(self._market_get("/v1/orderbook", [("markets", market)], market), [market])[market]

    def orderbooks(self, markets: Sequence[Market]) -> dict[Market, Orderbook]:
        """Current orderbooks of several markets, in one request."""
        from tradebot.exchange.upbit_quotes import parse_orderbooks

        return parse_orderbooks(self._markets_get("/v1/orderbook", markets), markets)

    # ------------------------------------------------------------------ orders

    def market_buy(self, market: Market, krw: Decimal, client_order_id: str) -> Fill:
        """Spend ``krw`` (whole KRW, before the fee) on ``market`` at market.

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
            "market": market,
            "side": "bid",
            "ord_type": "price",
            "price": plain(amount),
            "identifier": client_order_id,
        }
        return self._place(body, market, "buy", client_order_id)

    def market_sell(self, market: Market, volume: Decimal, client_order_id: str) -> Fill:
        """Sell ``volume`` of ``market``'s coin at market (truncated to 8 decimals).

        Pre-trade checks (volume ≤ free coin; volume × best bid ≥ 5,000 KRW, which is how Upbit values a
        market sell) raise :class:`OrderRejectedError` before anything is sent. Results and the unresolved /
        ambiguous cases are exactly as for :meth:`market_buy`.
        """
        _check_identifier(client_order_id)
        free = self._free(market.base)
        # 8 decimals, free balance, and value at the best *bid* (how Upbit values a market sell) ≥ 5,000 KRW.
        qty = check_sell(market.base, volume, free, self.orderbook(market).best_bid)
        body = {
            "market": market,
            "side": "ask",
            "ord_type": "market",
            "volume": plain(qty),
            "identifier": client_order_id,
        }
        return self._place(body, market, "sell", client_order_id)

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
        data = self._http.get("/v1/order", params=params, private=True)
        return self._fill_or_shape_error(data, "/v1/order")

    def closed_orders(self, market: Market, since: datetime) -> list[Fill]:
        """The account's done/cancelled orders on ``market`` created since ``since``, oldest first.

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
            for fill in self._closed_window(market, start, window_end):
                found[fill.uuid] = fill
            start = window_end
        far_past = datetime.min.replace(tzinfo=UTC)
        return sorted(found.values(), key=lambda f: (f.created_at or far_past, f.uuid))

    # ------------------------------------------------------------------ order internals

    def _place(self, body: dict[str, str], market: Market, side: Side, client_order_id: str) -> Fill:
        """POST the order once, then resolve it (see market_buy for the contract)."""
        path = "/v1/orders"
        try:
            reply = self._http.send("POST", path, body=body, private=True)
            if reply.status == 201:
                self._crashpoint("after_post")
        except ExchangeTransientError as e:  # timeout / connection error: the request may have arrived
            return self._resolve_ambiguous(market, side, client_order_id, f"{e}")
        # (Any other ExchangeError from _send happened before the request left: nothing was placed.)
        try:
            data = self._http.check(reply, "POST", path, order=True)
        except ExchangeTransientError as e:  # 429, 5xx, unparseable 2xx
            return self._resolve_ambiguous(market, side, client_order_id, f"{e}")
        uuid = data.get("uuid") if isinstance(data, dict) else None
        if not isinstance(uuid, str) or not uuid:
            return self._resolve_ambiguous(
                market, side, client_order_id, f"POST {path} answered {reply.status} without an order uuid"
            )
        log.info("order %s (%s) accepted for %s %s", uuid, client_order_id, side, market)
        # The POST reply is never the fill (a market buy answers state "wait", volume null): always read the
        # order back so the fill is computed from its trades.
        first = self._try_parse_fill(data) or _pending_fill(uuid, client_order_id, market, side)
        return self._poll(replace(first, resolved=False), client_order_id)

    def _resolve_ambiguous(self, market: Market, side: Side, client_order_id: str, reason: str) -> Fill:
        """The POST may or may not have created an order: look it up by identifier, never resend."""
        log.warning("order %s: outcome unknown (%s); looking it up by identifier", client_order_id, reason)
        not_found_last = False
        delay = self.poll_interval_s
        for attempt in range(self.lookup_attempts):
            if attempt:
                self._sleep(delay)
                delay *= 2  # the exchange may still be processing the request that timed out
            try:
                data = self._http.get("/v1/order", params=[("identifier", client_order_id)], private=True, retries=0)
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
        return _pending_fill("", client_order_id, market, side)

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
                data = self._http.get("/v1/order", params=[("uuid", fill.uuid)], private=True, retries=0)
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

    def _closed_window(self, market: Market, start: datetime, end: datetime, depth: int = 0) -> list[Fill]:
        params = [
            ("market", market),
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
        data = self._http.get(path, params=params, private=True)
        if not isinstance(data, list):
            raise self._shape_error("GET", path)
        if len(data) >= CLOSED_ORDERS_LIMIT:
            if depth >= 12 or end - start <= timedelta(seconds=1):
                raise ExchangeError(f"GET {path}: more than {CLOSED_ORDERS_LIMIT} orders in one second")
            mid = start + (end - start) / 2
            return self._closed_window(market, start, mid, depth + 1) + self._closed_window(
                market, mid, end, depth + 1
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

    # ------------------------------------------------------------------ responses

    def _market_get(self, path: str, params: Sequence[tuple[str, str]], market: Market) -> Any:
        """A quotation GET about one market: Upbit's bare 404 ``Code not found`` names the market instead."""
        try:
            return self._http.get(path, params=params)
        except ExchangeError as e:
            if e.status == 404 and not isinstance(e, OrderNotFoundError):
                raise ExchangeError(f"Upbit has no market {market} (GET {path} answered 404 Code not found); "
                                    "check the market code (TRADEBOT_TICKER)", name="market_not_found",
                                    status=404) from e
            raise

    def _markets_get(self, path: str, markets: Sequence[Market]) -> Any:
        """A quotation GET about several markets at once (Upbit takes them comma-separated)."""
        try:
            return self._http.get(path, params=[("markets", ",".join(markets))])
        except ExchangeError as e:
            if e.status == 404 and not isinstance(e, OrderNotFoundError):
                raise ExchangeError(f"Upbit does not know one of the markets {', '.join(markets)} (GET {path} answered "
                                    "404 Code not found); check their codes (`tradebot markets` lists them)",
                                    name="market_not_found", status=404) from e
            raise

    def _shape_error(self, method: str, path: str) -> ExchangeError:
        return shape_error(method, path)

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


def _pending_fill(uuid: str, client_order_id: str | None, market: Market, side: Side) -> Fill:
    return Fill(
        uuid=uuid,
        client_order_id=client_order_id,
        market=market,
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
