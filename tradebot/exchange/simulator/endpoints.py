"""The REST endpoints that read the exchange: quotation (hourly and daily candles, ticker, orderbook), the
account list, the order chance and the order lookups. Each is a function of the ``_Exchange`` and the request
parameters that returns ``(HTTP status, JSON payload)``; placing an order is ``_Exchange.create_order``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from tradebot.exchange.simulator.engine import (
    FEE_RATE,
    MAX_TOTAL_KRW,
    MIN_TOTAL_KRW,
    _Account,
    _account_json,
    _Exchange,
    _Order,
)
from tradebot.exchange.simulator.prices import _Bar, _MarketPath
from tradebot.exchange.simulator.wire import (
    _EXACT,
    KST,
    _ApiError,
    _kst_str,
    _ms,
    _Params,
    _parse_time,
    _s,
    _utc_str,
    _validation,
)

MAX_CANDLES = 200
MAX_CLOSED_WINDOW = timedelta(days=7)


# --------------------------------------------------------------------------------------------- quotation


def _count(params: _Params) -> int:
    text = params.get("count") or "1"
    if not text.isdigit() or not 1 <= int(text) <= MAX_CANDLES:
        raise _validation(f"count must be an integer from 1 to {MAX_CANDLES}")
    return int(text)


def _to(params: _Params) -> datetime | None:
    text = params.get("to")
    if not text:
        return None
    try:
        return _parse_time(text)
    except ValueError:
        raise _validation("to is not a valid time") from None


def candles_minutes(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/candles/minutes/60``: hourly candles, newest first (the first one is still forming)."""
    with ex.lock:
        path = ex.market_path(params.get("market"))
        count = _count(params)
        to = _to(params)
        now_ms = int(ex.now() * 1000)
        out: list[dict[str, Any]] = []
        for i in range(len(path.bars) - 1, -1, -1):
            start = path.start_of(i)
            if to is not None and start >= to:
                continue
            bar = path.bars[i]
            last_trade = _ms(start) + 3_599_000
            out.append(
                {
                    "market": path.market,
                    "candle_date_time_utc": _utc_str(start),
                    "candle_date_time_kst": _kst_str(start),
                    "opening_price": bar.open,
                    "high_price": bar.high,
                    "low_price": bar.low,
                    "trade_price": bar.close,
                    "timestamp": min(last_trade, now_ms) if i == len(path.bars) - 1 else last_trade,
                    "candle_acc_trade_price": bar.value,
                    "candle_acc_trade_volume": bar.volume,
                    "unit": 60,
                }
            )
            if len(out) == count:
                break
        return 200, out


def _days(path: _MarketPath) -> list[tuple[datetime, _Bar]]:
    """Day candles (00:00 UTC) aggregated from the hourly bars, oldest first; a partial first day is
    dropped because Upbit would have its full history."""
    days: list[tuple[datetime, _Bar]] = []
    # Without a single midnight (a short CSV) the one partial day is all there is.
    first = next((i for i in range(len(path.bars)) if path.start_of(i).hour == 0), 0)
    with localcontext(_EXACT):
        for i in range(first, len(path.bars)):
            bar = path.bars[i]
            day = path.start_of(i).replace(hour=0)
            if days and days[-1][0] == day:
                agg = days[-1][1]
                agg.high = max(agg.high, bar.high)
                agg.low = min(agg.low, bar.low)
                agg.close = bar.close
                agg.volume += bar.volume
                agg.value += bar.value
            else:
                days.append((day, replace(bar)))
    return days


