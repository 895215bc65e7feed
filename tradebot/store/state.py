"""Bot state — pause, the last run's metrics — and the per-market cycle lock (SQL in ``sql/queries/state.sql``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.models import Market, RunInfo
from tradebot.store.db import queries, storage_errors

if TYPE_CHECKING:
    import psycopg

_RUN_DECIMALS = ("position_volume", "equity_krw", "price_krw", "daily_realized_loss_krw", "daily_loss_limit_krw")


def jsonb(value: Any) -> Any:
    """A JSON parameter (Decimals and datetimes as strings; NaN refused)."""
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(value, dumps=lambda v: json.dumps(v, default=str, allow_nan=False))


@storage_errors()
def get_state(conn: psycopg.Connection[Any], key: str) -> dict[str, Any] | None:
    row = conn.execute(queries("state")["get_state"], {"key": key}).fetchone()
    return row[0] if row else None


def _set_state(conn: psycopg.Connection[Any], key: str, value: dict[str, Any]) -> None:
    conn.execute(queries("state")["set_state"], {"key": key, "value": jsonb(value)})


@storage_errors()
def set_paused(conn: psycopg.Connection[Any], paused: bool, reason: str) -> None:
    _set_state(conn, "paused", {"paused": paused, "reason": reason, "at": datetime.now(UTC).isoformat()})


@storage_errors()
def is_paused(conn: psycopg.Connection[Any]) -> bool:
    state = get_state(conn, "paused")
    return bool(state and state.get("paused"))


@storage_errors()
def try_cycle_lock(conn: psycopg.Connection[Any], market: Market, mode: str) -> bool:
    """Take the cycle lock of ``market``/``mode`` for the life of ``conn``; False if another process has it."""
    row = conn.execute(queries("state")["try_cycle_lock"], {"name": f"tradebot-cycle:{market}:{mode}"}).fetchone()
    return bool(row and row[0])


@storage_errors()
def save_last_run(conn: psycopg.Connection[Any], run: RunInfo) -> None:
    """Remember the last run's metrics (so ``tradebot metrics`` can rewrite them later)."""
    value = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(run).items()}
    value["ticker"] = value.pop("market")  # the stored key since version 1
    _set_state(conn, f"last_run:{run.market}:{run.mode}", value)


@storage_errors()
def load_last_run(conn: psycopg.Connection[Any], market: Market, mode: str) -> RunInfo | None:
    v = get_state(conn, f"last_run:{market}:{mode}")
    if not v:
        return None
    dec = {k: (Decimal(v[k]) if v.get(k) is not None else None) for k in _RUN_DECIMALS}
    return RunInfo(market=Market(v["ticker"]), mode=v["mode"], finished_at=float(v["finished_at"]),
                   success=bool(v["success"]), duration_s=float(v["duration_s"]), **dec)
