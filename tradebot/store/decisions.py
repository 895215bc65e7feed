"""The decision log (SQL text in ``sql/queries/decisions.sql``).

Vocabulary: the advisor's answer is a :class:`~tradebot.models.Decision` (its ``action`` is what it proposes:
buy, sell or hold; the ``decisions.decision`` column); the risk gate's verdict is a
:class:`~tradebot.models.GateResult` (its ``action`` is what the cycle does; the ``decisions.action`` column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.errors import scrub
from tradebot.models import (
    AdvisorResult,
    GateResult,
    IndicatorSnapshot,
    Market,
    Position,
    RecordedDecision,
    ScoredDecision,
    plain,
)
from tradebot.store.db import queries, storage_errors
from tradebot.store.state import jsonb

if TYPE_CHECKING:
    import psycopg

FILTERED_REASON = "backtest filter: the rule strategy is losing over the recent window"


@dataclass(frozen=True)
class CycleContext:
    """What the cycle knew when it decided (or failed): everything a decision row records besides the
    advisor's result and the gate's verdict. ``error`` ("step: message") is set when the cycle failed."""

    market: Market
    mode: str
    advisor: str  # the configured advisor, recorded when it was never asked
    dry_run: bool
    position: Position | None = None
    indicators: IndicatorSnapshot | None = None
    filter_result: dict[str, Any] | None = None
    filtered: bool = False
    error: str | None = None
    cycle_id: str | None = None  # the run's id, shared by the rows of every market it decided for
    note: str | None = None  # why the advisor was not asked (a portfolio market where no order is possible)
    role: str = "acting"  # "shadow": decided beside the acting advisor, never sent to an order (tradebot.shadow)
    reflection: bool = False  # the prompt carried the advisor's own scored decisions


def position_json(p: Position) -> dict[str, str]:
    """A position as the ``decisions.position`` column keeps it (exact decimal strings)."""
    return {"free_krw": plain(p.free_krw), "locked_krw": plain(p.locked_krw), "coin_volume": plain(p.coin_volume),
            "coin_free": plain(p.coin_free), "avg_buy_price": plain(p.avg_buy_price), "price": plain(p.price),
            "position_value": plain(p.position_value), "equity": plain(p.equity)}


def position_from_json(market: Market, data: Any) -> Position | None:
    """The inverse of :func:`position_json` (None for a row without a position)."""
    if not data:
        return None
    return Position(market=market, free_krw=Decimal(data["free_krw"]), locked_krw=Decimal(data["locked_krw"]),
                    coin_volume=Decimal(data["coin_volume"]), coin_free=Decimal(data["coin_free"]),
                    avg_buy_price=Decimal(data["avg_buy_price"]), price=Decimal(data["price"]))


def _row(ctx: CycleContext, result: AdvisorResult | None, gate: GateResult) -> dict[str, Any]:
    d = result.decision if result else None
    failed = ctx.error is not None
    return {
        "ticker": ctx.market, "mode": ctx.mode, "advisor": result.advisor if result else ctx.advisor,
        "model": result.model if result else None,
        "decision": d.action if d else ("hold" if ctx.filtered or ctx.note else None),
        "confidence": d.confidence if d else None, "fraction": d.fraction if d else None,
        "reason": d.reason if d else (FILTERED_REASON if ctx.filtered else ctx.note),
        "action": "hold" if failed else gate.action,
        "order_krw": None if failed else gate.krw, "order_volume": None if failed else gate.volume,
        "clamps": jsonb(list(gate.clamps)), "vetoes": jsonb(list(gate.vetoes)),
        "indicators": jsonb(ctx.indicators.as_dict() if ctx.indicators else None),
        "position": jsonb(position_json(ctx.position) if ctx.position else None),
        "filtered": ctx.filtered, "filter_result": jsonb(ctx.filter_result),
        "price": ctx.position.price if ctx.position else None,
        "prompt_hash": result.prompt_hash if result else None, "raw_response": result.raw_response if result else None,
        "input_tokens": result.input_tokens if result else 0, "output_tokens": result.output_tokens if result else 0,
        "cache_read_tokens": result.cache_read_tokens if result else 0,
        "cache_write_tokens": result.cache_write_tokens if result else 0,
        "cost_usd": result.cost_usd if result else Decimal(0),
        "latency_ms": int(result.latency_s * 1000) if result else None, "dry_run": ctx.dry_run,
        # error texts may quote a server's reply: never store a credential
        "error": scrub(ctx.error) if ctx.error is not None else None,
        "cycle_id": ctx.cycle_id, "role": ctx.role, "reflection": ctx.reflection,
    }


@storage_errors()
def record_decision(conn: psycopg.Connection[Any], ctx: CycleContext, result: AdvisorResult | None,
                    gate: GateResult) -> int:
    """Write one ``decisions`` row — every cycle has one per market, holds, filtered, vetoed and failed ones
    included, plus one per shadow advisor (``ctx.role``) — and return its id. A failed cycle records ``hold``
    and no order, whatever the gate said."""
    row = conn.execute(queries("decisions")["insert"], _row(ctx, result, gate)).fetchone()
    assert row is not None
    return int(row[0])


@storage_errors()
def set_decision_error(conn: psycopg.Connection[Any], decision_id: int, error: str) -> None:
    conn.execute(queries("decisions")["set_error"], {"id": decision_id, "error": scrub(error)})


def _position(market: Market, data: Any) -> Position | None:
    if not isinstance(data, dict):
        return None
    try:
        return position_from_json(market, data)
    except (KeyError, TypeError, ArithmeticError, ValueError):
        return None


def read_decision(market: Market, row: Sequence[Any]) -> RecordedDecision:
    """A ``decisions`` row of the ``recent``/``between`` queries as the one read shape."""
    (id_, created_at, advisor, decision, confidence, fraction, action, order_krw, order_volume, price, position,
     indicators, filtered, vetoes, error, dry_run, traded) = row
    close = indicators.get("close") if isinstance(indicators, dict) else None
    return RecordedDecision(
        id=int(id_), created_at=created_at, advisor=advisor, decision=decision, confidence=confidence,
        fraction=fraction, action=action, order_krw=order_krw, order_volume=order_volume, price=price,
        position=_position(market, position), indicator_close=float(close) if close is not None else None,
        filtered=bool(filtered), vetoes=tuple(str(v.get("rule", "?")) for v in (vetoes or []) if isinstance(v, dict)),
        error=error, dry_run=bool(dry_run), traded=bool(traded))


@storage_errors()
def recent_decisions(conn: psycopg.Connection[Any], market: Market, mode: str, limit: int = 5) -> list[RecordedDecision]:
    """The last ``limit`` decisions of ``market``/``mode``, oldest first."""
    rows = conn.execute(queries("decisions")["recent"], {"ticker": market, "mode": mode, "limit": limit}).fetchall()
    return [read_decision(market, r) for r in reversed(rows)]


@storage_errors()
def recorded_decisions(conn: psycopg.Connection[Any], market: Market, mode: str, since: datetime | None,
                       until: datetime | None) -> list[RecordedDecision]:
    """Decisions of ``market``/``mode`` with ``since <= created_at < until``, oldest first."""
    cur = conn.execute(queries("decisions")["between"], {"ticker": market, "mode": mode, "since": since, "until": until})
    return [read_decision(market, r) for r in cur]


@storage_errors()
def llm_spend(conn: psycopg.Connection[Any], now: datetime) -> tuple[Decimal, Decimal]:
    """USD spent on the model since 00:00 UTC and since the 1st of the month (UTC), from the decision rows."""
    from datetime import UTC

    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    row = conn.execute(queries("decisions")["llm_spend"], {"day": day, "month": day.replace(day=1)}).fetchone()
    assert row is not None
    return Decimal(row[0]), Decimal(row[1])


@storage_errors()
def scored_recent(conn: psycopg.Connection[Any], market: Market, mode: str, advisor: str,
                  limit: int = 10) -> tuple[ScoredDecision, ...]:
    """The last ``limit`` scored acting decisions of ``advisor`` for ``market``/``mode``, oldest first."""
    rows = conn.execute(queries("decisions")["scored_recent"],
                        {"ticker": market, "mode": mode, "advisor": advisor, "limit": limit}).fetchall()
    return tuple(ScoredDecision(r[0], str(r[1]), r[2], int(r[3]), r[4], bool(r[5])) for r in reversed(rows))


@storage_errors()
def spend_between(conn: psycopg.Connection[Any], since: datetime, until: datetime) -> Decimal:
    row = conn.execute(queries("decisions")["spend_between"], {"since": since, "until": until}).fetchone()
    return Decimal(row[0]) if row else Decimal(0)
