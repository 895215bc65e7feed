"""The exchange side of the simulator: its KRW-market rules, accounts, orders and fills, all of it in one
``_Exchange`` behind one lock, plus the operations behind the ``/_sim/`` control API."""

from __future__ import annotations

import re
import threading
import time
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from tradebot.exchange.simulator.config import Faults, SimulatorConfig
from tradebot.exchange.simulator.prices import _HOURLY_VALUE_KRW, DEFAULT_LEVELS, _Bar, _MarketPath, _read_csv
from tradebot.exchange.simulator.wire import (
    _EXACT,
    _Q8,
    VOLUME_PLACES,
    _ApiError,
    _hour_floor,
    _kst_iso,
    _not_found_market,
    _Params,
    _s,
    _utc_str,
    _validation,
)

# Upbit's KRW-market rules, written down here on purpose instead of imported from tradebot.upbit_rules:
# the simulator plays the exchange, so a wrong constant in the bot must not silently agree with it.
FEE_RATE = Decimal("0.0005")
MIN_TOTAL_KRW = Decimal(5000)
MAX_TOTAL_KRW = Decimal(1_000_000_000)
_PLAIN_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


@dataclass
class _Account:
    balance: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)
    avg_buy_price: Decimal = Decimal(0)


@dataclass
class _Trade:
    uuid: str
    price: Decimal
    volume: Decimal
    funds: Decimal
    side: str
    created: float


@dataclass
class _Order:
    uuid: str
    seq: int
    market: str
    side: str
    ord_type: str
    price: Decimal | None
    volume: Decimal | None
    identifier: str | None
    created: float
    fill_due: float
    reserved_fee: Decimal
    locked: Decimal
    state: str = "wait"
    remaining_fee: Decimal = Decimal(0)
    paid_fee: Decimal = Decimal(0)
    executed_volume: Decimal = Decimal(0)
    executed_funds: Decimal = Decimal(0)
    trades: list[_Trade] = field(default_factory=list)

    def to_json(self, *, with_trades: bool) -> dict[str, Any]:
        remaining_volume = None if self.volume is None else _s(self.volume - self.executed_volume)
        data: dict[str, Any] = {
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": None if self.price is None else _s(self.price),
            "state": self.state,
            "market": self.market,
            "created_at": _kst_iso(self.created),
            "volume": None if self.volume is None else _s(self.volume),
            "remaining_volume": remaining_volume,
            "reserved_fee": _s(self.reserved_fee),
            "remaining_fee": _s(self.remaining_fee),
            "paid_fee": _s(self.paid_fee),
            "locked": _s(self.locked),
            "executed_volume": _s(self.executed_volume),
            "executed_funds": _s(self.executed_funds),
            "trades_count": len(self.trades),
            "identifier": self.identifier,
        }
        if with_trades:
            data["trades"] = [
                {
                    "market": self.market,
                    "uuid": t.uuid,
                    "price": _s(t.price),
                    "volume": _s(t.volume),
                    "funds": _s(t.funds),
                    "trend": "up" if t.side == "bid" else "down",
                    "created_at": _kst_iso(t.created),
                    "side": t.side,
                }
                for t in self.trades
            ]
        return data


def _account_json(currency: str, acc: _Account) -> dict[str, Any]:
    return {
        "currency": currency,
        "balance": _s(acc.balance),
        "locked": _s(acc.locked),
        "avg_buy_price": format(acc.avg_buy_price.normalize(), "f") if acc.avg_buy_price else "0",
        "avg_buy_price_modified": False,
        "unit_currency": "KRW",
    }


