"""Reading the orders the bot placed for its decisions, for ``tradebot backtest --compare-live``.

SQL text lives in ``sql/queries/history.sql``; the decisions themselves are read by
:func:`tradebot.store.decisions.recorded_decisions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradebot.models import RecordedOrder
from tradebot.store.db import queries, storage_errors

if TYPE_CHECKING:
    import psycopg


@storage_errors()
def orders_of(conn: psycopg.Connection[Any], decision_ids: list[int]) -> list[RecordedOrder]:
    """Every order (any status) placed for these decisions, oldest first."""
    if not decision_ids:
        return []
    rows = conn.execute(queries("history")["trades_of_decisions"], {"ids": decision_ids}).fetchall()
    return [RecordedOrder(*r) for r in rows]
