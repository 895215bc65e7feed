"""The HTTP side of the simulator: the route table, request parsing, JWT checks, the ``Remaining-Req``
header, injected faults and the ``/_sim/`` control API, in one ``BaseHTTPRequestHandler``."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from tradebot.exchange.simulator import endpoints
from tradebot.exchange.simulator.config import Faults
from tradebot.exchange.simulator.engine import _Exchange
from tradebot.exchange.simulator.wire import (
    _ApiError,
    _dumps,
    _not_found_market,
    _Params,
    _Request,
    _validation,
)

# The package's name, not this module's: the simulator logs as one logger, as it did when it was one module.
_log = logging.getLogger(__package__)

_Endpoint = Callable[[_Exchange, _Params], tuple[int, Any]]

# Route → (Remaining-Req group, private?, endpoint).
_ROUTES: dict[tuple[str, str], tuple[str, bool, _Endpoint]] = {
    ("GET", "/v1/candles/minutes/60"): ("candles", False, endpoints.candles_minutes),
    ("GET", "/v1/candles/days"): ("candles", False, endpoints.candles_days),
    ("GET", "/v1/ticker"): ("ticker", False, endpoints.ticker),
    ("GET", "/v1/market/all"): ("market", False, endpoints.market_all),
    ("GET", "/v1/orderbook"): ("orderbook", False, endpoints.orderbook),
    ("GET", "/v1/accounts"): ("default", True, endpoints.list_accounts),
    ("POST", "/v1/orders"): ("order", True, _Exchange.create_order),
    ("GET", "/v1/order"): ("default", True, endpoints.get_order),
    ("GET", "/v1/orders/closed"): ("default", True, endpoints.closed_orders),
    ("GET", "/v1/orders/open"): ("default", True, endpoints.open_orders),
    ("GET", "/v1/orders/uuids"): ("default", True, endpoints.orders_by_ids),
    ("GET", "/v1/orders/chance"): ("default", True, endpoints.chance),
}

# Per-second request budgets (Upbit: quotation 10/s per group, exchange 30/s, order creation 8/s) and the
# legacy per-minute figure that pyupbit's header regex still insists on.
_GROUP_LIMITS: dict[str, tuple[int, int]] = {
    "candles": (600, 10),
    "ticker": (600, 10),
    "market": (600, 10),
    "orderbook": (600, 10),
    "default": (1800, 30),
    "order": (480, 8),
}


def _remaining_req(ex: _Exchange, group: str, *, exhausted: bool = False) -> str:
    """The ``Remaining-Req`` header for one more request of ``group`` in the current second."""
    per_min, per_sec = _GROUP_LIMITS.get(group, _GROUP_LIMITS["default"])
    with ex.lock:
        second = int(ex.now())
        start, count = ex.windows.get(group, (second, 0))
        count = count + 1 if start == second else 1
        ex.windows[group] = (second, count)
    left = 0 if exhausted else max(per_sec - count, 0)
    return f"group={group}; min={per_min}; sec={left}"


def _over_rate_limit(ex: _Exchange, group: str) -> bool:
    """Whether ``group`` already used Upbit's per-second budget in the current second: the same count the
    ``Remaining-Req`` header reports, so a client that paces itself by the header never meets the 429."""
    _, per_sec = _GROUP_LIMITS.get(group, _GROUP_LIMITS["default"])
    with ex.lock:
        start, count = ex.windows.get(group, (None, 0))
        return start == int(ex.now()) and count >= per_sec


def _verify(ex: _Exchange, authorization: str | None, request: _Request) -> None:
    """Check the JWT like Upbit: signature, access key, unused nonce, and the parameters' SHA512 hash."""
    import jwt

    if not authorization or not authorization.startswith("Bearer "):
        raise _ApiError(401, "no_authorization_token", "Please check Authorization Header")
    token = authorization[len("Bearer ") :].strip()
    try:
        claims = jwt.decode(
            token,
            ex.config.secret_key,
            algorithms=["HS256", "HS384", "HS512"],
            options={"require": ["access_key", "nonce"]},
        )
    except jwt.PyJWTError:
        raise _ApiError(401, "jwt_verification", "Failed to verify Jwt token.") from None
    if claims.get("access_key") != ex.config.access_key:
        raise _ApiError(401, "jwt_verification", "Failed to verify Jwt token.")
    if request.params.pairs or "query_hash" in claims:
        query_hash = claims.get("query_hash")
        if claims.get("query_hash_alg", "SHA512") != "SHA512" or not isinstance(query_hash, str):
            raise _ApiError(401, "invalid_query_payload", "Failed to verify query.")
        candidates = request.hash_candidates or ("",)
        expected = [hashlib.sha512(c.encode("utf-8")).hexdigest() for c in candidates]
        if not any(hmac.compare_digest(e, query_hash.lower()) for e in expected):
            raise _ApiError(401, "invalid_query_payload", "Failed to verify query.")
    nonce = str(claims["nonce"])
    with ex.lock:
        if nonce in ex.nonces:
            raise _ApiError(401, "nonce_used", "This nonce has already been used.")
        ex.nonces.add(nonce)


