"""Reading and writing the ``trades`` table (SQL text in ``sql/queries/trades.sql``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from tradebot.models import TRADE_COLUMNS, Fill, LedgerEntry, Trade
from tradebot.store.db import queries, storage_errors

if TYPE_CHECKING:
    import psycopg



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


@storage_errors()
def list_trades(conn: psycopg.Connection[Any], f: TradeFilter) -> list[Trade]:
    """Trades matching ``f``, newest first."""
    params = {"symbol": f.symbol, "side": f.side, "status": f.status, "mode": f.mode,
              "since": f.since, "until": f.until, "limit": f.limit}
    return [row_to_trade(r) for r in conn.execute(queries("trades")["list"], params).fetchall()]


@storage_errors()
def ledger_entries(conn: psycopg.Connection[Any], symbol: str, mode: str) -> list[LedgerEntry]:
    """Completed trades of ``symbol``/``mode``, oldest first."""
    rows = conn.execute(queries("trades")["completed_ledger"], {"symbol": symbol, "mode": mode}).fetchall()
    return [LedgerEntry(at=r[0], side=r[1], price=r[2], amount=r[3], total=r[4], fee=r[5], trade_id=r[6]) for r in rows]


@storage_errors()
def insert_pending(conn: psycopg.Connection[Any], *, client_order_id: str, symbol: str, side: str, mode: str,
                   requested_krw: Decimal | None, requested_volume: Decimal | None, decision_id: int | None) -> int:
    """Record an order before it is sent. ``conn`` must be in autocommit mode (or committed right after)."""
    row = conn.execute(queries("trades")["insert_pending"], {
        "client_order_id": client_order_id, "symbol": symbol, "side": side, "mode": mode,
        "requested_krw": requested_krw, "requested_volume": requested_volume, "decision_id": decision_id,
    }).fetchone()
    assert row is not None
    return int(row[0])


@storage_errors()
def apply_fill(conn: psycopg.Connection[Any], client_order_id: str, fill: Fill) -> str:
    """Complete a pending row from the exchange's account of the order; returns the row's status after.

    Filled → ``completed`` with the fill; final with nothing filled → ``cancelled``; not final yet → stays
    ``pending`` with the exchange uuid remembered. A row that is no longer pending is left as it is (its
    current status is returned); ``missing`` means there is no row with that client order id at all.
    """
    q = queries("trades")
    if fill.filled:
        row = conn.execute(q["complete"], {
            "client_order_id": client_order_id, "trade_id": fill.uuid, "price": fill.avg_price,
            "amount": fill.volume, "total": fill.gross, "fee": fill.fee}).fetchone()
        status = "completed"
    elif fill.resolved and fill.state.final:
        row = conn.execute(q["cancel"], {"client_order_id": client_order_id, "trade_id": fill.uuid,
                                         "error": f"order {fill.state.value} with nothing filled"}).fetchone()
        status = "cancelled"
    else:
        if fill.uuid:
            conn.execute(q["set_trade_id"], {"client_order_id": client_order_id, "trade_id": fill.uuid})
        row, status = None, "pending"
    if row is None:
        current = get_trade(conn, client_order_id)
        return current.status if current else "missing"
    return status


@storage_errors()
def mark_failed(conn: psycopg.Connection[Any], client_order_id: str, error: str) -> None:
    conn.execute(queries("trades")["fail"], {"client_order_id": client_order_id, "error": error})


@storage_errors()
def mark_unknown(conn: psycopg.Connection[Any], client_order_id: str, error: str) -> None:
    """A pending order whose outcome cannot be established: status ``unknown``, ``error`` says what to do."""
    conn.execute(queries("trades")["mark_unknown"], {"client_order_id": client_order_id, "error": error})


@storage_errors()
def pending_trades(conn: psycopg.Connection[Any], symbol: str, mode: str) -> list[Trade]:
    rows = conn.execute(queries("trades")["pending"], {"symbol": symbol, "mode": mode}).fetchall()
    return [row_to_trade(r) for r in rows]


@storage_errors()
def get_trade(conn: psycopg.Connection[Any], client_order_id: str) -> Trade | None:
    row = conn.execute(queries("trades")["by_client_order_id"], {"client_order_id": client_order_id}).fetchone()
    return row_to_trade(row) if row else None


@storage_errors()
def ledgers(conn: psycopg.Connection[Any], *, symbol: str | None, mode: str | None,
            until: datetime | None) -> dict[tuple[str, str], list[LedgerEntry]]:
    """Completed trades before ``until`` grouped by (symbol, mode), oldest first."""
    out: dict[tuple[str, str], list[LedgerEntry]] = {}
    cur = conn.execute(queries("trades")["completed_all"], {"symbol": symbol, "mode": mode, "until": until})
    for sym, md, at, side, price, amount, total, fee, trade_id, recovered in cur:
        out.setdefault((sym, md), []).append(LedgerEntry(at, side, price, amount, total, fee, trade_id, recovered))
    return out


S = TypeVar("S")


def _batches(cur: Any, size: int = 10_000) -> Any:
    """The cursor's rows, fetched ``size`` at a time (a C loop each) instead of one Python call per row."""
    while batch := cur.fetchmany(size):
        yield from batch


