"""Reading scorable decisions and writing their scores (SQL text in ``sql/queries/scores.sql``; what a score
is: :mod:`tradebot.scorecard.score`)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.store.db import float8s, queries, storage_errors

if TYPE_CHECKING:
    import psycopg


@storage_errors()
def scorable(conn: psycopg.Connection[Any], horizons: Sequence[int], *, min_order: Decimal,
             since: datetime | None = None, markets: Sequence[str] | None = None,
             limit: int = 50_000, after: int = 0) -> list[tuple[Any, ...]]:
    """(decision id, horizon, decision, reference price, price at the horizon, flat) of at most ``limit``
    decisions and horizons not scored yet whose horizon price is in the candle cache, by decision id from
    ``after`` on."""
    return conn.execute(queries("scores")["scorable"], {
        "horizons": list(horizons), "min_order": min_order, "since": since, "limit": limit, "after": after,
        "markets": list(markets) if markets is not None else None}).fetchall()


@storage_errors()
def waiting(conn: psycopg.Connection[Any], horizons: Sequence[int], markets: Sequence[str] | None = None) -> int:
    """How many (decision, horizon) pairs are still to be scored."""
    row = conn.execute(queries("scores")["waiting"], {
        "horizons": list(horizons), "markets": list(markets) if markets is not None else None}).fetchone()
    return int(row[0]) if row else 0


@storage_errors()
def save_scores(conn: psycopg.Connection[Any], rows: Sequence[tuple[int, int, Decimal, Decimal, bool]]) -> int:
    """Write (decision id, horizon, price, forward return, hit) rows, once each: loaded with COPY into a
    temporary table and merged in one statement; returns how many were new.

    ``decision_scores`` has no foreign key to ``decisions``: its per-row check doubled the time of writing a
    pass (10,000 decisions: 0.38 s of 0.52 s), every score is made from a decision read in the same pass, and
    the bot never deletes decisions (a score left by a decision deleted by hand is never read: every reader
    joins ``decisions``).
    """
    if not rows:
        return 0
    q = queries("scores")
    with conn.transaction():
        conn.execute(q["new_scores"])
        with conn.cursor().copy(q["copy_scores"]) as copy:
            for r in rows:
                copy.write_row(r)
        return conn.execute(q["save"]).rowcount


@dataclass(frozen=True)
class ReportRows:
    """The raw material of ``tradebot advisors report`` (see the ``report_*`` statements)."""

    days: list[tuple[Any, ...]]
    spans: dict[str, tuple[datetime, datetime]]
    # (market, advisor, role, reflection) → its buys and sells, five floats each: unix time, id, +1 buy / -1 sell,
    # confidence, fraction; in no particular order
    trades: dict[tuple[str, str, str, bool], array[float]]
    starts: dict[str, Decimal]


@storage_errors()
def report_rows(conn: psycopg.Connection[Any], mode: str, since: datetime | None, until: datetime | None,
                markets: Sequence[str] | None, *, trades: bool = True) -> ReportRows:
    """The day totals of whole UTC days (``since``/``until`` at 00:00 UTC), each market's first and last
    decision, the buy/sell decisions and each market's starting equity. Without ``trades`` the buy/sell
    decisions are left for :func:`with_trades` to add (read elsewhere with :func:`report_trades`)."""
    q = queries("scores")
    params: dict[str, Any] = {"mode": mode, "since": since, "until": until,
                              "markets": list(markets) if markets is not None else None}
    days = conn.execute(q["report_days"], params).fetchall()
    params["markets"] = sorted({str(r[0]) for r in days})
    spans = {str(r[0]): (r[1], r[2]) for r in conn.execute(q["report_span"], params).fetchall() if r[1] is not None}
    starts = {str(r[0]): r[1] for r in conn.execute(q["report_start"], params).fetchall() if r[1] is not None}
    raw = ReportRows(days, spans, {}, starts)
    return with_trades(raw, report_trades(conn, mode, since, until, markets)) if trades else raw


def with_trades(raw: ReportRows, found: dict[tuple[str, str, str, bool], array[float]]) -> ReportRows:
    """``raw`` with the buy/sell decisions of :func:`report_trades` of its markets (those with day totals)."""
    markets = {str(r[0]) for r in raw.days}
    return replace(raw, trades={k: v for k, v in found.items() if k[0] in markets})


@storage_errors()
def report_trades(conn: psycopg.Connection[Any], mode: str, since: datetime | None, until: datetime | None,
                  markets: Sequence[str] | None) -> dict[tuple[str, str, str, bool], array[float]]:
    """The buy and sell decisions of whole UTC days of ``markets`` (None: all) per (market, advisor, role,
    reflection): (time, id, ±1, confidence, fraction) rows of float8 in no order. The markets with some are
    among those :func:`report_rows` finds day totals for (the day totals are kept with the decisions)."""
    params = {"mode": mode, "since": since, "until": until, "markets": list(markets) if markets is not None else None}
    return {(str(r[0]), str(r[1]), str(r[2]), bool(r[3])): float8s(r[4])
            for r in conn.cursor(binary=True).execute(queries("scores")["report_trades"], params).fetchall()}
