"""The Upbit simulator, exercised over real HTTP with ``requests`` and PyJWT, the way a client sees it."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import selectors
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, localcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests

from tradebot.exchange.simulator import Faults, SimulatorConfig, SimulatorServer, sign_jwt, tick_size

ACCESS = "test-access-key"
SECRET = "test-secret-key-" + "s" * 64  # >= 64 bytes: no PyJWT short-key warning
NOW = datetime(2026, 11, 26, 6, 30, 15, tzinfo=UTC)
FEE = Decimal("0.0005")
REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A settable clock: the simulator's candles, fill delays and rate windows all follow it."""

    def __init__(self, at: datetime = NOW) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t


def make_config(clock: Clock | None = None, **kw: Any) -> SimulatorConfig:
    return SimulatorConfig(access_key=ACCESS, secret_key=SECRET, clock=clock or Clock(), **kw)


class Api:
    """A tiny client that speaks to the simulator exactly like an Upbit client would."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.url = sim.url
        self.http = requests.Session()

    def public(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params, timeout=5)

    def private(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        send: str = "query",
        secret: str = SECRET,
        access: str = ACCESS,
        nonce: str | None = None,
        signed: dict[str, Any] | None = None,
    ) -> requests.Response:
        token = sign_jwt(access, secret, signed if signed is not None else params, nonce=nonce)
        headers = {"Authorization": f"Bearer {token}"}
        kwargs: dict[str, Any] = {"headers": headers, "timeout": 5}
        if send == "query":
            kwargs["params"] = params
        elif send == "form":  # pyupbit sends private GET parameters as a form body
            kwargs["data"] = params
        else:
            kwargs["json"] = params
        return self.http.request(method, self.url + path, **kwargs)

    def buy(self, krw: str, identifier: str | None = None, market: str = "KRW-BTC") -> requests.Response:
        params = {"market": market, "side": "bid", "price": krw, "ord_type": "price"}
        if identifier:
            params["identifier"] = identifier
        return self.private("POST", "/v1/orders", params, send="json")

    def sell(self, volume: str, identifier: str | None = None, market: str = "KRW-BTC") -> requests.Response:
        params = {"market": market, "side": "ask", "volume": volume, "ord_type": "market"}
        if identifier:
            params["identifier"] = identifier
        return self.private("POST", "/v1/orders", params, send="json")

    def order(self, **params: str) -> dict[str, Any]:
        r = self.private("GET", "/v1/order", dict(params))
        assert r.status_code == 200, r.text
        order: dict[str, Any] = r.json()
        return order

    def accounts(self) -> dict[str, dict[str, str]]:
        r = self.private("GET", "/v1/accounts")
        assert r.status_code == 200, r.text
        return {a["currency"]: a for a in r.json()}

    def book(self, market: str = "KRW-BTC") -> list[dict[str, Decimal]]:
        r = self.public("/v1/orderbook", markets=market)
        units: list[dict[str, Decimal]] = r.json(parse_float=Decimal, parse_int=Decimal)[0]["orderbook_units"]
        return units


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(make_config(clock)) as server:
        yield server


@pytest.fixture
def api(sim: SimulatorServer) -> Iterator[Api]:
    client = Api(sim)
    yield client
    client.http.close()


def error_of(r: requests.Response) -> tuple[int, Any]:
    return r.status_code, r.json()["error"]["name"]


# --------------------------------------------------------------------------------------------- market data


def test_hourly_candles_newest_first_with_the_forming_candle_at_the_current_hour(api: Api) -> None:
    r = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=200)
    assert r.status_code == 200
    candles = r.json()
    assert len(candles) == 200
    starts = [datetime.fromisoformat(c["candle_date_time_utc"]).replace(tzinfo=UTC) for c in candles]
    assert starts[0] == NOW.replace(minute=0, second=0)
    assert all(a - b == timedelta(hours=1) for a, b in itertools.pairwise(starts))
    first = candles[0]
    assert first["candle_date_time_kst"] == "2026-11-26T15:00:00"
    assert first["unit"] == 60 and first["market"] == "KRW-BTC"
    for c in candles:
        for key in ("opening_price", "high_price", "low_price", "trade_price", "candle_acc_trade_volume"):
            assert isinstance(c[key], (int, float))  # quotation numbers are JSON numbers
        assert c["low_price"] <= min(c["opening_price"], c["trade_price"])
        assert c["high_price"] >= max(c["opening_price"], c["trade_price"])
    ticker = api.public("/v1/ticker", markets="KRW-BTC").json()[0]
    assert ticker["trade_price"] == first["trade_price"] == 130_000_000  # default BTC-like level
    assert first["timestamp"] <= NOW.timestamp() * 1000


def test_to_is_exclusive_and_accepts_utc_z_offset_and_space_forms(api: Api) -> None:
    expected = "2026-11-26T05:00:00"
    for to in ("2026-11-26T06:00:00", "2026-11-26T06:00:00Z", "2026-11-26T15:00:00+09:00", "2026-11-26 06:00:00"):
        candles = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=3, to=to).json()
        assert candles[0]["candle_date_time_utc"] == expected, to
        assert len(candles) == 3
    assert error_of(api.public("/v1/candles/minutes/60", market="KRW-BTC", count=201)) == (400, "validation_error")


def test_day_candles_aggregate_hours_by_utc_day(api: Api) -> None:
    days = api.public("/v1/candles/days", market="KRW-BTC", count=40).json(parse_float=Decimal, parse_int=Decimal)
    assert len(days) == 40
    assert days[0]["candle_date_time_utc"] == "2026-11-26T00:00:00"
    assert days[1]["candle_date_time_utc"] == "2026-11-25T00:00:00"
    hours = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=7).json(parse_float=Decimal, parse_int=Decimal)
    today = [h for h in hours if h["candle_date_time_utc"].startswith("2026-11-26")]
    assert len(today) == 7  # 00:00 … 06:00, the last one forming
    assert days[0]["opening_price"] == today[-1]["opening_price"]
    assert days[0]["trade_price"] == today[0]["trade_price"]
    assert days[0]["high_price"] == max(h["high_price"] for h in today)
    assert days[0]["low_price"] == min(h["low_price"] for h in today)
    assert days[0]["candle_acc_trade_volume"] == sum(h["candle_acc_trade_volume"] for h in today)
    assert days[0]["prev_closing_price"] == days[1]["trade_price"]


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("130000000", "1000"),
        ("1000000", "1000"),
        ("999500", "500"),
        ("500000", "500"),
        ("250000", "100"),
        ("75000", "50"),
        ("12340", "10"),
        ("5005", "5"),
        ("4999", "1"),
        ("100", "1"),
        ("55.55", "0.01"),
        ("1.234", "0.001"),
    ],
)
def test_tick_size_table(price: str, tick: str) -> None:
    assert tick_size(Decimal(price)) == Decimal(tick)


@pytest.mark.parametrize(("market", "level"), [("KRW-BTC", "130000000"), ("KRW-ETH", "987654"), ("KRW-XRP", "3012")])
def test_orderbook_has_30_levels_on_upbit_ticks(market: str, level: str) -> None:
    cfg = make_config(markets=(market,), start_prices={market: Decimal(level)})
    with SimulatorServer(cfg) as sim:
        r = requests.get(sim.url + "/v1/orderbook", params={"markets": market}, timeout=5)
        raw = r.json()[0]["orderbook_units"]
        assert all(isinstance(u["ask_price"], (int, float)) and isinstance(u["bid_size"], float) for u in raw)
        units = r.json(parse_float=Decimal, parse_int=Decimal)[0]["orderbook_units"]
        ticker = requests.get(sim.url + "/v1/ticker", params={"markets": market}, timeout=5).json(
            parse_float=Decimal, parse_int=Decimal
        )[0]
    assert len(units) == 30
    asks = [u["ask_price"] for u in units]
    bids = [u["bid_price"] for u in units]
    assert asks == sorted(asks) and len(set(asks)) == 30
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == 30
    assert bids[0] == ticker["trade_price"] < asks[0]
    for p in asks + bids:
        assert p % tick_size(p) == 0, p
    for u in units:
        assert u["ask_size"] > 0 and u["bid_size"] > 0
        assert u["ask_size"] == u["ask_size"].quantize(Decimal("1e-8"))


def test_unknown_market_gets_upbits_404(api: Api) -> None:
    checks: list[tuple[str, dict[str, str]]] = [
        ("/v1/ticker", {"markets": "KRW-NOPE"}),
        ("/v1/orderbook", {"markets": "KRW-NOPE"}),
        ("/v1/candles/minutes/60", {"market": "KRW-NOPE"}),
        ("/v1/candles/days", {"market": "KRW-NOPE"}),
    ]
    for path, params in checks:
        r = api.public(path, **params)
        assert r.status_code == 404
        assert r.json() == {"error": {"name": 404, "message": "Code not found"}}


def test_remaining_req_header_counts_down_within_a_second(api: Api) -> None:
    first = api.public("/v1/candles/minutes/60", market="KRW-BTC").headers["Remaining-Req"]
    second = api.public("/v1/candles/minutes/60", market="KRW-BTC").headers["Remaining-Req"]
    assert first == "group=candles; min=600; sec=9"
    assert second == "group=candles; min=600; sec=8"
    assert api.private("GET", "/v1/accounts").headers["Remaining-Req"] == "group=default; min=1800; sec=29"
    assert api.buy("10000").headers["Remaining-Req"] == "group=order; min=480; sec=7"


def test_same_seed_gives_the_same_path_and_another_seed_does_not() -> None:
    def closes(seed: int) -> list[float]:
        with SimulatorServer(make_config(seed=seed)) as sim:
            r = requests.get(
                sim.url + "/v1/candles/minutes/60", params={"market": "KRW-BTC", "count": "200"}, timeout=5
            )
            days = requests.get(sim.url + "/v1/candles/days", params={"market": "KRW-BTC", "count": "60"}, timeout=5)
            assert len(days.json()) >= 30
            return [c["trade_price"] for c in r.json()]

    a, b, c = closes(7), closes(7), closes(8)
    assert a == b
    assert a != c
    # It moves like a market: not flat, hourly moves mostly well under 5 %.
    moves = [abs(x / y - 1) for x, y in itertools.pairwise(a)]
    assert len(set(a)) > 150
    assert sorted(moves)[len(moves) // 2] < 0.02


def test_csv_candles_are_retimed_so_the_last_row_is_the_current_hour(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    rows = ["candle_date_time_utc,opening_price,high_price,low_price,trade_price,candle_acc_trade_volume"]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(60):
        p = 50_000_000 + i * 10_000
        t = (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S")
        rows.append(f"{t},{p - 5000},{p + 20000},{p - 20000},{p},1.5")
    # Shuffled input still comes out in time order.
    path.write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")
    with SimulatorServer(make_config(candles_csv=path)) as sim:
        candles = requests.get(
            sim.url + "/v1/candles/minutes/60", params={"market": "KRW-BTC", "count": "60"}, timeout=5
        ).json(parse_float=Decimal, parse_int=Decimal)
        ticker = requests.get(sim.url + "/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5).json(
            parse_float=Decimal, parse_int=Decimal
        )[0]
    assert candles[0]["candle_date_time_utc"] == "2026-11-26T06:00:00"
    assert candles[-1]["candle_date_time_utc"] == "2026-11-23T19:00:00"
    assert [c["trade_price"] for c in candles] == [Decimal(50_000_000 + i * 10_000) for i in reversed(range(60))]
    assert candles[0]["candle_acc_trade_volume"] == Decimal("1.5")
    assert ticker["trade_price"] == Decimal(50_590_000)


def test_a_short_csv_names_its_market_and_other_markets_stay_synthetic(tmp_path: Path) -> None:
    path = tmp_path / "eth.csv"
    path.write_text(
        "market,candle_date_time_utc,opening_price,high_price,low_price,trade_price,candle_acc_trade_volume,"
        "candle_acc_trade_price\n"
        "KRW-ETH,2025-03-01T02:00:00,4990000,5010000,4980000,5000000,12.5,62500000\n"
        "KRW-ETH,2025-03-01T03:00:00,5000000,5030000,4995000,5020000,10,50200000\n"
        "KRW-ETH,2025-03-01T04:00:00,5020000,5020000,4970000,4975000,8.25,41043750\n"
    )
    with SimulatorServer(make_config(candles_csv=path)) as sim:
        eth = requests.get(sim.url + "/v1/ticker", params={"markets": "KRW-ETH,KRW-BTC"}, timeout=5).json()
        days = requests.get(sim.url + "/v1/candles/days", params={"market": "KRW-ETH"}, timeout=5).json()
    assert [t["market"] for t in eth] == ["KRW-ETH", "KRW-BTC"]
    assert eth[0]["trade_price"] == 4_975_000 and eth[1]["trade_price"] == 130_000_000
    assert days[0]["trade_price"] == 4_975_000 and days[0]["opening_price"] == 4_990_000


# ------------------------------------------------------------------------------------------ authentication


def test_private_endpoints_verify_the_jwt(api: Api) -> None:
    assert api.private("GET", "/v1/accounts").status_code == 200
    assert error_of(api.private("GET", "/v1/accounts", secret="x" * 64 + "wrong")) == (401, "jwt_verification")
    assert error_of(api.private("GET", "/v1/accounts", access="someone-else")) == (401, "jwt_verification")
    r = api.http.get(api.url + "/v1/accounts", timeout=5)
    assert error_of(r) == (401, "no_authorization_token")
    r = api.http.get(api.url + "/v1/accounts", headers={"Authorization": "Bearer not-a-jwt"}, timeout=5)
    assert error_of(r) == (401, "jwt_verification")


def test_query_hash_must_match_the_parameters(api: Api) -> None:
    good = api.private("GET", "/v1/orders/chance", {"market": "KRW-BTC"})
    assert good.status_code == 200
    wrong = api.private("GET", "/v1/orders/chance", {"market": "KRW-BTC"}, signed={"market": "KRW-ETH"})
    assert error_of(wrong) == (401, "invalid_query_payload")
    unsigned = api.private("GET", "/v1/orders/chance", {"market": "KRW-BTC"}, signed={})
    assert error_of(unsigned) == (401, "invalid_query_payload")


def test_reused_nonce_is_rejected(api: Api) -> None:
    nonce = str(uuid.uuid4())
    assert api.private("GET", "/v1/accounts", nonce=nonce).status_code == 200
    assert error_of(api.private("GET", "/v1/accounts", nonce=nonce)) == (401, "nonce_used")


def test_parameters_in_a_form_body_and_quoted_hashes_are_accepted(api: Api) -> None:
    placed = api.buy("10000", identifier="form-1").json()
    # pyupbit style: a GET with the parameters in a form-encoded body.
    r = api.private("GET", "/v1/order", {"uuid": placed["uuid"]}, send="form")
    assert r.status_code == 200 and r.json()["uuid"] == placed["uuid"]
    # A client that hashes the *quoted* form of an array parameter is accepted too.
    params = [("states[]", "done"), ("states[]", "cancel")]
    payload = {
        "access_key": ACCESS,
        "nonce": str(uuid.uuid4()),
        "query_hash": hashlib.sha512(urlencode(params).encode()).hexdigest(),
        "query_hash_alg": "SHA512",
    }
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    r = api.http.get(
        api.url + "/v1/orders/closed", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert r.status_code == 200 and [o["identifier"] for o in r.json()] == ["form-1"]


# ------------------------------------------------------------------------------------------------- orders


def expected_buy(units: list[dict[str, Decimal]], krw: Decimal) -> list[tuple[Decimal, Decimal, Decimal]]:
    """Walk the asks the way Upbit does: volume per level truncated to 8 decimals, funds = price × volume."""
    trades = []
    remaining = krw
    with localcontext() as ctx:
        ctx.prec = 60
        for u in units:
            spend = min(remaining, u["ask_price"] * u["ask_size"])
            volume = (spend / u["ask_price"]).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
            if volume == 0:
                break
            trades.append((u["ask_price"], volume, u["ask_price"] * volume))
            remaining -= u["ask_price"] * volume
    return trades


def test_market_buy_fills_exactly_and_ends_cancelled(api: Api, sim: SimulatorServer) -> None:
    krw = Decimal(500_000)
    expected = expected_buy(api.book(), krw)
    r = api.buy("500000", identifier="buy-1")
    assert r.status_code == 201
    placed = r.json()
    assert placed["state"] == "wait" and placed["side"] == "bid" and placed["ord_type"] == "price"
    assert placed["price"] == "500000.0" and placed["volume"] is None
    assert placed["executed_volume"] == "0.0" and placed["trades_count"] == 0
    assert placed["reserved_fee"] == "250.0" and placed["locked"] == "500250.0"
    assert placed["identifier"] == "buy-1" and placed["created_at"].endswith("+09:00")

    order = api.order(uuid=placed["uuid"])
    gross = sum((f for _, _, f in expected), Decimal(0))
    volume = sum((v for _, v, _ in expected), Decimal(0))
    fee = gross * FEE
    assert len(expected) >= 2  # one trade per level touched
    assert [(Decimal(t["price"]), Decimal(t["volume"]), Decimal(t["funds"])) for t in order["trades"]] == expected
    assert all(t["side"] == "bid" and t["market"] == "KRW-BTC" for t in order["trades"])
    assert order["trades_count"] == len(expected)
    assert Decimal(order["executed_volume"]) == volume
    assert Decimal(order["executed_funds"]) == gross
    assert Decimal(order["paid_fee"]) == fee  # exact, no rounding
    assert gross < krw  # truncation leaves KRW unspent …
    assert order["state"] == "cancel"  # … so Upbit marks the filled buy cancelled
    assert Decimal(order["locked"]) == 0

    accounts = api.accounts()
    assert Decimal(accounts["KRW"]["balance"]) == Decimal(1_000_000) - gross - fee
    assert Decimal(accounts["KRW"]["locked"]) == 0
    assert Decimal(accounts["BTC"]["balance"]) == volume
    assert Decimal(accounts["BTC"]["avg_buy_price"]) == (gross / volume).quantize(Decimal("1e-8"))
    assert [o["uuid"] for o in sim.orders()] == [placed["uuid"]]
    assert api.order(identifier="buy-1")["uuid"] == placed["uuid"]


def test_market_sell_walks_the_bids_and_ends_done(api: Api) -> None:
    api.buy("300000")
    btc = Decimal(api.accounts()["BTC"]["balance"])
    units = api.book()
    krw_before = Decimal(api.accounts()["KRW"]["balance"])
    r = api.sell(format(btc, "f"), identifier="sell-1")
    assert r.status_code == 201
    placed = r.json()
    assert placed["price"] is None and placed["volume"] == format(btc.normalize(), "f")
    assert placed["executed_volume"] == "0" and placed["state"] == "wait"

    order = api.order(identifier="sell-1")
    assert order["state"] == "done"
    remaining, expected = btc, []
    for u in units:
        v = min(remaining, u["bid_size"])
        expected.append((u["bid_price"], v, u["bid_price"] * v))
        remaining -= v
        if remaining == 0:
            break
    assert [(Decimal(t["price"]), Decimal(t["volume"]), Decimal(t["funds"])) for t in order["trades"]] == expected
    gross = sum((f for _, _, f in expected), Decimal(0))
    assert Decimal(order["executed_funds"]) == gross
    assert Decimal(order["paid_fee"]) == gross * FEE
    assert Decimal(order["remaining_volume"]) == 0
    accounts = api.accounts()
    assert "BTC" not in accounts
    assert Decimal(accounts["KRW"]["balance"]) == krw_before + gross - gross * FEE


def test_closed_uuids_and_chance_endpoints(api: Api, clock: Clock) -> None:
    buy = api.buy("100000", identifier="a").json()
    clock.t += 5
    btc = api.accounts()["BTC"]["balance"]
    sell = api.sell(btc, identifier="b").json()
    closed = api.private(
        "GET", "/v1/orders/closed", {"market": "KRW-BTC", "states[]": ["done", "cancel"], "limit": 10}
    ).json()
    assert [o["uuid"] for o in closed] == [sell["uuid"], buy["uuid"]]
    assert {o["state"] for o in closed} == {"done", "cancel"}
    assert "trades" not in closed[0]
    too_long = {"start_time": "2026-11-01T00:00:00+09:00", "end_time": "2026-11-20T00:00:00+09:00"}
    assert error_of(api.private("GET", "/v1/orders/closed", too_long)) == (400, "validation_error")
    assert error_of(api.private("GET", "/v1/orders/closed", {"limit": 1001})) == (400, "validation_error")
    by_id = api.private("GET", "/v1/orders/uuids", {"identifiers[]": ["a", "missing"]}).json()
    assert [o["uuid"] for o in by_id] == [buy["uuid"]]
    chance = api.private("GET", "/v1/orders/chance", {"market": "KRW-BTC"}).json()
    assert chance["bid_fee"] == chance["ask_fee"] == "0.0005"
    assert chance["market"]["bid"]["min_total"] == chance["market"]["ask"]["min_total"] == "5000"
    assert chance["bid_account"]["currency"] == "KRW"


@pytest.mark.parametrize(
    ("params", "status", "name"),
    [
        ({"side": "bid", "ord_type": "price", "price": "4999"}, 400, "under_min_total_bid"),
        ({"side": "bid", "ord_type": "price", "price": "999600"}, 400, "insufficient_funds_bid"),
        ({"side": "bid", "ord_type": "price", "price": "1e4"}, 400, "invalid_price_bid"),
        ({"side": "ask", "ord_type": "market", "volume": "0.00001"}, 400, "under_min_total_market_ask"),
        ({"side": "ask", "ord_type": "market", "volume": "0.01"}, 400, "insufficient_funds_ask"),
        ({"side": "ask", "ord_type": "market", "volume": "5e-05"}, 400, "invalid_volume_ask"),
        ({"side": "ask", "ord_type": "market", "volume": "0.123456789"}, 400, "invalid_volume_ask"),
        ({"side": "bid", "ord_type": "limit", "price": "130000000", "volume": "0.001"}, 400, "validation_error"),
    ],
)
def test_order_errors_use_upbits_names(
    api: Api, sim: SimulatorServer, params: dict[str, str], status: int, name: str
) -> None:
    r = api.private("POST", "/v1/orders", {"market": "KRW-BTC", **params}, send="json")
    assert r.status_code == status
    assert r.json()["error"]["name"] == name and r.json()["error"]["message"]
    assert sim.orders() == []
    assert api.accounts()["KRW"]["balance"] == "1000000.0"


def test_unknown_order_is_order_not_found(api: Api) -> None:
    assert error_of(api.private("GET", "/v1/order", {"uuid": str(uuid.uuid4())})) == (404, "order_not_found")
    assert error_of(api.private("GET", "/v1/order", {"identifier": "nope"})) == (404, "order_not_found")


def test_identifier_is_single_use_even_after_a_failed_order(api: Api, sim: SimulatorServer) -> None:
    assert error_of(api.buy("4000", identifier="id-1")) == (400, "under_min_total_bid")
    assert error_of(api.buy("10000", identifier="id-1")) == (400, "duplicate_identifier")
    assert api.buy("10000", identifier="id-2").status_code == 201
    assert error_of(api.buy("10000", identifier="id-2")) == (400, "duplicate_identifier")
    assert [o["identifier"] for o in sim.orders()] == ["id-2"]


def test_sell_balance_can_be_seeded_and_float_looking_volume_is_rejected(api: Api, sim: SimulatorServer) -> None:
    sim.set_balance("BTC", Decimal("0.01"), Decimal(120_000_000))
    assert error_of(api.sell(str(0.00005))) == (400, "invalid_volume_ask")  # str(float) is '5e-05'
    assert api.sell("0.00005").status_code == 201
    assert Decimal(api.accounts()["BTC"]["balance"]) == Decimal("0.00995")


# ------------------------------------------------------------------------------------------------- faults


def test_dropped_response_leaves_exactly_one_order(api: Api, sim: SimulatorServer) -> None:
    sim.set_faults(drop_next_order_response=1)
    with pytest.raises(requests.ConnectionError):
        api.buy("20000", identifier="dropped-1")
    orders = sim.orders()
    assert len(orders) == 1 and orders[0]["identifier"] == "dropped-1"
    assert api.order(identifier="dropped-1")["state"] in ("done", "cancel")
    # Retrying blindly with the same identifier is refused: no second order.
    assert error_of(api.buy("20000", identifier="dropped-1")) == (400, "duplicate_identifier")
    assert len(sim.orders()) == 1


def test_fill_delay_keeps_the_order_waiting_with_krw_locked(api: Api, sim: SimulatorServer, clock: Clock) -> None:
    sim.set_faults(fill_delay_s=30)
    placed = api.buy("10000", identifier="slow").json()
    assert api.order(uuid=placed["uuid"])["state"] == "wait"
    krw = api.accounts()["KRW"]
    assert Decimal(krw["locked"]) == Decimal(10_005)
    assert Decimal(krw["balance"]) == Decimal(1_000_000) - Decimal(10_005)
    opened = api.private("GET", "/v1/orders/open", {"market": "KRW-BTC"}).json()
    assert [o["uuid"] for o in opened] == [placed["uuid"]]
    clock.t += 31
    done = api.order(uuid=placed["uuid"])
    assert done["state"] in ("done", "cancel") and Decimal(done["executed_volume"]) > 0
    assert Decimal(api.accounts()["KRW"]["locked"]) == 0


def test_429_with_text_body_and_exhausted_header_set_over_http(api: Api) -> None:
    faults: dict[str, Any] = {"fail_next": 1, "fail_status": 429, "fail_body": "text", "fail_path": "/v1/ticker"}
    r = requests.post(api.url + "/_sim/faults", json=faults, timeout=5)
    assert r.status_code == 200 and r.json()["fail_next"] == 1
    assert api.public("/v1/candles/minutes/60", market="KRW-BTC").status_code == 200  # other paths unaffected
    r = api.public("/v1/ticker", markets="KRW-BTC")
    assert r.status_code == 429
    assert r.text == "Too many API requests."
    assert r.headers["Remaining-Req"] == "group=ticker; min=600; sec=0"
    assert api.public("/v1/ticker", markets="KRW-BTC").status_code == 200


def test_429_json_body(api: Api, sim: SimulatorServer) -> None:
    sim.set_faults(fail_next=1, fail_status=429)
    r = api.private("GET", "/v1/accounts")
    assert error_of(r) == (429, "too_many_requests")


def test_500_before_or_after_the_order_is_accepted(api: Api, sim: SimulatorServer) -> None:
    sim.set_faults(fail_next=1, fail_status=500, fail_path="/v1/orders")
    assert api.buy("10000", identifier="before").status_code == 500
    assert sim.orders() == []
    assert api.buy("10000", identifier="before").status_code == 201  # nothing was placed, so no duplicate

    sim.set_faults(fail_next=1, fail_status=503, fail_path="/v1/orders", fail_method="POST", fail_after_accept=True)
    assert api.buy("10000", identifier="after").status_code == 503
    assert [o["identifier"] for o in sim.orders()] == ["before", "after"]
    assert api.order(identifier="after")["state"] in ("done", "cancel")


def test_reject_next_order_refuses_one_order_with_the_given_name(api: Api, sim: SimulatorServer) -> None:
    sim.set_faults(reject_next_order="market_offline")
    assert error_of(api.buy("10000", identifier="rej-1")) == (400, "market_offline")
    assert sim.orders() == [] and sim.state()["faults"]["reject_next_order"] is None
    assert error_of(api.buy("10000", identifier="rej-1")) == (400, "duplicate_identifier")
    assert api.buy("10000", identifier="rej-2").status_code == 201


def test_faults_from_the_config() -> None:
    with SimulatorServer(make_config(faults=Faults(fail_next=1, fail_status=502, fail_body="text"))) as sim:
        r = requests.get(sim.url + "/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5)
        assert r.status_code == 502
        assert requests.get(sim.url + "/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5).status_code == 200


# ------------------------------------------------------------------------------------------ control endpoints


def test_advance_moves_the_market_and_keeps_the_forming_candle_at_the_current_hour(api: Api) -> None:
    before = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=3).json()
    r = requests.post(api.url + "/_sim/advance", json={"hours": 2, "pct": "-10"}, timeout=5)
    assert r.status_code == 200
    new_price = Decimal(r.json()["prices"]["KRW-BTC"])
    assert new_price == Decimal(117_000_000)
    after = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=3).json()
    assert after[0]["candle_date_time_utc"] == before[0]["candle_date_time_utc"] == "2026-11-26T06:00:00"
    assert after[0]["trade_price"] == 117_000_000
    assert after[2]["trade_price"] == before[0]["trade_price"]  # old forming candle, now two hours back
    r = requests.post(api.url + "/_sim/price", json={"market": "KRW-BTC", "price": "125000400"}, timeout=5)
    assert r.json() == {"market": "KRW-BTC", "price": "125000000"}  # put on the 1,000 KRW tick
    assert api.public("/v1/ticker", markets="KRW-BTC").json()[0]["trade_price"] == 125_000_000


def test_wall_clock_hours_add_candles(api: Api, clock: Clock) -> None:
    before = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=2).json()
    clock.t += 3600
    after = api.public("/v1/candles/minutes/60", market="KRW-BTC", count=2).json()
    assert after[0]["candle_date_time_utc"] == "2026-11-26T07:00:00"
    assert after[1] == {**before[0], "timestamp": after[1]["timestamp"]}


def test_state_orders_and_reset_over_http(api: Api) -> None:
    api.buy("50000", identifier="r-1")
    orders = requests.get(api.url + "/_sim/orders", timeout=5).json()
    assert len(orders) == 1 and orders[0]["identifier"] == "r-1" and orders[0]["trades"]
    state = requests.get(api.url + "/_sim/state", timeout=5).json()
    assert {a["currency"] for a in state["accounts"]} == {"KRW", "BTC"}
    assert state["prices"] == {"KRW-BTC": "130000000"}
    assert requests.get(api.url + "/_sim/faults", timeout=5).json()["fail_next"] == 0
    assert requests.post(api.url + "/_sim/faults", json={"bogus": 1}, timeout=5).status_code == 400
    reset = requests.post(api.url + "/_sim/reset", timeout=5).json()
    assert reset["accounts"] == [
        {
            "currency": "KRW",
            "balance": "1000000.0",
            "locked": "0.0",
            "avg_buy_price": "0",
            "avg_buy_price_modified": False,
            "unit_currency": "KRW",
        }
    ]
    assert requests.get(api.url + "/_sim/orders", timeout=5).json() == []
    assert api.buy("10000", identifier="r-1").status_code == 201  # identifiers are forgotten by a reset
    assert requests.get(api.url + "/_sim/nope", timeout=5).status_code == 404


def test_sign_jwt_matches_upbits_recipe() -> None:
    token = sign_jwt(ACCESS, SECRET, {"market": "KRW-BTC", "states[]": ["done", "cancel"]}, nonce="n-1")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    query = "market=KRW-BTC&states[]=done&states[]=cancel"
    assert claims == {
        "access_key": ACCESS,
        "nonce": "n-1",
        "query_hash": hashlib.sha512(query.encode()).hexdigest(),
        "query_hash_alg": "SHA512",
    }
    assert "query_hash" not in jwt.decode(sign_jwt(ACCESS, SECRET), SECRET, algorithms=["HS256"])


def test_config_rejects_a_non_loopback_host_and_float_money() -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(host="0.0.0.0")
    with pytest.raises(TypeError):
        SimulatorConfig(starting_krw=1e6)  # type: ignore[arg-type]


def test_module_import_is_cheap_and_serve_prints_the_url() -> None:
    """Runs the real entry point (wall clock) in a subprocess: one line with the URL, candles at this hour."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys, tradebot.exchange.simulator; "
                "print(sorted(m for m in ('jwt', 'pandas', 'pyupbit', 'numpy') if m in sys.modules))"
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
        check=False,
    )
    assert check.stdout.strip() == "[]", check.stderr
    with subprocess.Popen(
        [sys.executable, "-m", "tradebot.exchange.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=10), "the simulator printed nothing"
            line = proc.stdout.readline().strip()
            assert line.startswith("Upbit simulator listening on http://127.0.0.1:")
            url = line.split(" on ")[1].split()[0]
            before = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            newest = requests.get(url + "/v1/candles/minutes/60", params={"market": "KRW-BTC"}, timeout=5).json()[0]
            after = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            start = datetime.fromisoformat(newest["candle_date_time_utc"]).replace(tzinfo=UTC)
            assert start in (before, after)
            token = sign_jwt("tradebot-simulator-access-key", _default_secret())
            r = requests.get(url + "/v1/accounts", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            assert r.status_code == 200 and json.loads(r.text)[0]["currency"] == "KRW"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _default_secret() -> str:
    from tradebot.exchange.simulator import DEFAULT_SECRET_KEY

    return DEFAULT_SECRET_KEY


# ------------------------------------------------------------------ issue 10: --candles given something else


def _candles_file(tmp_path: Path, kind: str) -> Path:
    header = "candle_date_time_utc,opening_price,high_price,low_price,trade_price,candle_acc_trade_volume\n"
    good = "2024-01-01T00:00:00,100,110,90,105,1\n"
    path = tmp_path / f"{kind}.csv"
    if kind == "directory":
        path.mkdir()
        (path / "inside.csv").write_text(header + good + good)
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "nul":
        path.write_bytes(header.encode() + b"2024-01-01T00:00:00,1\x0000,1,1,1,1\n" + good.encode())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong_header":
        path.write_text("date,price\n2024-01-01,1\n2024-01-02,2\n")
    elif kind == "one_row":
        path.write_text(header + good)
    elif kind == "bad_time":
        path.write_text(header + good + "yesterday,100,110,90,105,1\n")
    elif kind == "year_one":
        path.write_text(header + good + "0001-01-01T00:00:00,100,110,90,105,1\n")
    elif kind == "huge_ms":
        path.write_text(header + good + "99999999999999999999,100,110,90,105,1\n")
    elif kind == "not_a_number":
        path.write_text(header + good + "2024-01-01T01:00:00,100,abc,90,105,1\n")
    elif kind == "huge_price":
        path.write_text(header + good + "2024-01-01T01:00:00,1e400,1e400,1e400,1e400,1\n")
    elif kind == "tiny_price":
        path.write_text(header + good + "2024-01-01T01:00:00,1e-300,1e-300,1e-300,1e-300,1\n")
    elif kind == "negative_price":
        path.write_text(header + good + "2024-01-01T01:00:00,-5,110,90,105,1\n")
    elif kind == "short_row":
        path.write_text(header + good + "2024-01-01T01:00:00,100\n")
    return path


@pytest.mark.parametrize("kind", ["directory", "binary", "nul", "empty", "wrong_header", "one_row", "bad_time",
                                  "year_one", "huge_ms", "not_a_number", "huge_price", "tiny_price",
                                  "negative_price", "short_row"])
def test_candles_that_are_not_a_candle_csv_exit_2_with_one_error_line(tmp_path: Path, kind: str) -> None:
    path = _candles_file(tmp_path, kind)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "UPBIT_", "DATABASE_URL"))}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-m", "tradebot", "simulator", "--port", "0", "--candles", str(path)],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "--candles" in errors[0], r.stderr
    if kind not in ("directory", "binary", "nul", "empty", "wrong_header", "one_row"):
        assert "line 3" in errors[0], errors[0]


def test_candles_rows_are_checked_by_the_library_too(tmp_path: Path) -> None:
    """SimulatorServer with a bad candles CSV raises ConfigError (exit 2 in the CLI) before it listens."""
    from tradebot.errors import ConfigError

    for kind in ("binary", "year_one", "huge_price"):
        with pytest.raises(ConfigError):
            SimulatorServer(make_config(candles_csv=_candles_file(tmp_path, kind)))
