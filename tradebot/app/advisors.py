"""The advisor scorecard's commands (issue 13): ``advisors score`` and the scoring ``run-cycle`` does after its
own work. What a score is: :mod:`tradebot.scorecard.score`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.app.parts import database_url, market_data
from tradebot.errors import ExchangeError, StorageError
from tradebot.models import Market
from tradebot.scorecard.score import HORIZONS_H

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.cycle import Notifier
    from tradebot.pnl import PnlReport
    from tradebot.scorecard.report import Scorecard
    from tradebot.store.db import Connection

log = logging.getLogger(__name__)
SCORE_BATCH = 50_000  # (decision, horizon) pairs a scoring pass holds at once
CHECKPOINT_FORMAT = 1  # of the report's checkpoint file
CHECKPOINT_DAYS = 30  # a checkpoint file no report has rewritten for this long is removed


@dataclass(frozen=True)
class ScoreRun:
    """What a scoring pass did: scores written, (decision, horizon) pairs still waiting, notes."""

    scored: int
    waiting: int
    notes: list[str] = field(default_factory=list)


def score_pending(conn: Connection, *, since: datetime | None = None, markets: Sequence[str] | None = None) -> int:
    """Score every decision (at or after ``since``, of ``markets``; None: all) whose horizons have passed and
    whose horizon prices are in the candle cache; returns how many scores were written (a rescore writes
    none)."""
    from tradebot.scorecard.score import Scorable, score
    from tradebot.store.scores import save_scores, scorable
    from tradebot.upbit_rules import MIN_ORDER_KRW

    written, after = 0, 0
    while True:  # in batches: a long history (a first `advisors score` after upgrading) is never held at once
        rows = scorable(conn, HORIZONS_H, min_order=MIN_ORDER_KRW, since=since, markets=markets, limit=SCORE_BATCH,
                        after=after)
        scores = score([Scorable(int(r[0]), int(r[1]), str(r[2]), r[3], r[4], bool(r[5])) for r in rows])
        written += save_scores(conn, [(s.decision_id, s.horizon_h, s.price, s.forward_return, s.hit) for s in scores])
        if len(rows) < SCORE_BATCH:
            return written
        after = int(rows[-1][0])  # that decision again: the batch may have ended between its horizons


def score_after_cycle(conn: Connection, settings: Settings, now: datetime) -> None:
    """``run-cycle``'s scoring, after its orders: the decisions of its markets within the candle window the
    cycle has just brought up to date (older ones were scored by earlier runs, or wait for ``advisors score``).
    Best effort: a failure is logged, the run's outcome stands."""
    since = now - timedelta(hours=settings.hourly_candles + max(HORIZONS_H))
    try:
        score_pending(conn, since=since, markets=[str(m) for m in settings.markets])
    except StorageError as e:
        log.warning("decisions not scored this run (%s); `tradebot advisors score` will", e.reason)


def score_decisions(settings: Settings, *, refresh: bool = True) -> ScoreRun:
    """``tradebot advisors score``: bring each configured market's hourly candles up to date (one request per
    market, as a cycle does; ``refresh=False`` or an unreachable exchange: the cache as it is), then score every
    decision that has become scorable."""
    from tradebot.cycle import clean_candles
    from tradebot.market.candle_cache import recent_candles
    from tradebot.store.db import open_checked
    from tradebot.store.scores import waiting

    notes: list[str] = []
    with open_checked(database_url(settings)) as conn:
        conn.autocommit = True
        if refresh:
            exchange = market_data(settings)
            now = datetime.now(UTC)
            for m in settings.markets:
                try:
                    recent_candles(conn, exchange, m, "minute60", settings.hourly_candles, now, clean_candles)
                except ExchangeError as e:
                    notes.append(f"{m}: candles not refreshed ({e}); scored from the cached candles")
        scored = score_pending(conn)
        return ScoreRun(scored, waiting(conn, HORIZONS_H), notes)


def advisors_report(settings: Settings, *, mode: str | None, since: datetime | None, until: datetime | None,
                    market: str | None) -> Scorecard:
    """``tradebot advisors report``: the scorecard of the decisions of ``mode`` (default: the configured one)
    in ``[since, until)`` (whole UTC days: :func:`whole_days`) of ``market`` (None: every market with decisions), from the database alone (the
    scores and candles already stored; ``advisors score`` brings them up to date)."""
    from tradebot.infra.background import in_background
    from tradebot.risk import RiskLimits
    from tradebot.scorecard.report import build
    from tradebot.store.candles import packed_candles
    from tradebot.store.db import connect, open_checked
    from tradebot.store.scores import report_rows, report_trades, with_trades

    md = mode or settings.mode
    since, until = whole_days(since, until)
    end = until or datetime.now(UTC) + timedelta(hours=1)
    url = database_url(settings)
    markets = [market] if market else None

    def read_trades() -> dict[tuple[str, str, str, bool], Any]:
        with connect(url) as other:
            return report_trades(other, md, since, until, markets)

    with open_checked(url) as conn:
        # The longest read (a scan of the decisions) runs on a second connection while this one reads the day
        # totals and the candles: the database server works on both at once.
        trades = in_background(read_trades, "tradebot-report-trades")
        raw = report_rows(conn, md, since, until, markets, trades=False)
        candles, real = {}, {}
        for m, (first, _) in raw.spans.items():
            candles[m], last_close = packed_candles(conn, Market(m), "minute60", first - timedelta(hours=1), end)
            if last_close is not None and (pnl := _real_pnl(conn, m, md, first, until, last_close)) is not None:
                real[m] = pnl
        raw = with_trades(raw, trades())
    path = _checkpoint_file(settings, md, since, until, market)
    checkpoints = _read_checkpoints(path)
    before = dict(checkpoints)
    card = build(raw, candles, mode=md, since=since, until=until, limits=RiskLimits.from_settings(settings),
                 usd_krw=settings.usd_krw, real_pnl=real, market=market, checkpoints=checkpoints)
    if checkpoints != before:
        _write_checkpoints(path, checkpoints)
    elif checkpoints:  # a report run again the same day leaves the file as it is, marked as still in use
        with contextlib.suppress(OSError):
            os.utime(path)
    return card


