"""The paper account's rows (SQL text in ``sql/queries/paper.sql``).

The paper broker (:mod:`tradebot.exchange.paper`) keeps no state of its own: its account is the newest
reset plus the completed paper trades after it, and an order it accepts is written on the pending row
before it fills. Every failure is a :class:`~tradebot.errors.StorageError` saying the paper account could
not be read, so the cycle fails that step cleanly.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.models import Fill, Market, OrderState
from tradebot.store.db import queries, storage_errors

if TYPE_CHECKING:
    import psycopg

guarded = storage_errors("the paper account could not be read from PostgreSQL ({reason})")


def _fill(row: tuple[Any, ...]) -> Fill:
    trade_id, client_order_id, symbol, side, amount, total, fee, created_at = row
    return Fill(uuid=trade_id, client_order_id=client_order_id, market=symbol, side=side, state=OrderState.DONE,
                volume=amount, gross=total, fee=fee, created_at=created_at)


@guarded
def latest_reset(conn: psycopg.Connection[Any]) -> tuple[Decimal, datetime] | None:
    """(starting KRW, when) of the newest ``paper reset``; None before the first."""
    row = conn.execute(queries("paper")["latest_reset"]).fetchone()
    return (Decimal(row[0]), row[1]) if row else None


@guarded
def reset(conn: psycopg.Connection[Any], starting_krw: Decimal) -> datetime:
    """Start a new paper account; returns when."""
    row = conn.execute(queries("paper")["reset"], {"starting_krw": starting_krw}).fetchone()
    assert row is not None
    return row[1]  # type: ignore[no-any-return]


@guarded
def fills_since(conn: psycopg.Connection[Any], since: datetime) -> list[tuple[str, str, Decimal, Decimal, Decimal, Decimal]]:
    """Completed paper trades since ``since``, oldest first: (symbol, side, price, amount, total, fee)."""
    rows: list[tuple[str, str, Decimal, Decimal, Decimal, Decimal]] = conn.execute(
        queries("paper")["fills_since"], {"since": since}).fetchall()
    return rows


@guarded
def accept_order(conn: psycopg.Connection[Any], client_order_id: str, order_uuid: str) -> None:
    """Write the paper order's uuid on its pending row, before any fill exists."""
    conn.execute(queries("paper")["accept_order"], {"client_order_id": client_order_id, "trade_id": order_uuid})


@guarded
def completed_order(conn: psycopg.Connection[Any], *, uuid: str | None = None,
                    client_order_id: str | None = None) -> Fill | None:
    """A completed paper order by its uuid or by our client order id; None when there is none."""
    q = queries("paper")
    if uuid is not None:
        row = conn.execute(q["completed_by_trade_id"], {"trade_id": uuid}).fetchone()
    else:
        row = conn.execute(q["completed_by_client_order_id"], {"client_order_id": client_order_id}).fetchone()
    return _fill(row) if row else None


@guarded
def completed_since(conn: psycopg.Connection[Any], market: Market, since: datetime) -> list[Fill]:
    """Completed paper orders of ``market`` created since ``since``, oldest first."""
    return [_fill(r) for r in conn.execute(queries("paper")["completed_since"], {"symbol": market, "since": since})]
