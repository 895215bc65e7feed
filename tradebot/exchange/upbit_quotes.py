"""Upbit's quotation payloads: prices and orderbooks of one or several markets, the market list and many
markets' quotes at once (``tradebot markets``; the portfolio's market check).

``GET /v1/market/all?isDetails=true`` lists every market with its names and warning flags (the older
``market_warning`` and the newer ``market_event``, both read); ``GET /v1/ticker`` takes many markets in one
comma-separated parameter, asked for in chunks so that a URL stays short.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradebot.errors import ExchangeError
from tradebot.exchange.upbit_http import UpbitHttp, shape_error
from tradebot.models import Market, MarketQuote, Orderbook, OrderbookLevel, to_decimal

TICKER_CHUNK = 100  # markets per /v1/ticker request


def krw_markets(http: UpbitHttp) -> list[tuple[Market, str, str, bool, tuple[str, ...]]]:
    """Every KRW market Upbit lists: (market, Korean name, English name, warning, caution reasons)."""
    data = http.get("/v1/market/all", params=[("isDetails", "true")])
    if not isinstance(data, list):
        raise shape_error("GET", "/v1/market/all")
    out = []
    for row in data:
        try:
            code = str(row["market"])
            if not code.startswith("KRW-"):
                continue
            event: Any = row.get("market_event") or {}
            caution: Any = event.get("caution") or {}
            warning = row.get("market_warning") == "CAUTION" or bool(event.get("warning"))
            out.append((Market(code), str(row.get("korean_name", "")), str(row.get("english_name", "")), warning,
                        tuple(sorted(k for k, v in caution.items() if v is True))))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise shape_error("GET", "/v1/market/all") from e
    return out


def quotes(http: UpbitHttp, listed: Sequence[tuple[Market, str, str, bool, tuple[str, ...]]]) -> list[MarketQuote]:
    """The last price, the change and the 24-hour traded KRW of every market in ``listed`` (in its order)."""
    out: list[MarketQuote] = []
    for i in range(0, len(listed), TICKER_CHUNK):
        chunk = listed[i:i + TICKER_CHUNK]
        data = http.get("/v1/ticker", params=[("markets", ",".join(m for m, *_ in chunk))])
        try:
            rows = {str(r["market"]): r for r in data}
            for market, korean, english, warning, cautions in chunk:
                r = rows.get(market)
                if r is None:  # listed but not quoted (just listed, or suspended): nothing to show
                    continue
                out.append(MarketQuote(market, korean, english, warning, cautions, to_decimal(r["trade_price"]),
                                       to_decimal(r.get("signed_change_rate", 0)),
                                       to_decimal(r.get("acc_trade_price_24h", 0)) or Decimal(0)))
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as e:
            raise shape_error("GET", "/v1/ticker") from e
    return out


def parse_prices(data: Any, markets: Sequence[Market]) -> dict[Market, Decimal]:
    """``/v1/ticker`` rows → the last trade price of each of ``markets`` (every one must be there)."""
    try:
        if len(markets) == 1:  # the one row answers the one market asked for, whatever code it echoes
            return {markets[0]: to_decimal(data[0]["trade_price"])}
        by_market = {str(row["market"]): to_decimal(row["trade_price"]) for row in data}
        return {m: by_market[m] for m in markets}
    except (KeyError, IndexError, TypeError, ValueError, ArithmeticError, AttributeError) as e:
        raise shape_error("GET", "/v1/ticker") from e


def parse_orderbooks(data: Any, markets: Sequence[Market]) -> dict[Market, Orderbook]:
    """``/v1/orderbook`` rows → the orderbook of each of ``markets``, best levels first (with one market asked
    for, the first row is its book, under the code the exchange echoes)."""
    out: dict[Market, Orderbook] = {}
    try:
        rows = list(data)
        for row in rows:
            code = str(row.get("market", markets[0]))
            levels = tuple(
                OrderbookLevel(ask_price=to_decimal(u["ask_price"]), ask_size=to_decimal(u["ask_size"]),
                               bid_price=to_decimal(u["bid_price"]), bid_size=to_decimal(u["bid_size"]))
                for u in row["orderbook_units"])
            if not levels:
                raise ExchangeError(f"Upbit returned an empty orderbook for {code}")
            for m in markets:
                if m == code or len(markets) == 1:  # one market asked: the (first) row is its book
                    out.setdefault(m, Orderbook(market=code, levels=levels))
        if not rows:
            raise IndexError("no orderbook")
        return {m: out[m] for m in markets}
    except (KeyError, IndexError, TypeError, ValueError, ArithmeticError, AttributeError) as e:
        raise shape_error("GET", "/v1/orderbook") from e
