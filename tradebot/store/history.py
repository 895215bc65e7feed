"""Reading what the bot decided and traded, for ``tradebot backtest --compare-live``.

SQL text lives in ``sql/queries/history.sql``. The records are read-only views of ``decisions`` and
``trades`` rows with just the columns the comparison needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.models import Market, Position
from tradebot.store.db import queries, storage_errors
from tradebot.store.decisions import position_from_json

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class RecordedDecision:
    """One ``decisions`` row: what the advisor proposed, what the gate let through, and the context."""

    id: int
    created_at: datetime
    advisor: str
    decision: str | None  # what the advisor proposed (None: no usable decision)
    confidence: Decimal | None
    fraction: Decimal | None
    action: str  # after the risk gate
    order_krw: Decimal | None
    order_volume: Decimal | None
    price: Decimal | None  # the last price when the cycle read the portfolio
    position: Position | None  # None when the cycle failed before reading the portfolio
    indicator_close: float | None  # close of the last candle the cycle saw
    filtered: bool
    vetoes: tuple[str, ...]  # rule names
    error: str | None
    dry_run: bool


@dataclass(frozen=True)
class RecordedOrder:
    """One ``trades`` row placed for a decision."""

    id: int
    decision_id: int
    created_at: datetime
    side: str
    status: str
    price: Decimal | None  # average fill price
    amount: Decimal | None
    total: Decimal | None
    fee: Decimal | None
    requested_krw: Decimal | None
    requested_volume: Decimal | None


def _position(market: Market, data: Any) -> Position | None:
    if not isinstance(data, dict):
        return None
    try:
        return position_from_json(market, data)
    except (KeyError, TypeError, ArithmeticError, ValueError):
        return None


@storage_errors()
def recorded_decisions(conn: psycopg.Connection[Any], market: Market, mode: str, since: datetime | None,
                       until: datetime | None) -> list[RecordedDecision]:
    """Decisions of ``market``/``mode`` with ``since <= created_at < until``, oldest first."""
    out = []
    cur = conn.execute(queries("history")["decisions"], {"ticker": market, "mode": mode, "since": since, "until": until})
    for (id_, created_at, advisor, decision, confidence, fraction, action, order_krw, order_volume, price, position,
         indicators, filtered, vetoes, error, dry_run) in cur:
        close = indicators.get("close") if isinstance(indicators, dict) else None
        out.append(RecordedDecision(
            id=int(id_), created_at=created_at, advisor=advisor, decision=decision, confidence=confidence,
            fraction=fraction, action=action, order_krw=order_krw, order_volume=order_volume, price=price,
            position=_position(market, position), indicator_close=float(close) if close is not None else None,
            filtered=bool(filtered), vetoes=tuple(str(v.get("rule", "?")) for v in (vetoes or []) if isinstance(v, dict)),
            error=error, dry_run=bool(dry_run)))
    return out


@storage_errors()
def orders_of(conn: psycopg.Connection[Any], decision_ids: list[int]) -> list[RecordedOrder]:
    """Every order (any status) placed for these decisions, oldest first."""
    if not decision_ids:
        return []
    rows = conn.execute(queries("history")["trades_of_decisions"], {"ids": decision_ids}).fetchall()
    return [RecordedOrder(*r) for r in rows]
