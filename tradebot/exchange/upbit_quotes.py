"""Upbit's market list and many markets' quotes at once (``tradebot markets``; the portfolio's market check).

``GET /v1/market/all?isDetails=true`` lists every market with its names and warning flags (the older
``market_warning`` and the newer ``market_event``, both read); ``GET /v1/ticker`` takes many markets in one
comma-separated parameter, asked for in chunks so that a URL stays short.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradebot.errors import ExchangeError
from tradebot.exchange.upbit_http import UpbitHttp
from tradebot.models import Market, MarketQuote, to_decimal

TICKER_CHUNK = 100  # markets per /v1/ticker request


def _shape(path: str) -> ExchangeError:
    return ExchangeError(f"GET {path}: unexpected response shape from Upbit")


def krw_markets(http: UpbitHttp) -> list[tuple[Market, str, str, bool, tuple[str, ...]]]:
    """Every KRW market Upbit lists: (market, Korean name, English name, warning, caution reasons)."""
    data = http.get("/v1/market/all", params=[("isDetails", "true")])
    if not isinstance(data, list):
        raise _shape("/v1/market/all")
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
            raise _shape("/v1/market/all") from e
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
            raise _shape("/v1/ticker") from e
    return out
