"""UpbitExchange over real HTTP: against the in-process Upbit simulator, and against a tiny scripted server that
replays recorded Upbit responses (tests/data/upbit/) for shapes and failures the simulator does not produce.

Time is virtual: one ``VClock`` drives the adapter's ``sleep``/``clock``/``now`` and the simulator's clock, so
fill delays, poll budgets and rate-limit waits cost no wall time and can be asserted on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
import pytest
import requests

from tradebot.errors import ExchangeError, ExchangeTransientError, OrderNotFoundError, OrderRejectedError
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
from tradebot.exchange.upbit import UpbitExchange, parse_remaining_req, parse_upbit_time
from tradebot.models import Fill, Market, OrderState

DATA = Path(__file__).parent / "data" / "upbit"

# Recognizable fake keys, >= 64 bytes (PyJWT warns about short HMAC keys).
ACCESS = "TEST-ACCESS-KEY-do-not-leak-" + "a1b2c3d4" * 6
SECRET = "TEST-SECRET-KEY-do-not-leak-" + "s9t8u7v6" * 6
WRONG_SECRET = "TEST-WRONG-SECRET-do-not-leak-" + "w0x1y2z3" * 6
BTC = Market("KRW-BTC")


# ------------------------------------------------------------------------------------------------ helpers


class VClock:
    """Virtual time shared by the adapter and the simulator; ``sleep`` advances it instantly."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(seconds, 0.0)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def make_exchange(url: str, clock: VClock, secret: str = SECRET, **kw: Any) -> UpbitExchange:
    options: dict[str, Any] = {
        "timeout": (2.0, 5.0),
        "poll_timeout_s": 5.0,
        "poll_interval_s": 0.25,
        "sleep": clock.sleep,
        "clock": clock.time,
        "now": clock.now,
    }
    options.update(kw)
    return UpbitExchange(ACCESS, secret, url, **options)


def record_fill_matches(fill: Fill, record: dict[str, Any]) -> None:
    """The adapter's fill equals the simulator's order of record, to the last decimal."""
    trades = record["trades"]
    assert fill.uuid == record["uuid"]
    assert fill.state == OrderState(record["state"])
    assert fill.volume == sum((Decimal(t["volume"]) for t in trades), Decimal(0)) == Decimal(record["executed_volume"])
    assert fill.gross == sum((Decimal(t["funds"]) for t in trades), Decimal(0)) == Decimal(record["executed_funds"])
    assert fill.fee == Decimal(record["paid_fee"])
    assert [(e.price, e.volume, e.funds) for e in fill.executions] == [
        (Decimal(t["price"]), Decimal(t["volume"]), Decimal(t["funds"])) for t in trades
    ]
    assert fill.avg_price == fill.gross / fill.volume


def krw_of(sim: SimulatorServer) -> Decimal:
    return next(Decimal(a["balance"]) for a in sim.state()["accounts"] if a["currency"] == "KRW")


@pytest.fixture
def vclock() -> VClock:
    return VClock()


@pytest.fixture
def sim(vclock: VClock) -> Iterator[SimulatorServer]:
    cfg = SimulatorConfig(
        access_key=ACCESS,
        secret_key=SECRET,
        starting_krw=Decimal(1_000_000),
        seed=7,
        history_hours=24 * 40,
        clock=vclock.time,
    )
    with SimulatorServer(cfg) as server:
        yield server


@pytest.fixture
def ex(sim: SimulatorServer, vclock: VClock) -> UpbitExchange:
    return make_exchange(sim.url, vclock)


class RacingSession(requests.Session):
    """Runs ``before_post`` right before the first POST: something changes on the exchange between the
    adapter's pre-trade check and its order (another client, a price move)."""

    def __init__(self, before_post: Callable[[], object]) -> None:
        super().__init__()
        self._before_post: Callable[[], object] | None = before_post

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if method.upper() == "POST" and self._before_post is not None:
            callback, self._before_post = self._before_post, None
            callback()
        return super().request(method, url, *args, **kwargs)


# -------------------------------------------------------------------------- a tiny scripted Upbit server