def _parse_request(query: str, body: bytes, content_type: str) -> _Request:
    """Collect parameters in the order received and every string a client may have hashed for them."""
    pairs: list[tuple[str, str]] = list(parse_qsl(query, keep_blank_values=True))
    bracketed: list[tuple[str, str]] | None = None
    raws = [query]
    if body:
        text = body.decode("utf-8")
        if "json" in content_type or text.lstrip().startswith("{"):
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("the JSON body must be an object")
            bracketed = list(pairs)
            for key, value in obj.items():
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if v is None:
                        continue
                    if isinstance(v, str):
                        s = v
                    else:  # JSON numbers and booleans hash as their JSON text (true, 5000, 0.5)
                        s = json.dumps(v)
                    pairs.append((key, s))
                    # A JSON array is hashed as key[]=a&key[]=b (Upbit's convention for arrays).
                    bracketed.append((key + "[]" if isinstance(value, list) and not key.endswith("[]") else key, s))
        else:
            pairs.extend(parse_qsl(text, keep_blank_values=True))
            raws.append(text)
    candidates: list[str] = []
    for variant in (pairs, bracketed):
        if variant:
            encoded = urlencode(variant)
            candidates += [encoded, unquote(encoded)]
    candidates += [r for r in raws if r]
    return _Request(_Params(pairs), tuple(dict.fromkeys(candidates)))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], exchange: _Exchange) -> None:
        self.exchange = exchange
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its load balancer
    timeout = 60  # idle keep-alive connections must not pin a thread forever
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK adds ~40 ms each.
    disable_nagle_algorithm = True
    server_version = "upbit-simulator"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing
    def _send(self, status: int, body: bytes, content_type: str, remaining: str | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if remaining is not None:
            self.send_header("Remaining-Req", remaining)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, remaining: str | None) -> None:
        self._send(status, _dumps(payload), "application/json; charset=utf-8", remaining)

    def _send_fault(self, fault: Faults, group: str) -> None:
        ex = self.server.exchange
        status = fault.fail_status
        if status == 429:
            remaining = _remaining_req(ex, group, exhausted=True)
            if fault.fail_body == "text":
                self._send(status, b"Too many API requests.", "text/plain; charset=utf-8", remaining)
            else:
                self._send_json(
                    status, {"error": {"name": "too_many_requests", "message": "Too many API requests."}}, remaining
                )
            return
        remaining = _remaining_req(ex, group)
        if fault.fail_body == "text":
            self._send(status, b"Internal Server Error", "text/plain; charset=utf-8", remaining)
        else:
            self._send_json(status, {"error": {"name": "server_error", "message": "Internal Server Error"}}, remaining)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path
        body = self._read_body()
        if path.startswith("/_sim/"):
            self._control(method, path, body)
            return
        ex = self.server.exchange
        route = _ROUTES.get((method, path))
        if route is None:
            self._send_json(404, _not_found_market().payload(), _remaining_req(ex, "default"))
            return
        group, private, endpoint = route
        with ex.lock:  # every request counted by group, refused ones too (GET /_sim/state "requests")
            ex.request_counts[group] = ex.request_counts.get(group, 0) + 1
        if ex.enforces_rate_limits and _over_rate_limit(ex, group):
            self._send(429, b"Too many API requests.", "text/plain; charset=utf-8",
                       _remaining_req(ex, group, exhausted=True))
            return
        fault = ex.take_fault(method, path)
        if fault is not None and not fault.fail_after_accept:
            self._send_fault(fault, group)
            return
        status: int
        payload: Any
        try:
            try:
                request = _parse_request(split.query, body, self.headers.get("Content-Type", ""))
            except (ValueError, UnicodeDecodeError):
                raise _validation("malformed parameters") from None
            if private:
                _verify(ex, self.headers.get("Authorization"), request)
            status, payload = endpoint(ex, request.params)
        except _ApiError as e:
            status, payload = e.status, e.payload()
        except Exception:  # noqa: BLE001 — see below
            # A simulator bug must show as a 500, not as a silently closed connection (which is a fault
            # a test may be injecting on purpose).
            _log.exception("simulator error on %s %s", method, path)
            status, payload = 500, {"error": {"name": "simulator_error", "message": "see the simulator log"}}
        if (method, path) == ("POST", "/v1/orders") and ex.take_drop():
            # The order (if valid) is recorded; the client only sees the connection close.
            self.close_connection = True
            return
        if fault is not None:
            self._send_fault(fault, group)
            return
        self._send_json(status, payload, _remaining_req(ex, group))

    def _control(self, method: str, path: str, body: bytes) -> None:
        ex = self.server.exchange
        try:
            data: Any = json.loads(body.decode("utf-8")) if body else {}
            if not isinstance(data, dict):
                raise _validation("the body must be a JSON object")
            result = self._control_call(ex, method, path, data)
        except _ApiError as e:
            self._send_json(e.status, e.payload(), None)
            return
        except (ValueError, InvalidOperation, TypeError, KeyError) as e:
            self._send_json(400, {"error": {"name": "validation_error", "message": str(e)}}, None)
            return
        self._send(200, json.dumps(result).encode("utf-8"), "application/json; charset=utf-8", None)

    @staticmethod
    def _control_call(ex: _Exchange, method: str, path: str, data: dict[str, Any]) -> Any:
        def dec(key: str) -> Decimal | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, float):
                raise _validation(f"{key} must be a string or integer, not a float")
            return Decimal(str(value))

        if (method, path) == ("GET", "/_sim/orders"):
            return ex.orders_json()
        if (method, path) == ("GET", "/_sim/state"):
            return ex.state_json()
        if (method, path) == ("GET", "/_sim/faults"):
            return asdict(ex.faults)
        if (method, path) == ("POST", "/_sim/faults"):
            return asdict(ex.set_faults(data))
        if (method, path) == ("POST", "/_sim/price"):
            price = dec("price")
            if price is None:
                raise _validation("price is required")
            market = data.get("market") or ex.config.markets[0]
            return {"market": market, "price": format(ex.set_price(market, price), "f")}
        if (method, path) == ("POST", "/_sim/advance"):
            prices = ex.advance(int(data.get("hours", 1)), data.get("market"), dec("price"), dec("pct"))
            return {"prices": {m: format(p, "f") for m, p in prices.items()}}
        if (method, path) == ("POST", "/_sim/balance"):
            balance = dec("balance")
            if balance is None or not data.get("currency"):
                raise _validation("currency and balance are required")
            ex.set_balance(str(data["currency"]), balance, dec("avg_buy_price"))
            return ex.state_json()
        if (method, path) == ("POST", "/_sim/reset"):
            ex.reset()
            return ex.state_json()
        raise _ApiError(404, "not_found", f"no control endpoint {method} {path}")
