"""Reconciliation: make the ``trades`` table equal to the exchange's record of our orders.

Run at the start of every cycle (pending rows only) and by ``tradebot reconcile`` (everything):

1. every ``pending`` row is resolved from the exchange by its client order id (filled → ``completed``;
   final with nothing filled → ``cancelled``; unknown to the exchange → ``failed``, unless the exchange gave
   the row a uuid: live → left pending, paper → ``unknown``, needs attention, because a paper fill lost with
   the database and the journal cannot be found anywhere; still open → left);
2. every *filled* order of ours (identifier starting with ``tb-``) on the exchange for the market in the
   look-back window (default 7 days, Upbit's limit per request) that has no row is inserted, marked
   ``recovered``, with its real fill;
3. every row whose status or numbers differ from the exchange's filled order is corrected, and reported
   with the old and new figures.

Running it twice changes nothing the second time. With ``dry_run`` nothing is written.
Orders whose identifier does not start with ``tb-`` were placed by someone else and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradebot.errors import OrderNotFoundError
from tradebot.exchange.base import Exchange
from tradebot.models import Fill, Market, Trade, plain

if TYPE_CHECKING:
    from tradebot.store.db import Connection

OUR_PREFIX = "tb-"
PAPER_FILL_LOST = ("paper order {uuid} was accepted but its fill was never recorded (the run lost it with the "
                   "database and the journal, or died before writing it); paper fills exist only in the process "
                   "that made them, so tradebot cannot recover it: check that run's alert for the fill's "
                   "details and record it by hand if you need it")


@dataclass(frozen=True)
class Change:
    kind: str  # completed | cancelled | failed | unknown | left_pending | recovered | corrected | journal | quarantined
    client_order_id: str
    detail: str


@dataclass
class ReconcileReport:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    checked_pending: int = 0
    checked_exchange: int = 0

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.kind not in ("left_pending", "quarantined")]

    @property
    def attention(self) -> list[Change]:
        """What the owner must look at: a damaged journal line, a paper fill that was made but lost."""
        return [c for c in self.changes if c.kind in ("quarantined", "unknown")]


def _fill_text(f: Fill) -> str:
    return f"{f.side} {plain(f.volume)} @ {plain(f.avg_price, 2)} = {plain(f.gross)} KRW, fee {plain(f.fee)} ({f.uuid})"


def resolve_pending(conn: Connection, exchange: Exchange, market: Market, mode: str,
                    *, dry_run: bool = False) -> ReconcileReport:
    """Step 1 only (what every cycle does first)."""
    from tradebot.store.trades import apply_fill, mark_failed, mark_unknown, pending_trades

    report = ReconcileReport(dry_run=dry_run)
    for t in pending_trades(conn, market, mode):
        report.checked_pending += 1
        try:
            fill = exchange.get_order(client_order_id=t.client_order_id)
        except OrderNotFoundError:
            if t.trade_id and mode == "paper":
                # The paper broker accepted the order (its uuid is on the row) but no fill was recorded:
                # a fill may have been made and lost with the database and the journal. Not "never placed".
                if not dry_run:
                    mark_unknown(conn, t.client_order_id, PAPER_FILL_LOST.format(uuid=t.trade_id))
                report.changes.append(Change("unknown", t.client_order_id,
                                             "needs attention: " + PAPER_FILL_LOST.format(uuid=t.trade_id)))
                continue
            if t.trade_id:  # the exchange gave us a uuid once: never declare it lost on a lookup miss
                report.changes.append(Change("left_pending", t.client_order_id, f"order {t.trade_id} not found by identifier"))
                continue
            if not dry_run:
                mark_failed(conn, t.client_order_id, "the order never reached the exchange (not found by identifier)")
            report.changes.append(Change("failed", t.client_order_id, "never placed (not found by identifier)"))
            continue
        if fill.filled:
            kind = "completed"
        elif fill.resolved and fill.state.final:
            kind = "cancelled"
        else:
            kind = "left_pending"
        if not dry_run:
            kind = apply_fill(conn, t.client_order_id, fill)
            kind = "left_pending" if kind == "pending" else kind
        report.changes.append(Change(kind, t.client_order_id, _fill_text(fill) if fill.filled else f"order {fill.uuid or '?'} {fill.state.value}"))
    return report


def _differs(t: Trade, f: Fill) -> list[str]:
    diffs = []
    for name, have, want in (("status", t.status, "completed"), ("trade_id", t.trade_id, f.uuid),
                             ("price", t.price, f.avg_price), ("amount", t.amount, f.volume),
                             ("total", t.total, f.gross), ("fee", t.fee, f.fee)):
        if have != want:
            diffs.append(f"{name} {have if not isinstance(have, Decimal) else plain(have)} → "
                         f"{want if not isinstance(want, Decimal) else plain(want)}")
    return diffs


def reconcile(conn: Connection, exchange: Exchange, market: Market, mode: str, since: datetime,
              *, dry_run: bool = False) -> ReconcileReport:
    """All three steps for ``market``/``mode`` over orders created since ``since``."""
    from tradebot.store.trades import correct, insert_recovered, trades_by_client_order_ids

    report = resolve_pending(conn, exchange, market, mode, dry_run=dry_run)
    ours = [f for f in exchange.closed_orders(market, since)
            if f.client_order_id and f.client_order_id.startswith(OUR_PREFIX) and f.filled]
    report.checked_exchange = len(ours)
    if not ours:
        return report
    ids = [f.client_order_id for f in ours if f.client_order_id]
    known = {t.client_order_id: t for t in trades_by_client_order_ids(conn, ids)}
    # Rows step 1 just resolved: already equal to the exchange (or, in a dry run, reported once already —
    # their unwritten pending state must not be reported a second time as a correction).
    resolved = {c.client_order_id for c in report.changes if c.kind != "left_pending"}
    for f in ours:
        cid = f.client_order_id
        assert cid is not None
        if cid in resolved:
            continue
        t = known.get(cid)
        if t is None:
            if not dry_run:
                insert_recovered(conn, cid, f, mode)
            report.changes.append(Change("recovered", cid, _fill_text(f)))
        elif t.mode != mode:
            continue
        elif diffs := _differs(t, f):
            if not dry_run:
                correct(conn, cid, f)
            report.changes.append(Change("corrected", cid, "; ".join(diffs)))
    return report
