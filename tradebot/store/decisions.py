"""The decision log, bot state (pause) and the per-ticker cycle lock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.errors import scrub
from tradebot.models import PastDecision
from tradebot.store.db import queries

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class DecisionRecord:
    """One row of ``decisions``: what was asked, answered, allowed, and at what cost."""

    ticker: str
    mode: str
    advisor: str
    model: str | None
    decision: str | None
    confidence: Decimal | None
    fraction: Decimal | None
    reason: str | None
    action: str
    order_krw: Decimal | None
    order_volume: Decimal | None
    clamps: list[dict[str, str]]
    vetoes: list[dict[str, str]]
    indicators: dict[str, Any] | None
    position: dict[str, Any] | None
    filtered: bool
    filter_result: dict[str, Any] | None
    price: Decimal | None
    prompt_hash: str | None
    raw_response: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    latency_ms: int | None
    dry_run: bool
    error: str | None


def _json(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(value, dumps=lambda v: json.dumps(v, default=str, allow_nan=False))


def insert_decision(conn: psycopg.Connection[Any], rec: DecisionRecord) -> int:
    params = dict(rec.__dict__)
    if rec.error is not None:
        params["error"] = scrub(rec.error)  # error texts may quote a server's reply: never store a credential
    for key in ("clamps", "vetoes", "indicators", "position", "filter_result"):
        params[key] = _json(params[key])
    row = conn.execute(queries("decisions")["insert"], params).fetchone()
    assert row is not None
    return int(row[0])


def set_decision_error(conn: psycopg.Connection[Any], decision_id: int, error: str) -> None:
    conn.execute(queries("decisions")["set_error"], {"id": decision_id, "error": scrub(error)})


def recent_decisions(conn: psycopg.Connection[Any], ticker: str, mode: str, price_now: Decimal, limit: int = 5) -> list[PastDecision]:
    """The last ``limit`` decisions, oldest first, with the price change since each one."""
    rows = conn.execute(queries("decisions")["recent"], {"ticker": ticker, "mode": mode, "limit": limit}).fetchall()
    out = []
    for at, action, confidence, price, traded in reversed(rows):
        change = (price_now - price) / price if price else None
        out.append(PastDecision(at=at, action=action, confidence=confidence, price_then=price,
                                price_change_since=change, traded=bool(traded)))
    return out


def get_state(conn: psycopg.Connection[Any], key: str) -> dict[str, Any] | None:
    row = conn.execute(queries("decisions")["get_state"], {"key": key}).fetchone()
    return row[0] if row else None


def set_paused(conn: psycopg.Connection[Any], paused: bool, reason: str) -> None:
    value = {"paused": paused, "reason": reason, "at": datetime.now(UTC).isoformat()}
    conn.execute(queries("decisions")["set_state"], {"key": "paused", "value": _json(value)})


def is_paused(conn: psycopg.Connection[Any]) -> bool:
    state = get_state(conn, "paused")
    return bool(state and state.get("paused"))


def try_cycle_lock(conn: psycopg.Connection[Any], ticker: str, mode: str) -> bool:
    """Take the cycle lock of ``ticker``/``mode`` for the life of ``conn``; False if another process has it."""
    row = conn.execute(queries("decisions")["try_cycle_lock"], {"name": f"tradebot-cycle:{ticker}:{mode}"}).fetchone()
    return bool(row and row[0])


def save_last_run(conn: psycopg.Connection[Any], run: Any) -> None:
    """Remember the last run's metrics (so ``tradebot metrics`` can rewrite them later)."""
    from dataclasses import asdict

    value = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(run).items()}
    conn.execute(queries("decisions")["set_state"], {"key": f"last_run:{run.ticker}:{run.mode}", "value": _json(value)})


def load_last_run(conn: psycopg.Connection[Any], ticker: str, mode: str) -> Any:
    from tradebot.metrics import RunInfo

    v = get_state(conn, f"last_run:{ticker}:{mode}")
    if not v:
        return None
    dec = {k: (Decimal(v[k]) if v.get(k) is not None else None)
           for k in ("position_volume", "equity_krw", "price_krw", "daily_realized_loss_krw", "daily_loss_limit_krw")}
    return RunInfo(ticker=v["ticker"], mode=v["mode"], finished_at=float(v["finished_at"]), success=bool(v["success"]),
                   duration_s=float(v["duration_s"]), **dec)
