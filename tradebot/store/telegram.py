"""Telegram control's rows (SQL in ``sql/queries/telegram.sql``): handled updates, emergency exits, the reply
outbox. An update is claimed in the same transaction as its command's effect and replies, so it is handled
exactly once however the poller dies or races another."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.models import Market
from tradebot.store.db import queries, storage_errors
from tradebot.store.state import jsonb

if TYPE_CHECKING:
    import psycopg

MAX_SEND_ATTEMPTS = 5  # a reply Telegram keeps refusing (5xx, network) is given up after this many tries


@dataclass(frozen=True)
class Handled:
    """How one update ended (one ``telegram_updates`` row)."""

    update_id: int
    kind: str
    outcome: str  # done | ignored | expired | refused
    command: str | None = None
    chat_id: int | None = None
    user_id: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """A Bot API call to make once the transaction that queued it has committed."""

    method: str  # sendMessage | editMessageText | answerCallbackQuery
    payload: dict[str, Any]
    exit_id: str | None = None  # a keyboard asking to confirm this exit: its message_id is kept


@dataclass(frozen=True)
class ExitRequest:
    """One ``telegram_exits`` row."""

    id: str
    chat_id: int
    asked_by: int
    markets: tuple[Market, ...]
    mode: str
    asked_at: datetime
    message_id: int | None
    state: str
    decided_by: int | None
    decided_at: datetime | None
    result: str | None


@dataclass(frozen=True)
class LatestDecision:
    created_at: datetime
    market: str
    advisor: str
    decision: str
    confidence: Decimal | None
    action: str
    reason: str
    error: str | None


def _exit(row: Any) -> ExitRequest:
    return ExitRequest(str(row[0]), int(row[1]), int(row[2]), tuple(Market(m) for m in row[3]), row[4], row[5],
                       row[6], row[7], row[8], row[9], row[10])


@storage_errors()
def next_offset(conn: psycopg.Connection[Any], bot_id: int) -> tuple[int | None, datetime | None]:
    """(one past the last handled update_id, when that update arrived); (None, None) before the first."""
    row = conn.execute(queries("telegram")["next_offset"], {"bot_id": bot_id}).fetchone()
    return (int(row[0]), row[1]) if row and row[0] is not None else (None, None)


@storage_errors()
def handle_once(conn: psycopg.Connection[Any], bot_id: int, handled: Handled, replies: list[Outgoing],
                effect: Any = None) -> bool:
    """In one transaction: claim the update, run ``effect(conn)`` (the command's change of state, if any; a
    list it returns replaces ``replies``) and queue ``replies``. False — and nothing done — when the update
    was handled before."""
    q = queries("telegram")
    with conn.transaction():
        claimed = conn.execute(q["claim_update"], {
            "bot_id": bot_id, "update_id": handled.update_id, "kind": handled.kind, "command": handled.command,
            "chat_id": handled.chat_id, "user_id": handled.user_id, "outcome": handled.outcome,
            "reason": handled.reason}).fetchone()
        if claimed is None:
            return False
        if effect is not None:
            instead = effect(conn)
            if isinstance(instead, list):
                replies = instead
        for out in replies:
            conn.execute(q["queue"], {"bot_id": bot_id, "method": out.method, "payload": jsonb(out.payload),
                                      "exit_id": out.exit_id})
    return True


@storage_errors()
def queue(conn: psycopg.Connection[Any], bot_id: int, replies: list[Outgoing]) -> None:
    """Queue replies outside an update (an exit's outcome, told after its orders)."""
    with conn.transaction():
        for out in replies:
            conn.execute(queries("telegram")["queue"], {"bot_id": bot_id, "method": out.method,
                                                        "payload": jsonb(out.payload), "exit_id": out.exit_id})


@storage_errors()
def unsent(conn: psycopg.Connection[Any], bot_id: int) -> list[tuple[int, Outgoing]]:
    rows = conn.execute(queries("telegram")["unsent"], {"bot_id": bot_id, "max_attempts": MAX_SEND_ATTEMPTS}).fetchall()
    return [(int(r[0]), Outgoing(r[1], r[2], r[3])) for r in rows]


@storage_errors()
def mark_sent(conn: psycopg.Connection[Any], outbox_id: int, exit_id: str | None, message_id: int | None,
              error: str | None = None) -> None:
    """The reply was delivered (or refused for good with ``error``, e.g. a callback answered too late)."""
    q = queries("telegram")
    with conn.transaction():
        conn.execute(q["sent"], {"id": outbox_id, "error": error})
        if exit_id is not None and message_id is not None:
            conn.execute(q["exit_message"], {"id": exit_id, "message_id": message_id})


@storage_errors()
def mark_send_failed(conn: psycopg.Connection[Any], outbox_id: int, error: str, *, final: bool = False) -> None:
    """A delivery failed: tried again on the next poll, until ``MAX_SEND_ATTEMPTS`` (``final``: at once)."""
    conn.execute(queries("telegram")["send_failed"], {"id": outbox_id, "error": error,
                                                      "add": MAX_SEND_ATTEMPTS if final else 1})


@storage_errors()
def ask_exit(conn: psycopg.Connection[Any], bot_id: int, exit_id: str, chat_id: int, asked_by: int,
             markets: tuple[Market, ...], mode: str, asked_at: datetime) -> None:
    """Record an exit waiting for its Confirm (call inside :func:`handle_once`'s effect)."""
    conn.execute(queries("telegram")["ask_exit"], {"id": exit_id, "bot_id": bot_id, "chat_id": chat_id,
                                                   "asked_by": asked_by, "markets": [str(m) for m in markets],
                                                   "mode": mode, "asked_at": asked_at})


@storage_errors()
def get_exit(conn: psycopg.Connection[Any], bot_id: int, exit_id: str) -> ExitRequest | None:
    row = conn.execute(queries("telegram")["get_exit"], {"id": exit_id, "bot_id": bot_id}).fetchone()
    return _exit(row) if row else None


@storage_errors()
def decide_exit(conn: psycopg.Connection[Any], exit_id: str, from_state: str, state: str, *, by: int | None = None,
                at: datetime | None = None, result: str | None = None) -> bool:
    """Move an exit from ``from_state`` to ``state``; False when it was not in ``from_state`` (a double tap,
    another poller first)."""
    row = conn.execute(queries("telegram")["decide_exit"], {"id": exit_id, "from_state": from_state, "state": state,
                                                            "by": by, "at": at, "result": result}).fetchone()
    return row is not None


@storage_errors()
def open_exits(conn: psycopg.Connection[Any], bot_id: int) -> list[ExitRequest]:
    return [_exit(r) for r in conn.execute(queries("telegram")["open_exits"], {"bot_id": bot_id}).fetchall()]


@storage_errors()
def exit_orders(conn: psycopg.Connection[Any], exit_id: str) -> dict[str, str]:
    """Market → status of the order an exit already placed there."""
    return {str(r[0]): str(r[1]) for r in conn.execute(queries("telegram")["exit_orders"], {"cycle_id": exit_id})}


@storage_errors()
def latest_decisions(conn: psycopg.Connection[Any], mode: str, markets: tuple[Market, ...], limit: int) -> list[LatestDecision]:
    rows = conn.execute(queries("telegram")["latest_decisions"],
                        {"mode": mode, "tickers": [str(m) for m in markets], "limit": limit}).fetchall()
    return [LatestDecision(*r) for r in rows]