@storage_errors()
def checkpointed(conn: psycopg.Connection[Any], symbol: str, mode: str, *, load: Callable[[dict[str, Any] | None], S],
                 fold: Callable[[S, LedgerEntry], None], dump: Callable[[S], dict[str, Any]],
                 snapshot: Callable[[S], dict[str, Any]] | None = None,
                 days: Callable[[S], list[dict[str, Any]]] | None = None) -> tuple[S, Decimal | None]:
    """A running summary of every completed trade of ``symbol``/``mode``, kept as a checkpoint row.

    ``load`` builds the summary from the stored checkpoint (None: there is none yet), ``fold`` applies one
    newer trade to it, ``dump`` turns it into JSON for the next checkpoint (the P&L accumulator supplies
    the three). With ``snapshot``, the first trade of every UTC day that is folded also leaves a day
    snapshot (``pnl_snapshots``: ``snapshot(summary)`` just before that trade, and the last fill price), which
    :func:`ledger_at` finds for a window. With ``days``, the day totals it hands over after the fold (days a
    later trade finished) are saved in ``pnl_days`` for :func:`day_totals`. Reads and writes under the same advisory lock the checkpoint
    trigger takes, in one transaction, so a trade completed concurrently either is in what we read or
    invalidates what we write. Returns (summary, last fill price or None).
    """
    from psycopg.types.json import Jsonb

    q = queries("trades")
    key = {"symbol": symbol, "mode": mode}
    with conn.transaction():
        conn.execute(q["pnl_lock"], key)
        row = conn.execute(q["pnl_checkpoint"], key).fetchone()
        if row:
            after_at, after_id, state = row
            summary = load(state)
            last_price = Decimal(state["last_price"]) if state.get("last_price") else None
            day: date | None = after_at.astimezone(UTC).date()
        else:
            after_at, after_id, summary, last_price, day = datetime(1, 1, 1, tzinfo=UTC), 0, load(None), None, None
        last: tuple[Any, Any] | None = None
        snapshots: list[dict[str, Any]] = []
        for id_, at, side, price, amount, total, fee, trade_id, recovered in _batches(conn.execute(
                q["completed_after"], {**key, "after_at": after_at, "after_id": after_id})):
            if snapshot is not None and at.astimezone(UTC).date() != day:
                day = at.astimezone(UTC).date()
                snap = snapshot(summary)
                snap["last_price"] = None if last_price is None else str(last_price)
                snapshots.append({**key, "day": day, "ledger": Jsonb(snap)})
            fold(summary, LedgerEntry(at, side, price, amount, total, fee, trade_id, recovered))
            last, last_price = (at, id_), price
        if last is not None:
            state = dump(summary)
            state["last_price"] = str(last_price)
            conn.execute(q["save_pnl_checkpoint"], {**key, "last_created_at": last[0], "last_id": last[1],
                                                    "state": Jsonb(state)})
        if snapshots:
            with conn.cursor() as cur:
                cur.executemany(q["save_pnl_snapshot"], snapshots)
        finished = days(summary) if days is not None else []
        if finished:
            with conn.cursor() as cur:
                cur.executemany(q["save_pnl_day"], [{**key, **d} for d in finished])
    return summary, last_price


@storage_errors()
def checkpoint_trades(conn: psycopg.Connection[Any], symbol: str, mode: str) -> int:
    """How many completed trades of ``symbol``/``mode`` the whole-history checkpoint holds (0: none yet)."""
    row = conn.execute(queries("trades")["pnl_checkpoint"], {"symbol": symbol, "mode": mode}).fetchone()
    return int(row[2]["trades"]) if row else 0