def _checkpoint_file(settings: Settings, mode: str, since: datetime | None, until: datetime | None,
                     market: str | None) -> Path:
    """Where the report of this window keeps its ledgers' checkpoints (:mod:`tradebot.backtest.replay`): one
    file per mode, window and market filter, in the state directory."""
    import hashlib

    window = hashlib.sha256(repr((since, until, market)).encode()).hexdigest()[:16]
    return settings.state_dir / "report-ledgers" / f"{mode}-{window}.json"


def _read_checkpoints(path: Path) -> dict[str, Any]:
    """The checkpoints an earlier report left (none when there is no such file or it cannot be read: the
    report is then only slower; every checkpoint is checked against the data before it is used)."""
    import json

    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    ledgers = data.get("ledgers") if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT else None
    return ledgers if isinstance(ledgers, dict) else {}


def _write_checkpoints(path: Path, checkpoints: dict[str, Any]) -> None:
    """Replace the file atomically (a report running at the same time reads the old one or the new one).
    Best effort: the report stands without it."""
    import json
    import tempfile
    import time

    from tradebot.infra.fsutil import make_private_dirs, write_all

    why = "the report's ledger checkpoints were not saved (%s); the next report replays the ledgers from the start"
    try:
        make_private_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    except OSError as e:
        log.warning(why, e)
        return
    try:
        try:
            write_all(fd, json.dumps({"format": CHECKPOINT_FORMAT, "ledgers": checkpoints}).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        log.warning(why, e)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    # A window reported once (a --since that moves every day) leaves a file nobody reads again.
    stale = time.time() - CHECKPOINT_DAYS * 86400
    for old in path.parent.glob("*.json"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < stale:
                old.unlink()


def whole_days(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """The report's window in whole UTC days (it reads day totals): ``since`` back to its 00:00 UTC, ``until``
    on to the next 00:00 UTC unless it is one."""
    def midnight(t: datetime) -> datetime:
        return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    start = midnight(since) if since is not None else None
    end = None
    if until is not None:
        end = midnight(until)
        if end != until.astimezone(UTC):
            end += timedelta(days=1)
    return start, end


def _real_pnl(conn: Connection, market: str, mode: str, start: datetime, until: datetime | None,
              price: Decimal) -> Decimal | None:
    """The bot's recorded P&L from ``start`` (realized in the window + the position's unrealized P&L at
    ``price``), as ``tradebot pnl --since`` counts it."""
    report = window_pnl(conn, market, mode, start, until, price)
    return None if report is None else report.total_pnl


def window_pnl(conn: Connection, market: str, mode: str, start: datetime, until: datetime | None,
               price: Decimal) -> PnlReport | None:
    """``tradebot pnl --since start --until until`` of one market and mode at ``price`` (None: no trade before
    ``until``), replaying from the day snapshot at or before ``start``."""
    from tradebot import pnl
    from tradebot.store.trades import completed_between, ledger_at

    found = ledger_at(conn, market, mode, start)
    day_start, snap = found if found else (None, None)
    entries = completed_between(conn, market, mode, day_start, until)
    if not entries and snap is None:
        return None
    return pnl.report(market, mode, entries, price=price, price_source="candles", since=start, until=until,
                      detail=False, start=pnl.Ledger.from_json(snap) if snap else None)


def budget_alert(conn: Connection, notifier: Notifier, advisors: Sequence[object], now: datetime) -> None:
    """One Telegram alert per UTC day when the model budget made the rules decide in this run (the first run
    of the day to fall back claims the day; a failed send gives the claim back). Never fails the run."""
    from html import escape

    from tradebot.errors import NotifierError
    from tradebot.store.state import claim_day, unclaim_day

    reasons = [r for a in advisors for r in getattr(a, "fell_back", [])]
    if not reasons:
        return
    day = now.astimezone(UTC).date().isoformat()
    try:
        if not claim_day(conn, "llm_budget_alert", day):
            return
        try:
            notifier.send(f"⚠️ <b>tradebot</b>: {escape(reasons[0], quote=False)}. The rules advisor decides instead until the "
                          "budget allows the model again (TRADEBOT_LLM_DAILY_BUDGET_USD / TRADEBOT_LLM_MONTHLY_BUDGET_USD).")
        except NotifierError as e:
            log.warning("budget alert not sent (%s); the next run tries again", e)
            unclaim_day(conn, "llm_budget_alert", day)
    except StorageError as e:
        log.warning("budget alert not sent (%s)", e.reason)
