"""Running totals for the Prometheus metrics (SQL text in ``sql/queries/metrics.sql``)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.store.db import queries, storage_errors

if TYPE_CHECKING:
    import psycopg

TOTALS = ("decisions_by_action", "filtered_decisions", "trades_by_side_status", "fees", "llm_usage", "errors",
          "advisor_decisions", "advisor_hits_24h", "llm_spend_now", "budget_fallbacks_today",
          "telegram_ignored", "telegram_commands")


@storage_errors()
def read_totals(conn: psycopg.Connection[Any], llm_caps: tuple[Decimal | None, Decimal | None] = (None, None)
                ) -> dict[str, list[tuple[Any, ...]]]:
    """Every total the metrics file shows, by query name: rows of (labels..., value); ``llm_caps`` (the daily
    and monthly model budgets, None: none) travel along under ``llm_caps``."""
    q = queries("metrics")
    totals = {name: [tuple(r) for r in conn.execute(q[name]).fetchall()] for name in TOTALS}
    totals["llm_caps"] = [llm_caps]
    return totals