@storage_errors()
def ledger_at(conn: psycopg.Connection[Any], symbol: str, mode: str, at: datetime) -> tuple[datetime, dict[str, Any]] | None:
    """The newest day snapshot of ``symbol``/``mode`` whose day begins at or before ``at``: (that day's start,
    the snapshot) — the running position after every completed trade created before it. None when there is
    none (no trade before ``at``'s day, or the snapshots are being rebuilt): replay from the first trade."""
    row = conn.execute(queries("trades")["pnl_snapshot_at"],
                       {"symbol": symbol, "mode": mode, "day": at.astimezone(UTC).date()}).fetchone()
    if row is None:
        return None
    return datetime.combine(row[0], time(0), tzinfo=UTC), row[1]


@storage_errors()
def completed_between(conn: psycopg.Connection[Any], symbol: str, mode: str, start: datetime | None,
                      until: datetime | None) -> list[LedgerEntry]:
    """Completed trades of ``symbol``/``mode`` with ``start <= created_at < until`` (None: unbounded), in ledger
    order."""
    rows = conn.execute(queries("trades")["completed_between"],
                        {"symbol": symbol, "mode": mode, "start": start, "until": until}).fetchall()
    # fetchall builds the rows in one C loop; iterating the cursor costs several µs a row in Python.
    return [LedgerEntry(*row) for row in rows]


@storage_errors()
def ledger_pairs(conn: psycopg.Connection[Any], symbol: str | None, mode: str | None) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(queries("trades")["ledger_pairs"], {"symbol": symbol, "mode": mode})]


@storage_errors()
def trades_by_client_order_ids(conn: psycopg.Connection[Any], ids: list[str]) -> list[Trade]:
    return [row_to_trade(r) for r in conn.execute(queries("trades")["by_client_order_ids"], {"ids": ids}).fetchall()]


@storage_errors()
def insert_recovered(conn: psycopg.Connection[Any], client_order_id: str, fill: Fill, mode: str) -> None:
    """A filled order of ours with no row (found on the exchange, or in the fill journal): add it, marked
    ``recovered``."""
    conn.execute(queries("trades")["insert_recovered"], {
        "client_order_id": client_order_id, "trade_id": fill.uuid, "symbol": fill.market, "side": fill.side,
        "mode": mode, "price": fill.avg_price, "amount": fill.volume, "total": fill.gross, "fee": fill.fee,
        "created_at": fill.created_at})


@storage_errors()
def correct(conn: psycopg.Connection[Any], client_order_id: str, fill: Fill) -> None:
    """Make a completed row equal to the exchange's account of the order."""
    conn.execute(queries("trades")["correct"], {
        "client_order_id": client_order_id, "trade_id": fill.uuid, "price": fill.avg_price, "amount": fill.volume,
        "total": fill.gross, "fee": fill.fee})


@storage_errors()
def last_order_since(conn: psycopg.Connection[Any], symbol: str, mode: str, since: datetime) -> datetime | None:
    """When the newest order of ``symbol``/``mode`` placed at or after ``since`` was recorded (failed orders,
    which never reached the exchange, excepted); None when there is none."""
    row = conn.execute(queries("trades")["last_order_since"], {"symbol": symbol, "mode": mode, "since": since}).fetchone()
    return None if row is None else row[0]


@storage_errors()
def day_snapshots(conn: psycopg.Connection[Any], mode: str, symbols: list[str], since: datetime | None,
                  until: datetime | None) -> list[tuple[str, date, Decimal, Decimal, Decimal, Decimal | None]]:
    """The day snapshots of ``symbols``/``mode`` of the days from ``since``'s day (None: the first) and before
    ``until``'s day (None: the last), oldest first: (symbol, day, realized P&L, volume, cost basis, last fill
    price or None) — what :func:`tradebot.pnl.daily_marks` reads, which marks no day before ``since``'s. Kept
    by :func:`checkpointed`."""
    first_day = since.date() if since is not None else date.min  # the first day daily_marks marks, the same way
    until_day = until.astimezone(UTC).date() if until is not None else date.max
    rows = conn.execute(queries("trades")["day_snapshots"],
                        {"mode": mode, "symbols": symbols, "first_day": first_day, "until_day": until_day}).fetchall()
    return [(str(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]


@storage_errors()
def day_totals(conn: psycopg.Connection[Any], symbol: str, mode: str, first_day: date,
               end_day: date) -> list[tuple[Any, ...]]:
    """The finished days of ``symbol``/``mode`` with ``first_day <= day < end_day``, oldest first: (day as
    ``YYYY-MM-DD``, realized P&L, fees, buys, sells, bought volume, sold volume). Kept by
    :func:`checkpointed`; the day the checkpoint is still in is not among them."""
    return conn.execute(queries("trades")["pnl_days_between"],
                        {"symbol": symbol, "mode": mode, "first_day": first_day, "end_day": end_day}).fetchall()
