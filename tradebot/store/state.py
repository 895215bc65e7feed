"""Bot state — pause (of every market under the key ``paused``, of one under ``paused:<market>``), the last run's
metrics — and the per-market cycle lock (SQL in ``sql/queries/state.sql``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.models import Market, PortfolioInfo, RunInfo
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
def set_state(conn: psycopg.Connection[Any], key: str, value: dict[str, Any]) -> None:
    """Store ``value`` (JSON) under ``key`` in ``bot_state``."""
    _set_state(conn, key, value)


def _pause_key(market: Market | None) -> str:
    return "paused" if market is None else f"paused:{market}"


@storage_errors()
def set_paused(conn: psycopg.Connection[Any], paused: bool, reason: str, market: Market | None = None, *,
               by: str | None = None) -> None:
    """Pause or allow new buys: of every market (``market`` None), or of one. Allowing every market also
    lifts each market's own pause. ``by`` records who asked (e.g. a Telegram user), beside when."""
    value: dict[str, Any] = {"paused": paused, "reason": reason, "at": datetime.now(UTC).isoformat()}
    if by:
        value["by"] = by
    _set_state(conn, _pause_key(market), value)
    if market is None and not paused:
        conn.execute(queries("state")["lift_market_pauses"], {"value": jsonb(value)})


@storage_errors()
def resume_market(conn: psycopg.Connection[Any], market: Market, reason: str, traded: tuple[Market, ...], *,
                  by: str | None = None) -> None:
    """Allow new buys of ``market`` again. When every market is paused, the pause of all becomes a pause of
    each other market of ``traded`` (with the same reason), so only ``market`` resumes. One transaction
    when ``conn`` is not in autocommit mode."""
    every = get_state(conn, "paused")
    if every and every.get("paused"):
        for other in traded:
            if other != market:
                _set_state(conn, _pause_key(other), dict(every))
        _set_state(conn, "paused", {"paused": False, "reason": reason, "at": datetime.now(UTC).isoformat()})
    value: dict[str, Any] = {"paused": False, "reason": reason, "at": datetime.now(UTC).isoformat()}
    if by:
        value["by"] = by
    _set_state(conn, _pause_key(market), value)


@storage_errors()
def is_paused(conn: psycopg.Connection[Any], market: Market | None = None) -> bool:
    """Whether new buys are paused: for every market, or (``market`` given) for that one in particular."""
    rows = conn.execute(queries("state")["pauses"], {"keys": ["paused"] + ([_pause_key(market)] if market else [])})
    return any(bool(value and value.get("paused")) for (value,) in rows)


@storage_errors()
def try_cycle_lock(conn: psycopg.Connection[Any], market: Market, mode: str) -> bool:
    """Take the cycle lock of ``market``/``mode`` for the life of ``conn``; False if another process has it."""
    return try_lock(conn, f"tradebot-cycle:{market}:{mode}")


@storage_errors()
def try_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    """Take the session lock ``name`` for the life of ``conn``; False if another process has it."""
    row = conn.execute(queries("state")["try_cycle_lock"], {"name": name}).fetchone()
    return bool(row and row[0])


@storage_errors()
def wait_for_account_lock(conn: psycopg.Connection[Any], mode: str, timeout_s: float) -> bool:
    """Take the account lock of ``mode`` for the life of ``conn`` (autocommit), waiting up to ``timeout_s``
    for another run of the same account — another market's cycle, a reconcile — to finish; False when it did
    not. Runs over different markets queue here instead of spending the same KRW."""
    import psycopg

    q = queries("state")
    conn.execute(q["set_lock_timeout"], {"ms": max(int(timeout_s * 1000), 1)})
    try:
        conn.execute(q["account_lock"], {"name": f"tradebot-account:{mode}"})
        return True
    except psycopg.errors.LockNotAvailable:
        return False
    finally:
        conn.execute(q["reset_lock_timeout"])


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


@storage_errors()
def save_last_portfolio(conn: psycopg.Connection[Any], info: PortfolioInfo) -> None:
    """Remember the last portfolio run's totals (so ``tradebot metrics`` can rewrite them later)."""
    _set_state(conn, f"last_portfolio:{info.mode}",
               {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(info).items()})


@storage_errors()
def load_last_portfolio(conn: psycopg.Connection[Any], mode: str) -> PortfolioInfo | None:
    v = get_state(conn, f"last_portfolio:{mode}")
    if not v:
        return None
    return PortfolioInfo(mode=v["mode"], krw_free=Decimal(v["krw_free"]), exposure_krw=Decimal(v["exposure_krw"]),
                         open_positions=int(v["open_positions"]), equity_krw=Decimal(v["equity_krw"]),
                         markets=int(v["markets"]), markets_failed=int(v["markets_failed"]),
                         max_exposure_krw=Decimal(v["max_exposure_krw"]) if v.get("max_exposure_krw") is not None else None,
                         max_open_positions=v.get("max_open_positions"),
                         **{k: Decimal(v[k]) if v.get(k) is not None else None
                            for k in ("daily_realized_loss_krw", "daily_loss_limit_krw")})


@storage_errors()
def claim_day(conn: psycopg.Connection[Any], key: str, day: str) -> bool:
    """True for the one run that claims ``key`` first on ``day``; False for every other."""
    return conn.execute(queries("state")["claim_day"], {"key": key, "day": day}).fetchone() is not None


@storage_errors()
def unclaim_day(conn: psycopg.Connection[Any], key: str, day: str) -> None:
    conn.execute(queries("state")["unclaim_day"], {"key": key, "day": day})