@dataclass
class Canned:
    """One scripted answer. ``body``: a dict/list (sent as JSON), a str/bytes (sent verbatim), or a
    fixture file name ``"@name.json"`` (sent verbatim, so its numbers stay exactly as recorded)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=lambda: {"Remaining-Req": "group=default; min=1800; sec=29"})
    delay: float = 0.0  # real seconds before answering (to make the client time out)


@dataclass
class Seen:
    method: str
    path: str
    query: str
    params: dict[str, list[str]]
    body: dict[str, Any] | None
    authorization: str | None
    at: float


class ScriptedUpbit:
    """Upbit's wire format over loopback with scripted answers. Private paths verify the JWT like Upbit:
    signature with ``SECRET``, ``access_key``, and ``query_hash`` = SHA512 of the query string as sent, unquoted
    (Upbit's own examples send ``states%5B%5D=done`` and hash ``states[]=done``); POST: of the url-encoded JSON
    body."""

    PRIVATE = ("/v1/accounts", "/v1/order", "/v1/orders", "/v1/orders/closed")

    def __init__(self, clock: VClock | None = None) -> None:
        self.clock = clock
        self.routes: dict[tuple[str, str], list[Canned] | Callable[[Seen], Canned]] = {}
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self, "GET")

            def do_POST(self) -> None:
                outer._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ScriptedUpbit:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def on(self, method: str, path: str, *answers: Canned | Callable[[Seen], Canned]) -> None:
        """Answers in order; the last one repeats. A single callable computes every answer."""
        if len(answers) == 1 and callable(answers[0]):
            self.routes[(method, path)] = answers[0]
        else:
            self.routes[(method, path)] = [a for a in answers if isinstance(a, Canned)]

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    def _answer(self, seen: Seen) -> Canned:
        route = self.routes.get((seen.method, seen.path))
        if route is None:
            return Canned(404, {"error": {"name": 404, "message": "Code not found"}})
        if callable(route):
            return route(seen)
        return route.pop(0) if len(route) > 1 else route[0]

    def _verify(self, seen: Seen) -> Canned | None:
        if not seen.authorization or not seen.authorization.startswith("Bearer "):
            return Canned(401, {"error": {"name": "no_authorization_token", "message": "no token"}})
        try:
            claims = jwt.decode(seen.authorization[7:], SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return Canned(401, {"error": {"name": "jwt_verification", "message": "Failed to verify Jwt token."}})
        if claims.get("access_key") != ACCESS:
            return Canned(401, {"error": {"name": "jwt_verification", "message": "Failed to verify Jwt token."}})
        hashed = unquote(seen.query) if seen.method == "GET" else unquote(urlencode(list((seen.body or {}).items())))
        if hashed:
            if claims.get("query_hash") != hashlib.sha512(hashed.encode()).hexdigest():
                return Canned(401, {"error": {"name": "invalid_query_payload", "message": "Failed to verify query."}})
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        params: dict[str, list[str]] = {}
        for k, v in parse_qsl(split.query, keep_blank_values=True):
            params.setdefault(k, []).append(v)
        seen = Seen(
            method=method,
            path=split.path,
            query=split.query,
            params=params,
            body=json.loads(raw) if raw else None,
            authorization=handler.headers.get("Authorization"),
            at=self.clock.t if self.clock else time.time(),
        )
        self.seen.append(seen)
        answer = (self._verify(seen) if split.path in self.PRIVATE else None) or self._answer(seen)
        if answer.delay:
            time.sleep(answer.delay)
        body = answer.body
        if isinstance(body, str) and body.startswith("@"):
            payload = (DATA / body[1:]).read_bytes()
        elif isinstance(body, (dict, list)):
            payload = json.dumps(body).encode()
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = body or b""
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            for k, v in answer.headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


def _req(group: str, sec: int) -> dict[str, str]:
    return {"Remaining-Req": f"group={group}; min=600; sec={sec}"}


@pytest.fixture
def scripted(vclock: VClock) -> Iterator[ScriptedUpbit]:
    with ScriptedUpbit(vclock) as server:
        server.on("GET", "/v1/accounts", Canned(body="@accounts.json"))
        server.on("GET", "/v1/orderbook", Canned(body="@orderbook.json", headers=_req("orderbook", 9)))
        server.on("GET", "/v1/ticker", Canned(body="@ticker.json", headers=_req("ticker", 9)))
        yield server


def fixture_json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


# ================================================================================ against the simulator


def test_market_buy_fill_equals_the_order_of_record(sim: SimulatorServer, ex: UpbitExchange) -> None:
    before = krw_of(sim)
    fill = ex.market_buy(BTC, Decimal(10_000), "tb-buy-1")

    [record] = sim.orders()
    assert record["identifier"] == "tb-buy-1" and record["side"] == "bid" and record["ord_type"] == "price"
    assert record["price"] in ("10000", "10000.0")
    assert fill.resolved and fill.filled and fill.side == "buy" and fill.market == BTC
    assert fill.client_order_id == "tb-buy-1"
    record_fill_matches(fill, record)
    assert fill.created_at is not None and fill.created_at.tzinfo is not None
    assert fill.created_at.utcoffset() == timedelta(0)
    # The money that left the account is exactly gross + fee (the truncation remainder was refunded).
    assert before - krw_of(sim) == fill.gross + fill.fee


def test_a_cancel_state_market_buy_counts_as_filled(sim: SimulatorServer, ex: UpbitExchange) -> None:
    fill = ex.market_buy(BTC, Decimal(12_345), "tb-buy-cancel")
    [record] = sim.orders()
    assert record["state"] == "cancel"  # leftover KRW after 8-decimal truncation is refunded, like Upbit
    assert fill.state is OrderState.CANCEL and fill.resolved and fill.filled and fill.volume > 0
    record_fill_matches(fill, record)


def test_market_sell_fill_equals_the_order_of_record(sim: SimulatorServer, ex: UpbitExchange) -> None:
    sim.set_balance("BTC", Decimal("0.01"))
    before = krw_of(sim)
    fill = ex.market_sell(BTC, Decimal("0.003"), "tb-sell-1")
    [record] = sim.orders()
    assert fill.resolved and fill.filled and fill.side == "sell" and fill.state is OrderState.DONE
    record_fill_matches(fill, record)
    assert fill.volume == Decimal("0.003")
    assert krw_of(sim) - before == fill.gross - fill.fee


@pytest.mark.parametrize("volume", [Decimal("0.00005"), Decimal("5E-5"), Decimal("0.000050000000")])
def test_no_scientific_notation_on_the_wire(sim: SimulatorServer, ex: UpbitExchange, volume: Decimal) -> None:
    # The simulator rejects "5e-05" with invalid_volume_ask, so a fill proves the plain form was sent.
    sim.set_balance("BTC", Decimal("0.001"))
    fill = ex.market_sell(BTC, volume, "tb-sell-small")
    [record] = sim.orders()
    assert record["volume"] in ("0.00005", "0.00005000")
    assert fill.filled and fill.volume == Decimal("0.00005")


def test_buy_amount_in_exponent_form_is_sent_plain(sim: SimulatorServer, ex: UpbitExchange) -> None:
    fill = ex.market_buy(BTC, Decimal("1.0E+4"), "tb-buy-exp")
    [record] = sim.orders()
    assert Decimal(record["price"]) == Decimal(10_000) and fill.filled


def test_sell_volume_is_truncated_to_8_decimals(sim: SimulatorServer, ex: UpbitExchange) -> None:
    sim.set_balance("BTC", Decimal("0.01"))
    fill = ex.market_sell(BTC, Decimal("0.000123456789"), "tb-sell-trunc")
    [record] = sim.orders()
    assert Decimal(record["volume"]) == Decimal("0.00012345") == fill.volume


def test_dropped_order_response_is_resolved_by_identifier_without_resending(
    sim: SimulatorServer, ex: UpbitExchange
) -> None:
    sim.set_faults(drop_next_order_response=1)
    fill = ex.market_buy(BTC, Decimal(20_000), "tb-dropped")
    orders = sim.orders()
    assert len(orders) == 1
    assert fill.resolved and fill.filled and fill.client_order_id == "tb-dropped"
    record_fill_matches(fill, orders[0])


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_after_acceptance_gives_one_order_and_its_fill(
    sim: SimulatorServer, ex: UpbitExchange, status: int
) -> None:
    sim.set_faults(fail_next=1, fail_status=status, fail_path="/v1/orders", fail_method="POST", fail_after_accept=True)
    fill = ex.market_buy(BTC, Decimal(15_000), "tb-5xx")
    [record] = sim.orders()
    assert fill.resolved and fill.filled
    record_fill_matches(fill, record)


def test_429_on_order_post_is_looked_up_not_resent(sim: SimulatorServer, ex: UpbitExchange) -> None:
    # Rejected by the rate limiter before anything happened: the lookup proves no order exists.
    sim.set_faults(fail_next=1, fail_status=429, fail_path="/v1/orders", fail_method="POST")
    with pytest.raises(ExchangeTransientError, match="not placed") as info:
        ex.market_buy(BTC, Decimal(10_000), "tb-429-a")
    assert info.value.name == "order_not_found"
    assert sim.orders() == []

    # Accepted, then answered 429 (text body): found by identifier, still exactly one order.
    sim.set_faults(fail_next=1, fail_status=429, fail_body="text", fail_path="/v1/orders", fail_after_accept=True)
    fill = ex.market_buy(BTC, Decimal(10_000), "tb-429-b")
    [record] = sim.orders()
    assert record["identifier"] == "tb-429-b"
    record_fill_matches(fill, record)


@pytest.mark.parametrize("body", ["text", "json"])
def test_429_on_a_get_waits_then_retries(
    sim: SimulatorServer, ex: UpbitExchange, vclock: VClock, body: str
) -> None:
    sim.set_faults(fail_next=1, fail_status=429, fail_body=body, fail_path="/v1/ticker")
    start = vclock.t
    price = ex.ticker_price(BTC)
    assert price == sim.price(BTC)
    assert vclock.t - start >= 1.0  # waited for the next rate-limit second before asking again


def test_429_on_every_get_attempt_is_transient(sim: SimulatorServer, ex: UpbitExchange) -> None:
    sim.set_faults(fail_next=10, fail_status=429, fail_body="text", fail_path="/v1/ticker")
    with pytest.raises(ExchangeTransientError) as info:
        ex.ticker_price(BTC)
    assert info.value.status == 429


def test_fill_slower_than_the_poll_budget_is_unresolved_then_reconciled(
    sim: SimulatorServer, vclock: VClock
) -> None:
    sim.set_faults(fill_delay_s=30.0)
    ex = make_exchange(sim.url, vclock, poll_timeout_s=2.0, poll_interval_s=0.25)
    fill = ex.market_buy(BTC, Decimal(10_000), "tb-slow")
    assert not fill.resolved and fill.uuid and fill.state is OrderState.WAIT
    assert fill.client_order_id == "tb-slow" and fill.volume == 0
    [record] = sim.orders()
    assert record["state"] == "wait" and record["uuid"] == fill.uuid

    vclock.sleep(30.0)  # the exchange finishes the order while the bot is not looking
    later = ex.get_order(client_order_id="tb-slow")
    [record] = sim.orders()
    assert later.resolved and later.filled
    record_fill_matches(later, record)
    assert ex.get_order(uuid=fill.uuid) == later


def test_poll_attempt_budget_bounds_polling_too(sim: SimulatorServer, vclock: VClock) -> None:
    sim.set_faults(fill_delay_s=30.0)
    ex = make_exchange(sim.url, vclock, poll_timeout_s=1000.0, max_poll_attempts=3)
    start = vclock.t
    fill = ex.market_buy(BTC, Decimal(10_000), "tb-slow-2")
    assert not fill.resolved and fill.uuid
    assert vclock.t - start < 5


def test_pre_trade_checks_reject_before_any_order(sim: SimulatorServer, ex: UpbitExchange) -> None:
    sim.set_balance("BTC", Decimal("0.0001"))
    price = sim.price(BTC)
    cases: list[tuple[Callable[[], Fill], str, str]] = [
        (lambda: ex.market_buy(BTC, Decimal(4_999), "tb-p1"), "under_min_total_bid", "minimum"),
        (lambda: ex.market_buy(BTC, Decimal("4999.99"), "tb-p2"), "under_min_total_bid", "minimum"),
        (lambda: ex.market_buy(BTC, Decimal(1_000_000_001), "tb-p3"), "over_max_total_bid", "maximum"),
        # 999,600 × 1.0005 = 1,000,099.8 > 1,000,000 free KRW: the fee would not fit.
        (lambda: ex.market_buy(BTC, Decimal(999_600), "tb-p4"), "insufficient_funds_bid", "fee"),
        (lambda: ex.market_sell(BTC, Decimal("0.0002"), "tb-p5"), "insufficient_funds_ask", "free balance"),
        (lambda: ex.market_sell(BTC, Decimal("0.000000001"), "tb-p6"), "invalid_volume_ask", "zero"),
        # Worth less than 5,000 KRW at the best bid (the simulator's BTC trades around 130,000,000 KRW).
        (lambda: ex.market_sell(BTC, Decimal(4_000) / price, "tb-p7"), "under_min_total_market_ask", "best bid"),
        (lambda: ex.market_buy(BTC, Decimal(10_000), "bad id with spaces"), "invalid_identifier", "client order id"),
    ]
    for call, name, words in cases:
        with pytest.raises(OrderRejectedError, match=words) as info:
            call()
        assert info.value.name == name
    assert sim.orders() == []
    # The identifiers were never sent, so they are still usable.
    assert ex.market_buy(BTC, Decimal(10_000), "tb-p1").filled


def test_duplicate_identifier_is_rejected_and_places_nothing_more(sim: SimulatorServer, ex: UpbitExchange) -> None:
    first = ex.market_buy(BTC, Decimal(10_000), "tb-dup")
    with pytest.raises(OrderRejectedError) as info:
        ex.market_buy(BTC, Decimal(10_000), "tb-dup")
    assert info.value.name == "duplicate_identifier" and info.value.status == 400
    [record] = sim.orders()
    assert record["uuid"] == first.uuid


def test_exchange_side_insufficient_funds_bid(sim: SimulatorServer, vclock: VClock) -> None:
    # The KRW disappears between the pre-trade check and the POST (e.g. a withdrawal).
    session = RacingSession(lambda: sim.set_balance("KRW", Decimal(3_000)))
    ex = make_exchange(sim.url, vclock, session=session)
    with pytest.raises(OrderRejectedError) as info:
        ex.market_buy(BTC, Decimal(10_000), "tb-race-bid")
    assert info.value.name == "insufficient_funds_bid" and info.value.status == 400
    assert sim.orders() == []


def test_exchange_side_under_min_total_market_ask(sim: SimulatorServer, vclock: VClock) -> None:
    sim.set_balance("BTC", Decimal("0.001"))
    volume = Decimal("0.00004")
    # Worth just over 5,000 KRW at the check; the price then falls by a fifth before the order arrives.
    sim.set_price(Decimal(5_100) / volume)
    session = RacingSession(lambda: sim.set_price(Decimal(4_000) / volume))
    ex = make_exchange(sim.url, vclock, session=session)
    with pytest.raises(OrderRejectedError) as info:
        ex.market_sell(BTC, volume, "tb-race-ask")
    assert info.value.name == "under_min_total_market_ask"
    assert sim.orders() == []


def test_wrong_secret_is_an_auth_error_not_transient(sim: SimulatorServer, vclock: VClock) -> None:
    ex = make_exchange(sim.url, vclock, secret=WRONG_SECRET)
    with pytest.raises(ExchangeError) as info:
        ex.balances()
    err = info.value
    assert not isinstance(err, (ExchangeTransientError, OrderRejectedError))
    assert err.name == "jwt_verification" and err.status == 401
    assert "UPBIT_ACCESS_KEY" in str(err) and "UPBIT_SECRET_KEY" in str(err) and "IP" in str(err)
    with pytest.raises(ExchangeError, match="UPBIT_SECRET_KEY"):
        ex.market_buy(BTC, Decimal(10_000), "tb-auth")
    assert sim.orders() == []


def test_unknown_order_raises_order_not_found(ex: UpbitExchange) -> None:
    with pytest.raises(OrderNotFoundError) as info:
        ex.get_order(uuid="00000000-0000-4000-8000-000000000000")
    assert info.value.name == "order_not_found" and info.value.status == 404
    with pytest.raises(OrderNotFoundError):
        ex.get_order(client_order_id="tb-never-sent")


def test_balances_ticker_orderbook(sim: SimulatorServer, ex: UpbitExchange) -> None:
    sim.set_balance("BTC", Decimal("0.12345678"), avg_buy_price=Decimal(120_000_000))
    balances = {b.currency: b for b in ex.balances()}
    assert balances["KRW"].free == Decimal(1_000_000) and balances["KRW"].locked == 0
    assert balances["BTC"].free == Decimal("0.12345678")
    assert balances["BTC"].avg_buy_price == Decimal(120_000_000)
    assert ex.ticker_price(BTC) == sim.price(BTC)
    book = ex.orderbook(BTC)
    assert book.market == BTC and len(book.levels) == 30
    assert book.best_bid < book.best_ask
    assert all(isinstance(level.bid_size, Decimal) for level in book.levels)


def test_closed_orders_match_the_records_and_span_more_than_seven_days(
    sim: SimulatorServer, ex: UpbitExchange, vclock: VClock
) -> None:
    start = vclock.now()
    buy = ex.market_buy(BTC, Decimal(10_000), "tb-c1")
    vclock.sleep(3600)
    sell = ex.market_sell(BTC, buy.volume, "tb-c2")
    # since 10 days ago: Upbit (and the simulator) refuse windows longer than 7 days.
    closed = ex.closed_orders(BTC, vclock.now() - timedelta(days=10))
    assert [f.uuid for f in closed] == [buy.uuid, sell.uuid]
    for fill, record in zip(closed, sim.orders()):
        assert fill.resolved and fill.filled
        assert fill.volume == Decimal(record["executed_volume"])
        assert fill.gross == Decimal(record["executed_funds"])
        assert fill.fee == Decimal(record["paid_fee"])
        assert fill.client_order_id == record["identifier"]
    assert [f.uuid for f in ex.closed_orders(BTC, start + timedelta(minutes=30))] == [sell.uuid]


def test_candles_from_the_simulator_page_and_drop_the_forming_candle(
    sim: SimulatorServer, ex: UpbitExchange, vclock: VClock
) -> None:
    hourly = ex.candles(BTC, "minute60", 450)
    assert len(hourly) == 450
    current_hour = vclock.now().replace(minute=0, second=0, microsecond=0)
    assert hourly[-1].start == current_hour - timedelta(hours=1)
    assert all(b.start - a.start == timedelta(hours=1) for a, b in zip(hourly, hourly[1:]))
    assert all(c.start.utcoffset() == timedelta(0) for c in hourly)
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in hourly)

    daily = ex.candles(BTC, "day", 5)
    assert len(daily) == 5
    assert daily[-1].start == current_hour.replace(hour=0) - timedelta(days=1)
    older = ex.candles(BTC, "minute60", 10, to=hourly[100].start)
    assert [c.start for c in older] == [c.start for c in hourly[90:100]]


# ======================================================================= against recorded Upbit responses


def test_fill_is_computed_from_trades_of_a_recorded_cancel_buy(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on("POST", "/v1/orders", Canned(201, "@order_buy_post_201.json"))
    scripted.on(
        "GET", "/v1/order", Canned(body="@order_buy_post_201.json"), Canned(body="@order_buy_cancel_filled.json")
    )
    ex = make_exchange(scripted.url, vclock)
    fill = ex.market_buy(BTC, Decimal("5000.9"), "tb-fixture-buy-1")

    [post] = scripted.requests_to("POST", "/v1/orders")
    # Whole KRW as a plain string, our identifier, and no volume for a market buy.
    assert post.body == {
        "market": BTC, "side": "bid", "ord_type": "price", "price": "5000", "identifier": "tb-fixture-buy-1"
    }
    assert fill.state is OrderState.CANCEL and fill.filled and fill.resolved
    assert fill.uuid == "9ca023a5-851b-4fec-9f0a-48cd83c2eaae"
    assert fill.volume == Decimal("0.00003546")
    assert fill.gross == Decimal("4999.84454")
    assert fill.fee == Decimal("2.49992227")
    assert fill.avg_price == Decimal("4999.84454") / Decimal("0.00003546")
    assert fill.created_at == datetime(2026, 11, 26, 6, 0, 1, tzinfo=UTC)
    assert len(fill.executions) == 2


def test_recorded_market_sell_parses_to_the_decimal(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on("GET", "/v1/order", Canned(body="@order_sell_done.json"))
    fill = make_exchange(scripted.url, vclock).get_order(uuid="47e4c3d6-0f1a-4b8e-a3b0-5c2f1d9e8a77")
    assert fill.side == "sell" and fill.state is OrderState.DONE and fill.resolved
    assert fill.volume == Decimal("1.14660939")
    assert fill.gross == Decimal("1020.4823571")
    assert fill.fee == Decimal("0.51024117855")
    assert fill.avg_price == Decimal(890)
    assert fill.client_order_id == "tb-fixture-sell-1"
    [req] = scripted.requests_to("GET", "/v1/order")
    assert req.params == {"uuid": ["47e4c3d6-0f1a-4b8e-a3b0-5c2f1d9e8a77"]}  # in the query string, hash verified


def test_final_state_with_incomplete_trades_is_not_a_fill_yet(scripted: ScriptedUpbit, vclock: VClock) -> None:
    partial = fixture_json("order_buy_cancel_filled.json")
    partial["trades"] = partial["trades"][:1]  # executed_volume says more than the trades add up to
    scripted.on("GET", "/v1/order", Canned(body=partial))
    fill = make_exchange(scripted.url, vclock).get_order(uuid=partial["uuid"])
    assert not fill.resolved


@pytest.mark.parametrize(
    ("status", "name", "side", "expected"),
    [
        (400, "insufficient_funds_bid", "buy", OrderRejectedError),
        (400, "under_min_total_bid", "buy", OrderRejectedError),
        (400, "duplicate_identifier", "buy", OrderRejectedError),
        (400, "under_min_total_market_ask", "sell", OrderRejectedError),
        (400, "insufficient_funds_ask", "sell", OrderRejectedError),
        (400, "validation_error", "sell", OrderRejectedError),
        (401, "jwt_verification", "buy", ExchangeError),
        (401, "no_authorization_i_p", "buy", ExchangeError),
        (401, "out_of_scope", "sell", ExchangeError),
    ],
)
def test_order_error_names_map_to_typed_errors(
    scripted: ScriptedUpbit, vclock: VClock, status: int, name: str, side: str, expected: type[Exception]
) -> None:
    scripted.on("POST", "/v1/orders", Canned(status, {"error": {"name": name, "message": "recorded message"}}))
    ex = make_exchange(scripted.url, vclock)
    with pytest.raises(ExchangeError) as info:
        if side == "buy":
            ex.market_buy(BTC, Decimal(10_000), "tb-err")
        else:
            ex.market_sell(BTC, Decimal("0.0001"), "tb-err")
    err = info.value
    assert type(err) is expected
    assert err.name == name and err.status == status
    if status == 401:
        assert "UPBIT_ACCESS_KEY" in str(err)
    assert len(scripted.requests_to("POST", "/v1/orders")) == 1  # a definite rejection is never retried
    assert scripted.requests_to("GET", "/v1/order") == []


def test_unknown_market_and_odd_bodies(scripted: ScriptedUpbit, vclock: VClock) -> None:
    ex = make_exchange(scripted.url, vclock, get_retries=0)
    scripted.on("GET", "/v1/ticker", Canned(404, {"error": {"name": 404, "message": "Code not found"}}))
    with pytest.raises(ExchangeError) as info:
        ex.ticker_price("KRW-NOPE")
    assert info.value.status == 404 and not isinstance(info.value, ExchangeTransientError)

    scripted.on("GET", "/v1/ticker", Canned(200, "<html>maintenance</html>"))
    with pytest.raises(ExchangeError, match="unreadable") as info:
        ex.ticker_price(BTC)
    assert info.value.status == 200

    scripted.on("GET", "/v1/ticker", Canned(200, {"error": {"name": "server_error", "message": "oops"}}))
    with pytest.raises(ExchangeError):
        ex.ticker_price(BTC)  # an error dict is never a success

    scripted.on("GET", "/v1/ticker", Canned(502, "<html>Bad Gateway</html>"))
    with pytest.raises(ExchangeTransientError) as info:
        ex.ticker_price(BTC)
    assert info.value.status == 502

    scripted.on("GET", "/v1/ticker", Canned(200, []))
    with pytest.raises(ExchangeError, match="unexpected response"):
        ex.ticker_price(BTC)


def test_transient_get_failures_are_retried(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on(
        "GET",
        "/v1/ticker",
        Canned(503, {"error": {"name": "server_error", "message": "busy"}}),
        Canned(429, "Too many API requests.", headers={"Remaining-Req": "group=ticker; min=600; sec=0"}),
        Canned(body="@ticker.json"),
    )
    assert make_exchange(scripted.url, vclock).ticker_price(BTC) == Decimal("141005000.0")


def test_remaining_req_zero_waits_for_the_next_second_in_that_group(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on(
        "GET",
        "/v1/ticker",
        Canned(body="@ticker.json", headers=_req("ticker", 0)),
        Canned(body="@ticker.json", headers=_req("ticker", 9)),
    )
    scripted.on("GET", "/v1/accounts", Canned(body="@accounts.json", headers=_req("default", 29)))
    ex = make_exchange(scripted.url, vclock)
    ex.ticker_price(BTC)
    ex.balances()  # another group: no wait
    ex.ticker_price(BTC)  # same group, budget spent: waits
    ex.ticker_price(BTC)  # budget back: no wait
    tickers = scripted.requests_to("GET", "/v1/ticker")
    [accounts] = scripted.requests_to("GET", "/v1/accounts")
    assert accounts.at == tickers[0].at
    assert tickers[1].at - tickers[0].at >= 1.0
    assert tickers[2].at == tickers[1].at


@pytest.mark.parametrize(
    "header", ["group=default; min=1800", "garbage", "group=default;min=1800;sec=abc", "sec=3", ""]
)
def test_surprising_remaining_req_headers_are_tolerated(scripted: ScriptedUpbit, vclock: VClock, header: str) -> None:
    scripted.on("GET", "/v1/accounts", Canned(body="@accounts.json", headers={"Remaining-Req": header}))
    balances = make_exchange(scripted.url, vclock).balances()
    assert [b.currency for b in balances] == ["KRW", "BTC"]


def test_parse_helpers() -> None:
    assert parse_remaining_req("group=default; min=1800; sec=29") == ("default", 29)
    assert parse_remaining_req("sec=0 ; group=order ;min=480") == ("order", 0)
    assert parse_remaining_req(None) is None
    assert parse_upbit_time("2026-11-26T15:00:00+09:00") == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert parse_upbit_time("2026-11-26T06:00:00", naive=UTC) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def test_read_timeout_on_get_is_transient(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on("GET", "/v1/ticker", Canned(body="@ticker.json", delay=0.6))
    ex = make_exchange(scripted.url, vclock, timeout=(1.0, 0.2), get_retries=1)
    with pytest.raises(ExchangeTransientError, match=r"GET /v1/ticker failed: ReadTimeout"):
        ex.ticker_price(BTC)


def test_order_post_timeout_is_resolved_by_identifier(scripted: ScriptedUpbit, vclock: VClock) -> None:
    # The exchange takes the order but answers too late; a lookup by identifier finds it (after a miss).
    scripted.on("POST", "/v1/orders", Canned(201, "@order_buy_post_201.json", delay=0.6))
    scripted.on(
        "GET",
        "/v1/order",
        Canned(404, {"error": {"name": "order_not_found", "message": "Order not found."}}),
        Canned(body="@order_buy_cancel_filled.json"),
    )
    ex = make_exchange(scripted.url, vclock, timeout=(1.0, 0.2))
    fill = ex.market_buy(BTC, Decimal(5_000), "tb-fixture-buy-1")
    assert fill.resolved and fill.filled and fill.volume == Decimal("0.00003546")
    assert len(scripted.requests_to("POST", "/v1/orders")) == 1
    lookups = scripted.requests_to("GET", "/v1/order")
    assert lookups[0].params == {"identifier": ["tb-fixture-buy-1"]}


def test_order_lookup_that_keeps_failing_leaves_the_order_unresolved(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on("POST", "/v1/orders", Canned(500, "Internal Server Error"))
    scripted.on("GET", "/v1/order", Canned(503, "Service Unavailable"))
    fill = make_exchange(scripted.url, vclock).market_buy(BTC, Decimal(10_000), "tb-limbo")
    assert not fill.resolved and fill.uuid == "" and fill.client_order_id == "tb-limbo"
    assert fill.state is OrderState.WAIT and fill.volume == 0
    assert len(scripted.requests_to("POST", "/v1/orders")) == 1


def test_connection_refused_is_transient_and_names_only_method_and_path(vclock: VClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = make_exchange(f"http://127.0.0.1:{port}", vclock)
    with pytest.raises(ExchangeTransientError) as info:
        ex.balances()
    assert str(info.value) == "GET /v1/accounts failed: ConnectionError"


def test_private_query_hash_matches_what_is_sent(scripted: ScriptedUpbit, vclock: VClock) -> None:
    scripted.on("GET", "/v1/orders/closed", Canned(body=[fixture_json("order_sell_done.json") | {"trades": None}]))
    since = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    vclock.t = datetime(2026, 11, 26, 8, 0, tzinfo=UTC).timestamp()
    closed = make_exchange(scripted.url, vclock).closed_orders("KRW-XRP", since)
    [req] = scripted.requests_to("GET", "/v1/orders/closed")  # the scripted server verified the hash
    assert "states[]=done&states[]=cancel" in unquote(req.query)
    assert req.params["start_time"] == [str(int(since.timestamp() * 1000))]
    assert req.params["limit"] == ["1000"]
    [fill] = closed
    assert fill.volume == Decimal("1.14660939") and fill.gross == Decimal("1020.4823571")


def test_candles_paginate_keep_gaps_dedupe_and_drop_the_forming_candle(
    scripted: ScriptedUpbit, vclock: VClock
) -> None:
    now = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
    vclock.t = now.timestamp()
    forming = now.replace(minute=0)
    gaps = {forming - timedelta(hours=h) for h in (3, 150, 151, 320)}
    starts = [forming - timedelta(hours=h) for h in range(0, 700) if forming - timedelta(hours=h) not in gaps]
    row = fixture_json("candle_minute60_row.json")

    def answer(seen: Seen) -> Canned:
        count = int(seen.params["count"][0])
        to = seen.params.get("to")
        # Inclusive of `to` on purpose (real Upbit is exclusive): the adapter must dedupe.
        limit = datetime.fromisoformat(to[0]) if to else None
        chosen = [s for s in starts if limit is None or s <= limit][:count]
        body = [
            row | {"candle_date_time_utc": s.strftime("%Y-%m-%dT%H:%M:%S"), "trade_price": 1000.0 + i}
            for i, s in enumerate(chosen)
        ]
        return Canned(body=body, headers={"Remaining-Req": "group=candles; min=600; sec=9"})

    scripted.on("GET", "/v1/candles/minutes/60", answer)
    candles = make_exchange(scripted.url, vclock).candles(BTC, "minute60", 450)
    expected = sorted(s for s in starts if s < forming)[-450:]
    assert [c.start for c in candles] == expected  # oldest first, gaps kept as gaps, no duplicates
    assert all(c.start.tzinfo is not None and c.start.utcoffset() == timedelta(0) for c in candles)
    assert isinstance(candles[0].close, Decimal) and candles[0].volume == Decimal("8.76543219")
    pages = scripted.requests_to("GET", "/v1/candles/minutes/60")
    assert "to" not in pages[0].params
    for previous, page in zip(pages, pages[1:]):
        sent_to = datetime.fromisoformat(page.params["to"][0])
        assert sent_to in starts and sent_to < datetime.fromisoformat(previous.params.get("to", [now.isoformat()])[0])
    assert all(int(p.params["count"][0]) <= 200 for p in pages)


def test_day_candles_drop_today(scripted: ScriptedUpbit, vclock: VClock) -> None:
    now = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
    vclock.t = now.timestamp()
    row = fixture_json("candle_minute60_row.json")
    days = [datetime(2026, 11, 26, tzinfo=UTC) - timedelta(days=d) for d in range(5)]
    body = [row | {"candle_date_time_utc": d.strftime("%Y-%m-%dT%H:%M:%S")} for d in days]
    scripted.on("GET", "/v1/candles/days", Canned(body=body))
    candles = make_exchange(scripted.url, vclock).candles(BTC, "day", 3)
    assert [c.start.day for c in candles] == [23, 24, 25]


# ================================================================================================ secrets


def test_secrets_never_appear_in_errors_logs_or_repr(
    sim: SimulatorServer, scripted: ScriptedUpbit, vclock: VClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - every error is inspected below
            errors.append(e)

    good = make_exchange(sim.url, vclock)
    wrong = make_exchange(sim.url, vclock, secret=WRONG_SECRET)
    collect(wrong.balances)
    collect(lambda: wrong.market_buy(BTC, Decimal(10_000), "tb-s1"))
    collect(lambda: good.market_buy(BTC, Decimal(1), "tb-s2"))
    collect(lambda: good.get_order(uuid="00000000-0000-4000-8000-000000000000"))
    sim.set_faults(fail_next=1, fail_status=429, fail_path="/v1/orders")
    collect(lambda: good.market_buy(BTC, Decimal(10_000), "tb-s3"))
    sim.set_faults(fail_next=5, fail_status=500, fail_path="/v1/ticker")
    collect(lambda: good.ticker_price(BTC))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    collect(make_exchange(dead, vclock).balances)
    scripted.on("GET", "/v1/accounts", Canned(body="@accounts.json", delay=0.6))
    collect(make_exchange(scripted.url, vclock, timeout=(1.0, 0.2), get_retries=0).balances)
    # A misbehaving server that echoes the key back in its error message.
    scripted.on("GET", "/v1/ticker", Canned(400, {"error": {"name": "validation_error", "message": f"bad {ACCESS}"}}))
    collect(lambda: make_exchange(scripted.url, vclock, get_retries=0).ticker_price(BTC))
    assert len(errors) == 9

    texts = [repr(good), repr(wrong)] + [r.getMessage() for r in caplog.records]
    for err in errors:
        assert isinstance(err, ExchangeError), err
        texts += [str(err), repr(err)]
    for text in texts:
        assert ACCESS not in text and SECRET not in text and WRONG_SECRET not in text
        assert "Bearer" not in text and "eyJ" not in text  # no Authorization header, no JWT
