"""Running totals for the Prometheus metrics (SQL text in ``sql/queries/metrics.sql``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradebot.store.db import queries, storage_errors

if TYPE_CHECKING:
    import psycopg

TOTALS = ("decisions_by_action", "filtered_decisions", "trades_by_side_status", "fees", "llm_usage", "errors")


@storage_errors()
def read_totals(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every total the metrics file shows, by query name: rows of (labels..., value)."""
    q = queries("metrics")
    return {name: [tuple(r) for r in conn.execute(q[name]).fetchall()] for name in TOTALS}
