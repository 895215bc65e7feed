"""Reading and writing the ``trades`` table (SQL text in ``sql/queries/trades.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradebot.models import Trade
from tradebot.store.db import queries

if TYPE_CHECKING:
    import psycopg

TRADE_COLUMNS = (
    "id", "client_order_id", "trade_id", "symbol", "side", "mode", "status", "price", "amount", "total", "fee",
    "requested_krw", "requested_volume", "error", "decision_id", "recovered", "created_at", "updated_at",
)


@dataclass(frozen=True)
class TradeFilter:
    """Filters of ``trades list``; None means no filter. ``until`` is exclusive."""

    symbol: str | None = None
    side: str | None = None
    status: str | None = None
    mode: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 20


def row_to_trade(row: tuple[Any, ...]) -> Trade:
    values = dict(zip(TRADE_COLUMNS, row, strict=True))
    return Trade(**values)


def list_trades(conn: psycopg.Connection[Any], f: TradeFilter) -> list[Trade]:
    """Trades matching ``f``, newest first."""
    params = {"symbol": f.symbol, "side": f.side, "status": f.status, "mode": f.mode,
              "since": f.since, "until": f.until, "limit": f.limit}
    return [row_to_trade(r) for r in conn.execute(queries("trades")["list"], params).fetchall()]