class _Exchange:
    """All simulator state behind one lock (request threads and in-process test calls share it)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # Upbit's per-second limits are enforced on the wall clock unless switched off; a test clock (which
        # may stand still for the whole test) would otherwise run out of seconds.
        self.enforces_rate_limits = config.rate_limits if config.rate_limits is not None else config.clock is time.time
        self.lock = threading.RLock()
        self.reset()

    # -- lifecycle
    def now(self) -> float:
        return self.config.clock()

    def reset(self) -> None:
        """Back to the state right after construction (same seed → same markets)."""
        cfg = self.config
        with self.lock:
            anchor = _hour_floor(self.now())
            markets: dict[str, _MarketPath] = {}
            csv_market: str | None = None
            csv_bars: list[_Bar] | None = None
            if cfg.candles_csv is not None:
                csv_market, csv_bars = _read_csv(cfg.candles_csv)
                csv_market = csv_market or cfg.markets[0]
            names = list(cfg.markets)
            if csv_market is not None and csv_market not in names:
                names.insert(0, csv_market)
            for name in names:
                # One market keeps its independent path; several move together like real coins.
                path = _MarketPath(name, cfg.seed, anchor, _HOURLY_VALUE_KRW,
                                   cfg.correlation if len(names) > 1 else 0.0)
                if name == csv_market and csv_bars is not None:
                    path.load_bars(list(csv_bars))
                else:
                    level = cfg.start_prices.get(name) or DEFAULT_LEVELS.get(name, Decimal(10_000))
                    path.generate_history(level, cfg.history_hours)
                markets[name] = path
            self.markets = markets
            self.accounts: dict[str, _Account] = {"KRW": _Account(balance=cfg.starting_krw)}
            self.orders: list[_Order] = []
            self.by_uuid: dict[str, _Order] = {}
            self.by_identifier: dict[str, _Order] = {}
            self.used_identifiers: set[str] = set()
            self.nonces: set[str] = set()
            self.faults = cfg.faults
            self.windows: dict[str, tuple[int, int]] = {}
            self.request_counts: dict[str, int] = {}  # API requests received, by Remaining-Req group

    def market_path(self, name: str | None) -> _MarketPath:
        """The market's path, brought up to the current hour (Upbit's 404 for an unknown market code)."""
        if not name:
            raise _validation("market is required")
        path = self.markets.get(name)
        if path is None:
            raise _not_found_market()
        path.sync(self.now())
        return path

    def _sync_all(self) -> None:
        now = self.now()
        for path in self.markets.values():
            path.sync(now)

    # -- faults
    def take_fault(self, method: str, path: str) -> Faults | None:
        """Consume one ``fail_next`` if this request matches; returns the fault settings that apply."""
        with self.lock:
            f = self.faults
            if f.fail_next <= 0:
                return None
            if f.fail_path is not None and f.fail_path != path:
                return None
            if f.fail_method is not None and f.fail_method.upper() != method:
                return None
            self.faults = replace(f, fail_next=f.fail_next - 1)
            return f

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.drop_next_order_response <= 0:
                return False
            self.faults = replace(self.faults, drop_next_order_response=self.faults.drop_next_order_response - 1)
            return True

    def set_faults(self, changes: Mapping[str, Any]) -> Faults:
        with self.lock:
            self.faults = Faults.from_json(self.faults, changes)
            return self.faults

    # -- accounts
    def accounts_json(self) -> list[dict[str, Any]]:
        with self.lock:
            self.settle()
            return [_account_json(c, a) for c, a in self.accounts.items()]

    # -- orders
    @staticmethod
    def _number(text: str | None, *, error: str, places: int) -> Decimal:
        # Plain decimals only: "5e-05", "-1", ".5", "1,000" and too many decimals are all rejected, which is
        # how tests prove that the bot never puts scientific notation on the wire.
        if text is None or not _PLAIN_NUMBER.match(text):
            raise _ApiError(400, error, "Invalid number.")
        value = Decimal(text)
        if value <= 0 or (value.as_tuple().exponent < -places):  # type: ignore[operator]
            raise _ApiError(400, error, "Invalid number.")
        return value

    def create_order(self, params: _Params) -> tuple[int, Any]:
        """``POST /v1/orders`` — market buy (bid/price) or market sell (ask/market) only."""
        with self.lock:
            self.settle()
            identifier = params.get("identifier")
            if identifier is not None:
                # Upbit: an identifier can be used once per account, forever — even if that order failed.
                if identifier in self.used_identifiers:
                    raise _ApiError(400, "duplicate_identifier", "The identifier has already been used.")
                self.used_identifiers.add(identifier)
            if self.faults.reject_next_order and self.faults.reject_market in (None, params.get("market")):
                name = self.faults.reject_next_order
                self.faults = replace(self.faults, reject_next_order=None, reject_market=None)
                raise _ApiError(400, name, "Rejected by the simulator's reject_next_order fault.")
            market_name = params.get("market")
            side = params.get("side")
            ord_type = params.get("ord_type")
            if not market_name or not side or not ord_type:
                raise _validation("market, side and ord_type are required")
            if market_name not in self.markets:
                raise _validation(f"unknown market {market_name}")
            path = self.market_path(market_name)
            if side not in ("bid", "ask"):
                raise _validation("side must be bid or ask")
            if (side, ord_type) not in (("bid", "price"), ("ask", "market")):
                raise _validation("the simulator supports only market orders: bid/price and ask/market")
            now = self.now()
            coin = market_name.split("-", 1)[1]
            with localcontext(_EXACT):
                if side == "bid":
                    if params.get("volume") is not None:
                        raise _ApiError(400, "create_bid_error", "A market buy takes price, not volume.")
                    krw = self._number(params.get("price"), error="invalid_price_bid", places=VOLUME_PLACES)
                    if krw < MIN_TOTAL_KRW:
                        raise _ApiError(400, "under_min_total_bid", "Order total is below the minimum (5000 KRW).")
                    if krw > MAX_TOTAL_KRW:
                        raise _ApiError(400, "over_max_total_bid", "Order total is above the maximum.")
                    fee = krw * FEE_RATE
                    account = self.accounts["KRW"]
                    if krw + fee > account.balance:
                        raise _ApiError(400, "insufficient_funds_bid", "Insufficient balance for this order.")
                    account.balance -= krw + fee
                    account.locked += krw + fee
                    order = self._new_order(path.market, side, ord_type, krw, None, identifier, now, fee, krw + fee)
                else:
                    if params.get("price") is not None:
                        raise _ApiError(400, "create_ask_error", "A market sell takes volume, not price.")
                    volume = self._number(params.get("volume"), error="invalid_volume_ask", places=VOLUME_PLACES)
                    value = volume * path.book()[0].bid_price
                    # Upbit values a market sell at the best *bid*: a position can be unsellable dust.
                    if value < MIN_TOTAL_KRW:
                        raise _ApiError(
                            400, "under_min_total_market_ask", "Order total is below the minimum (5000 KRW)."
                        )
                    if value > MAX_TOTAL_KRW:
                        raise _ApiError(400, "over_max_total_market_ask", "Order total is above the maximum.")
                    holding = self.accounts.get(coin)
                    if holding is None or volume > holding.balance:
                        raise _ApiError(400, "insufficient_funds_ask", "Insufficient balance for this order.")
                    holding.balance -= volume
                    holding.locked += volume
                    order = self._new_order(
                        path.market, side, ord_type, None, volume, identifier, now, Decimal(0), volume
                    )
            response = order.to_json(with_trades=False)
            if side == "ask":
                response["executed_volume"] = "0"  # Upbit writes the sell's initial value without ".0"
            if order.fill_due <= now:
                self._fill(order)
            return 201, response

    def _new_order(
        self,
        market: str,
        side: str,
        ord_type: str,
        price: Decimal | None,
        volume: Decimal | None,
        identifier: str | None,
        now: float,
        reserved_fee: Decimal,
        locked: Decimal,
    ) -> _Order:
        order = _Order(
            uuid=str(uuidlib.uuid4()),
            seq=len(self.orders),
            market=market,
            side=side,
            ord_type=ord_type,
            price=price,
            volume=volume,
            identifier=identifier,
            created=now,
            fill_due=now + self.faults.fill_delay_s,
            reserved_fee=reserved_fee,
            remaining_fee=reserved_fee,
            locked=locked,
        )
        self.orders.append(order)
        self.by_uuid[order.uuid] = order
        if identifier is not None:
            self.by_identifier[identifier] = order
        return order

    def settle(self) -> None:
        """Fill every waiting order whose fill delay has passed (called before each read)."""
        with self.lock:
            now = self.now()
            for order in self.orders:
                if order.state == "wait" and order.fill_due <= now:
                    self._fill(order)

    def _fill(self, order: _Order) -> None:
        path = self.markets[order.market]
        path.sync(self.now())
        levels = path.book()
        created = max(self.now(), order.created)
        coin = order.market.split("-", 1)[1]
        krw = self.accounts["KRW"]
        with localcontext(_EXACT):
            if order.side == "bid":
                assert order.price is not None
                remaining = order.price
                for lv in levels:
                    spend = min(remaining, lv.ask_price * lv.ask_size)
                    # Integer division of the exact quotient = truncation to 8 decimals, as Upbit does.
                    volume = (spend.scaleb(VOLUME_PLACES) // lv.ask_price).scaleb(-VOLUME_PLACES)
                    if volume <= 0:
                        break
                    funds = lv.ask_price * volume
                    order.trades.append(_Trade(str(uuidlib.uuid4()), lv.ask_price, volume, funds, "bid", created))
                    remaining -= funds
                    if remaining <= 0:
                        break
                executed = sum((t.volume for t in order.trades), Decimal(0))
                funds_total = sum((t.funds for t in order.trades), Decimal(0))
                fee = funds_total * FEE_RATE
                krw.locked -= order.locked
                krw.balance += order.locked - funds_total - fee
                if executed > 0:
                    acc = self.accounts.setdefault(coin, _Account())
                    held = acc.balance + acc.locked
                    acc.avg_buy_price = ((acc.avg_buy_price * held + funds_total) / (held + executed)).quantize(
                        _Q8, rounding=ROUND_HALF_EVEN
                    )
                    acc.balance += executed
                # KRW left over after the truncation is refunded and the order is *cancelled*, like Upbit.
                order.state = "done" if funds_total == order.price else "cancel"
            else:
                assert order.volume is not None
                remaining = order.volume
                for lv in levels:
                    volume = min(remaining, lv.bid_size)
                    funds = lv.bid_price * volume
                    order.trades.append(_Trade(str(uuidlib.uuid4()), lv.bid_price, volume, funds, "ask", created))
                    remaining -= volume
                    if remaining <= 0:
                        break
                executed = sum((t.volume for t in order.trades), Decimal(0))
                funds_total = sum((t.funds for t in order.trades), Decimal(0))
                fee = funds_total * FEE_RATE
                acc = self.accounts[coin]
                acc.locked -= order.volume
                acc.balance += order.volume - executed  # only if the book ran out (cannot happen ≤ max total)
                krw.balance += funds_total - fee
                order.state = "done" if executed == order.volume else "cancel"
                if acc.balance == 0 and acc.locked == 0:
                    del self.accounts[coin]  # Upbit lists only currencies the account holds
            order.executed_volume = executed
            order.executed_funds = funds_total
            order.paid_fee = fee
            order.remaining_fee = Decimal(0)
            order.locked = Decimal(0)

    # -- control (/_sim/)
    def orders_json(self) -> list[dict[str, Any]]:
        with self.lock:
            self.settle()
            return [o.to_json(with_trades=True) for o in self.orders]

    def state_json(self) -> dict[str, Any]:
        with self.lock:
            self.settle()
            self._sync_all()
            return {
                "accounts": self.accounts_json(),
                "prices": {name: format(p.price, "f") for name, p in self.markets.items()},
                "current_hour": _utc_str(next(iter(self.markets.values())).anchor),
                "faults": asdict(self.faults),
                "requests": dict(self.request_counts),
            }

    def set_price(self, market: str, price: Decimal) -> Decimal:
        with self.lock:
            self.settle()
            path = self.market_path(market)
            if price <= 0:
                raise _validation("price must be > 0")
            path.set_price(price)
            return path.price

    def advance(self, hours: int, market: str | None, price: Decimal | None, pct: Decimal | None) -> dict[str, Decimal]:
        with self.lock:
            self.settle()
            if hours < 1 or hours > 24 * 60:
                raise _validation("hours must be 1..1440")
            names = [market] if market else list(self.markets)
            paths = [self.market_path(n) for n in names]
            for path in paths:
                target = price
                if pct is not None:
                    with localcontext(_EXACT):
                        target = path.price * (1 + pct / 100)
                if target is not None and target <= 0:
                    raise _validation("the target price must be > 0")
                path.advance(hours, target)
            return {p.market: p.price for p in paths}

    def set_balance(self, currency: str, balance: Decimal, avg_buy_price: Decimal | None) -> None:
        with self.lock:
            if balance < 0:
                raise _validation("balance must be >= 0")
            acc = self.accounts.setdefault(currency, _Account())
            acc.balance = balance
            if avg_buy_price is not None:
                acc.avg_buy_price = avg_buy_price
            if currency != "KRW" and acc.balance == 0 and acc.locked == 0:
                del self.accounts[currency]