def candles_days(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/candles/days``: daily (00:00 UTC) candles aggregated from the hourly path, newest first."""
    with ex.lock:
        path = ex.market_path(params.get("market"))
        count = _count(params)
        to = _to(params)
        days = _days(path)
        now_ms = int(ex.now() * 1000)
        out: list[dict[str, Any]] = []
        for k in range(len(days) - 1, -1, -1):
            day, bar = days[k]
            if to is not None and day >= to:
                continue
            prev_close = days[k - 1][1].close if k > 0 else bar.open
            with localcontext(_EXACT):
                change = bar.close - prev_close
                rate = (change / prev_close).quantize(Decimal("1e-10"))
            last_trade = _ms(day) + 86_399_000
            out.append(
                {
                    "market": path.market,
                    "candle_date_time_utc": _utc_str(day),
                    "candle_date_time_kst": _kst_str(day),
                    "opening_price": bar.open,
                    "high_price": bar.high,
                    "low_price": bar.low,
                    "trade_price": bar.close,
                    "timestamp": min(last_trade, now_ms),
                    "candle_acc_trade_price": bar.value,
                    "candle_acc_trade_volume": bar.volume,
                    "prev_closing_price": prev_close,
                    "change_price": change,
                    "change_rate": rate,
                }
            )
            if len(out) == count:
                break
        return 200, out


def _market_list(ex: _Exchange, params: _Params) -> list[_MarketPath]:
    # Upbit takes several markets in one parameter, comma-separated (``markets=KRW-BTC,KRW-ETH``).
    names = [n.strip() for value in params.getlist("markets") for n in value.split(",") if n.strip()]
    if not names:
        raise _validation("markets is required")
    return [ex.market_path(n) for n in names]


# Names Upbit gives some coins; other simulated markets are named after their code.
_NAMES = {"BTC": ("비트코인", "Bitcoin"), "ETH": ("이더리움", "Ethereum"), "XRP": ("엑스알피(리플)", "XRP"),
          "SOL": ("솔라나", "Solana"), "DOGE": ("도지코인", "Dogecoin")}
_CAUTIONS = ("PRICE_FLUCTUATIONS", "TRADING_VOLUME_SOARING", "DEPOSIT_AMOUNT_SOARING", "GLOBAL_PRICE_DIFFERENCES",
             "CONCENTRATION_OF_SMALL_ACCOUNTS")


def market_all(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/market/all``: the simulated markets; with ``isDetails=true`` also Upbit's warning flag
    (``market_warning``, and the newer ``market_event``) — set for the markets in ``SimulatorConfig.warned``."""
    details = (params.get("isDetails") or "false").lower() == "true"
    out = []
    for name in ex.markets:
        korean, english = _NAMES.get(name.split("-", 1)[1], (name.split("-", 1)[1], name.split("-", 1)[1]))
        row: dict[str, Any] = {"market": name, "korean_name": korean, "english_name": english}
        if details:
            warned = name in ex.config.warned
            row["market_warning"] = "CAUTION" if warned else "NONE"
            row["market_event"] = {"warning": warned, "caution": {c: warned and c == "PRICE_FLUCTUATIONS" for c in _CAUTIONS}}
        out.append(row)
    return 200, out


def ticker(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/ticker``: the last price and the day's and 24 hours' figures of each of ``markets``."""
    with ex.lock:
        paths = _market_list(ex, params)
        now = datetime.fromtimestamp(ex.now(), UTC)
        out = []
        for path in paths:
            days = _days(path)
            today = days[-1][1]
            prev_close = days[-2][1].close if len(days) > 1 else today.open
            last24 = path.bars[-24:]
            year = path.bars[-24 * 365 :]
            hi_i = max(range(len(year)), key=lambda j: year[j].high)
            lo_i = min(range(len(year)), key=lambda j: year[j].low)
            offset = len(path.bars) - len(year)
            with localcontext(_EXACT):
                change = today.close - prev_close
                rate = (change / prev_close).quantize(Decimal("1e-10"))
                acc_price_24h = sum((b.value for b in last24), Decimal(0))
                acc_volume_24h = sum((b.volume for b in last24), Decimal(0))
            out.append(
                {
                    "market": path.market,
                    "trade_date": now.strftime("%Y%m%d"),
                    "trade_time": now.strftime("%H%M%S"),
                    "trade_date_kst": now.astimezone(KST).strftime("%Y%m%d"),
                    "trade_time_kst": now.astimezone(KST).strftime("%H%M%S"),
                    "trade_timestamp": _ms(now),
                    "opening_price": today.open,
                    "high_price": today.high,
                    "low_price": today.low,
                    "trade_price": path.price,
                    "prev_closing_price": prev_close,
                    "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
                    "change_price": abs(change),
                    "change_rate": abs(rate),
                    "signed_change_price": change,
                    "signed_change_rate": rate,
                    "trade_volume": Decimal("0.001"),
                    "acc_trade_price": today.value,
                    "acc_trade_price_24h": acc_price_24h,
                    "acc_trade_volume": today.volume,
                    "acc_trade_volume_24h": acc_volume_24h,
                    "highest_52_week_price": year[hi_i].high,
                    "highest_52_week_date": path.start_of(offset + hi_i).strftime("%Y-%m-%d"),
                    "lowest_52_week_price": year[lo_i].low,
                    "lowest_52_week_date": path.start_of(offset + lo_i).strftime("%Y-%m-%d"),
                    "timestamp": _ms(now),
                }
            )
        return 200, out


def orderbook(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/orderbook``: the simulated 30 levels of each of ``markets``."""
    with ex.lock:
        paths = _market_list(ex, params)
        out = []
        for path in paths:
            levels = path.book()
            with localcontext(_EXACT):
                total_ask = sum((lv.ask_size for lv in levels), Decimal(0))
                total_bid = sum((lv.bid_size for lv in levels), Decimal(0))
            out.append(
                {
                    "market": path.market,
                    "timestamp": int(ex.now() * 1000),
                    "total_ask_size": total_ask,
                    "total_bid_size": total_bid,
                    "orderbook_units": [
                        {
                            "ask_price": lv.ask_price,
                            "bid_price": lv.bid_price,
                            "ask_size": lv.ask_size,
                            "bid_size": lv.bid_size,
                        }
                        for lv in levels
                    ],
                    "level": 0,
                }
            )
        return 200, out


# ---------------------------------------------------------------------------------------- accounts, orders


def list_accounts(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/accounts``: every currency the account holds (after settling due fills)."""
    return 200, ex.accounts_json()


def chance(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/orders/chance``: fees, order rules and both balances of one market."""
    with ex.lock:
        ex.settle()
        path = ex.market_path(params.get("market"))
        coin = path.market.split("-", 1)[1]
        krw = ex.accounts["KRW"]
        held = ex.accounts.get(coin, _Account())
        return 200, {
            "bid_fee": _s(FEE_RATE),
            "ask_fee": _s(FEE_RATE),
            "maker_bid_fee": _s(FEE_RATE),
            "maker_ask_fee": _s(FEE_RATE),
            "market": {
                "id": path.market,
                "name": f"{coin}/KRW",
                # Only the two market order types are simulated; a client must not assume more.
                "order_types": ["price", "market"],
                "order_sides": ["ask", "bid"],
                "bid_types": ["price"],
                "ask_types": ["market"],
                "bid": {"currency": "KRW", "price_unit": None, "min_total": format(MIN_TOTAL_KRW, "f")},
                "ask": {"currency": coin, "price_unit": None, "min_total": format(MIN_TOTAL_KRW, "f")},
                "max_total": format(MAX_TOTAL_KRW, "f"),
                "state": "active",
            },
            "bid_account": _account_json("KRW", krw),
            "ask_account": _account_json(coin, held),
        }


def _find(ex: _Exchange, params: _Params) -> _Order:
    uuid = params.get("uuid")
    identifier = params.get("identifier")
    if not uuid and not identifier:
        raise _validation("uuid or identifier is required")
    order = ex.by_uuid.get(uuid) if uuid else ex.by_identifier.get(identifier or "")
    if order is None:
        raise _ApiError(404, "order_not_found", "Order not found.")
    return order


def get_order(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/order``: one order by ``uuid`` or ``identifier``, with its trades."""
    with ex.lock:
        ex.settle()
        return 200, _find(ex, params).to_json(with_trades=True)


def _sorted(orders: list[_Order], params: _Params) -> list[_Order]:
    order_by = params.get("order_by") or "desc"
    if order_by not in ("asc", "desc"):
        raise _validation("order_by must be asc or desc")
    return sorted(orders, key=lambda o: (o.created, o.seq), reverse=order_by == "desc")


def _limit(params: _Params, default: int, maximum: int) -> int:
    text = params.get("limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise _validation(f"limit must be an integer from 1 to {maximum}")
    return int(text)


def _states(params: _Params, allowed: tuple[str, ...]) -> list[str]:
    single = params.get("state")
    states = params.getlist("states") or ([single] if single else list(allowed))
    if any(s not in allowed for s in states):
        raise _validation(f"states must be among {', '.join(allowed)}")
    return states


def closed_orders(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/orders/closed``: done/cancel orders created in a window of at most 7 days."""
    with ex.lock:
        ex.settle()
        market = params.get("market")
        states = _states(params, ("done", "cancel"))
        limit = _limit(params, 100, 1000)
        try:
            start = _parse_time(params.get("start_time") or "") if params.get("start_time") else None
            end = _parse_time(params.get("end_time") or "") if params.get("end_time") else None
        except ValueError:
            raise _validation("start_time/end_time is not a valid time") from None
        if start is None and end is None:
            end = datetime.fromtimestamp(ex.now(), UTC)
        if start is None:
            assert end is not None
            start = end - MAX_CLOSED_WINDOW
        if end is None:
            end = start + MAX_CLOSED_WINDOW
        if end < start or end - start > MAX_CLOSED_WINDOW:
            raise _validation("the time window must be at most 7 days")
        lo, hi = start.timestamp(), end.timestamp()
        chosen = [
            o
            for o in ex.orders
            if o.state in states and (market is None or o.market == market) and lo <= o.created <= hi
        ]
        return 200, [o.to_json(with_trades=False) for o in _sorted(chosen, params)[:limit]]


def open_orders(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/orders/open``: orders still waiting (only with ``fill_delay_s``)."""
    with ex.lock:
        ex.settle()
        market = params.get("market")
        states = _states(params, ("wait", "watch"))
        limit = _limit(params, 100, 100)
        chosen = [o for o in ex.orders if o.state in states and (market is None or o.market == market)]
        return 200, [o.to_json(with_trades=False) for o in _sorted(chosen, params)[:limit]]


def orders_by_ids(ex: _Exchange, params: _Params) -> tuple[int, Any]:
    """``GET /v1/orders/uuids``: up to 100 ``uuids[]`` or ``identifiers[]`` (not both)."""
    with ex.lock:
        ex.settle()
        uuids = params.getlist("uuids")
        identifiers = params.getlist("identifiers")
        if bool(uuids) == bool(identifiers):
            raise _validation("give either uuids[] or identifiers[]")
        wanted = uuids or identifiers
        if len(wanted) > 100:
            raise _validation("at most 100 uuids or identifiers")
        index = ex.by_uuid if uuids else ex.by_identifier
        market = params.get("market")
        chosen = [index[k] for k in dict.fromkeys(wanted) if k in index]
        chosen = [o for o in chosen if market is None or o.market == market]
        return 200, [o.to_json(with_trades=False) for o in _sorted(chosen, params)]
