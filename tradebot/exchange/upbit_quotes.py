"""Upbit's quotation payloads: prices and orderbooks of one or several markets, the market list and many
markets' quotes at once (``tradebot markets``; the portfolio's market check).

``GET /v1/market/all?isDetails=true`` lists every market with its names and warning flags (the older
``market_warning`` and the newer ``market_event``, both read); ``GET /v1/ticker`` takes many markets in one
comma-separated parameter, asked for in chunks so that a URL stays short.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.errors import ExchangeError, ExchangeTransientError
from tradebot.models import Market, MarketQuote, Orderbook, OrderbookLevel, to_decimal

if TYPE_CHECKING:  # this module does not import requests (see public_prices)
    from tradebot.exchange.upbit_http import UpbitHttp

TICKER_CHUNK = 100  # markets per /v1/ticker request


def shape_error(method: str, path: str) -> ExchangeError:
    """A reply Upbit would not send (a proxy's page, a changed API): said the same way everywhere."""
    return ExchangeError(f"{method} {path}: unexpected response shape from Upbit")


def public_prices(api_url: str, markets: Sequence[Market], *, timeout_s: float = 5.0) -> dict[Market, Decimal]:
    """The last prices of ``markets`` from Upbit's public ticker in one GET, made with the standard library:
    a report that needs nothing else from the exchange (``pnl``) then does not import requests and urllib3,
    0.1-0.2 s of every run. No retries and no pacing: a caller that needs them uses the adapter
    (:class:`tradebot.exchange.upbit.UpbitExchange`), as ``pnl`` does when this fails."""
    import json
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode, urlsplit

    url = f"{api_url.rstrip('/')}/v1/ticker?{urlencode({'markets': ','.join(markets)})}"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ExchangeError(f"UPBIT_API_URL must be http or https, got {urlsplit(url).scheme!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        raise ExchangeError(f"GET /v1/ticker: Upbit answered HTTP {e.code}", status=e.code) from None
    except (urllib.error.URLError, OSError) as e:
        raise ExchangeTransientError(f"GET /v1/ticker: Upbit could not be reached ({type(e).__name__})") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise shape_error("GET", "/v1/ticker") from None
    return parse_prices(data, markets)


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
