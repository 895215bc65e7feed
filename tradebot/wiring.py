"""Building the real parts from settings, and the one core call behind each command that trades.

Kept apart from :mod:`tradebot.cycle` so that the cycle stays a plain function over injected parts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tradebot.errors import LockedError, StorageError, TradebotError

if TYPE_CHECKING:
    import psycopg

    from tradebot.advisor import Advisor
    from tradebot.config import Settings
    from tradebot.cycle import CycleReport, Notifier
    from tradebot.exchange.base import Exchange

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """The configured DATABASE_URL, or the embedded server's (created and started when needed)."""
    if settings.database_url:
        return settings.database_url
    from tradebot.localpg import LocalPostgres

    return LocalPostgres(settings.state_dir / "postgres").start()


def market_data(settings: Settings) -> Any:
    """The Upbit REST adapter at ``UPBIT_API_URL`` (keys optional: public endpoints need none)."""
    from tradebot.exchange.upbit import UpbitExchange

    access = settings.upbit_access_key.reveal() if settings.upbit_access_key else ""
    secret = settings.upbit_secret_key.reveal() if settings.upbit_secret_key else ""
    return UpbitExchange(access, secret, settings.upbit_api_url, poll_timeout_s=float(settings.order_poll_timeout_s))


def make_exchange(settings: Settings, conn: psycopg.Connection[Any]) -> Exchange:
    """Live: the Upbit adapter (keys required). Paper: the paper broker over real market data."""
    if settings.mode == "live":
        settings.require("upbit_access_key", "upbit_secret_key")
        return market_data(settings)  # type: ignore[no-any-return]
    from tradebot.exchange.paper import PaperExchange

    return PaperExchange(market_data(settings), conn, settings.paper_krw)


def make_advisor(settings: Settings) -> Advisor:
    if settings.advisor == "rules":
        from tradebot.advisor.rules import RulesAdvisor

        return RulesAdvisor()
    settings.require("anthropic_api_key")
    from tradebot.advisor.claude import ClaudeAdvisor

    assert settings.anthropic_api_key is not None
    return ClaudeAdvisor(settings.anthropic_api_key.reveal(), settings.model, base_url=settings.anthropic_base_url,
                         timeout_s=float(settings.llm_timeout_s), max_retries=settings.llm_max_retries)


def make_notifier(settings: Settings) -> Notifier:
    from tradebot.notify import NullNotifier, TelegramNotifier

    if settings.telegram_bot_token and settings.telegram_chat_id:
        return TelegramNotifier(settings.telegram_bot_token.reveal(), settings.telegram_chat_id, settings.telegram_api_url)
    return NullNotifier()


@contextmanager
def cycle_connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection (every write durable before the next step) holding the cycle lock."""
    from tradebot.store.db import check_schema, connect
    from tradebot.store.state import try_cycle_lock

    conn = connect(database_url(settings), autocommit=True)
    try:
        check_schema(conn)
        if not try_cycle_lock(conn, settings.market, settings.mode):
            raise LockedError(f"another cycle for {settings.market} ({settings.mode}) is running; nothing done")
        yield conn
    finally:
        conn.close()


def run_cycle_once(settings: Settings, *, dry_run: bool = False) -> CycleReport:
    """Everything ``tradebot run-cycle`` does: lock, cycle, metrics. Raises LockedError (exit 75).

    A database that cannot be reached at the start means no order at all: the failure is reported (and
    alerted) like any failed step.
    """
    from tradebot.cycle import CycleParts, CycleReport, StepLine, notify, run_cycle

    notifier = make_notifier(settings)
    started = time.perf_counter()
    try:
        with cycle_connection(settings) as conn:
            parts = CycleParts(settings=settings, conn=conn, exchange=make_exchange(settings, conn),
                               make_advisor=lambda: make_advisor(settings), notifier=notifier)
            report = run_cycle(parts, dry_run=dry_run)
            write_run_metrics(settings, report, conn)
            return report
    except LockedError:
        raise
    except TradebotError as e:
        if e.exit_code != 1:
            raise  # configuration problems: exit 2, no alert storm every hour
        report = CycleReport(market=settings.market, mode=settings.mode, dry_run=dry_run, started_at=datetime.now(UTC))
        report.outcome, report.failed_step, report.error = "failed", "database", str(e)
        report.steps.append(StepLine("database", False, str(e)))
        report.duration_s = time.perf_counter() - started
        notify(CycleParts(settings=settings, conn=None, exchange=None, make_advisor=lambda: make_advisor(settings),  # type: ignore[arg-type]
                          notifier=notifier), report)
        write_run_metrics(settings, report, None)
        return report


def rewrite_metrics(settings: Settings) -> list[Any]:
    """``tradebot metrics``: rewrite tradebot.prom from the database and the last recorded run."""
    from tradebot.errors import ConfigError
    from tradebot.metrics import write_metrics
    from tradebot.store.totals import read_totals
    from tradebot.store.db import open_checked
    from tradebot.store.state import load_last_run

    if settings.metrics_dir is None:
        raise ConfigError("TRADEBOT_METRICS_DIR", "is not set; set it to node_exporter's textfile directory")
    with open_checked(database_url(settings)) as conn:
        run = load_last_run(conn, settings.market, settings.mode)
        totals = read_totals(conn)
    try:
        return write_metrics(settings.metrics_dir, run, totals)
    except OSError as e:
        raise TradebotError(f"cannot write metrics to {settings.metrics_dir}: {e.strerror or type(e).__name__}") from None


def write_run_metrics(settings: Settings, report: CycleReport, conn: psycopg.Connection[Any] | None) -> None:
    """Write the textfile metrics for this run; a failure is a step line, never a crash."""
    from tradebot.cycle import StepLine
    from tradebot.metrics import write_metrics
    from tradebot.models import RunInfo
    from tradebot.store.totals import read_totals

    if settings.metrics_dir is None:
        return
    p = report.position
    loss = None
    if conn is not None:
        try:
            from tradebot.pnl import realized_loss_since
            from tradebot.store.trades import ledger_entries

            day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            loss = realized_loss_since(ledger_entries(conn, settings.market, settings.mode), day)
        except StorageError:  # the database may be the reason this run failed
            loss = None
    run = RunInfo(market=settings.market, mode=settings.mode, finished_at=time.time(), success=report.exit_code == 0,
                  duration_s=report.duration_s, position_volume=p.coin_volume if p else None,
                  equity_krw=p.equity if p else None, price_krw=p.price if p else None,
                  daily_realized_loss_krw=loss, daily_loss_limit_krw=settings.daily_loss_limit_krw)
    totals = None
    if conn is not None:
        try:
            from tradebot.store.state import save_last_run

            save_last_run(conn, run)
            totals = read_totals(conn)
        except StorageError as e:  # the database may be why this run failed: still write the file
            totals = None
            report.steps.append(StepLine("metrics", False, f"totals not updated: database error ({e.reason})"))
    try:
        write_metrics(settings.metrics_dir, run, totals)
    except OSError as e:
        report.steps.append(StepLine("metrics", False, f"cannot write metrics to {settings.metrics_dir}: {e.strerror or type(e).__name__}"))
    except Exception as e:  # noqa: BLE001 — metrics never stop trading
        report.steps.append(StepLine("metrics", False, f"metrics failed: {type(e).__name__}"))


def set_pause(settings: Settings, paused: bool, reason: str) -> None:
    from tradebot.store.db import open_checked
    from tradebot.store.state import set_paused

    with open_checked(database_url(settings)) as conn:
        set_paused(conn, paused, reason)


def reset_paper(settings: Settings, krw: Any) -> None:
    from tradebot.exchange.paper import PaperExchange
    from tradebot.store.db import open_checked

    with open_checked(database_url(settings)) as conn:
        PaperExchange(None, conn, settings.paper_krw).reset(krw)  # type: ignore[arg-type]


def paper_balances(settings: Settings) -> list[Any]:
    from tradebot.exchange.paper import PaperExchange
    from tradebot.store.db import open_checked

    with open_checked(database_url(settings)) as conn:
        return PaperExchange(None, conn, settings.paper_krw).balances()  # type: ignore[arg-type]


def reconcile_now(settings: Settings, *, days: int, dry_run: bool) -> Any:
    """``tradebot reconcile``: journal replay (unless dry run) and full reconciliation under the cycle lock."""
    from datetime import timedelta

    from tradebot import journal
    from tradebot.reconcile import Change, reconcile

    with cycle_connection(settings) as conn:
        exchange = make_exchange(settings, conn)
        damaged: list[str] = []
        if dry_run:
            good, bad = journal.read(settings.state_dir)
            replayed = [f"{e['client_order_id']}: in the journal, would be replayed" for e in good]
            damaged = [f"journal line {d.line} could not be read; it would be moved to "
                       f"{settings.state_dir / journal.QUARANTINE}" for d in bad]
        else:
            try:
                replayed = journal.replay(settings.state_dir, conn, damaged=damaged)
            except OSError as e:
                raise TradebotError(f"the fill journal in {settings.state_dir} could not be replayed "
                                    f"({e.strerror or type(e).__name__}); it is kept unchanged — make "
                                    "TRADEBOT_STATE_DIR writable (free disk space) and run again") from None
        report = reconcile(conn, exchange, settings.market, settings.mode,
                           datetime.now(UTC) - timedelta(days=days), dry_run=dry_run)
        report.changes[:0] = [Change("journal", line.split(":")[0], line) for line in replayed]
        report.changes[:0] = [Change("quarantined", "journal", note) for note in damaged]
        return report


def pnl_reports(settings: Settings, *, symbol: str | None, mode: str | None, since: datetime | None,
                until: datetime | None, at: Any, by: str | None, detail: bool = False) -> tuple[list[Any], list[Any], list[str]]:
    """``tradebot pnl``: (reports, period rows, notes).

    The whole history with no period table and no per-sell detail is served from checkpoints (only trades
    newer than the last ``pnl`` are replayed); windows, periods and detail replay the ledger from the start.
    Prices: ``at`` if given, else the exchange's last price, else (exchange unreachable) the last fill
    price, said in a note.
    """
    from tradebot import pnl
    from tradebot.errors import ConfigError, ExchangeError
    from tradebot.store.db import open_checked
    from tradebot.store.trades import checkpointed, ledger_pairs, ledgers

    accs: dict[tuple[str, str], tuple[Any, Any]] = {}
    groups: dict[tuple[str, str], list[Any]] = {}
    with open_checked(database_url(settings)) as conn:
        if since is None and until is None and not by and not detail:
            for sym, md in ledger_pairs(conn, symbol, mode):
                accs[(sym, md)] = checkpointed(conn, sym, md, load=_load_accumulator, fold=pnl.Accumulator.apply,
                                               dump=pnl.Accumulator.to_json)
        else:
            groups = ledgers(conn, symbol=symbol, mode=mode, until=until)
            accs = {k: (None, v[-1].price) for k, v in groups.items()}
    if at is not None and len({s for s, _ in accs}) > 1:
        raise ConfigError("--at", "needs --symbol when trades of several markets are recorded")
    notes: list[str] = []
    prices: dict[str, tuple[Any, str]] = {}
    reports, rows = [], []
    for (sym, md), (acc, last_price) in sorted(accs.items()):
        if sym not in prices:
            if at is not None:
                prices[sym] = (at, "--at")
            else:
                try:
                    prices[sym] = (market_data(settings).ticker_price(sym), "exchange")
                except ExchangeError as e:
                    prices[sym] = (last_price, "last fill")
                    notes.append(f"{sym}: the exchange is unreachable ({e}); unrealized P&L uses the last fill price "
                                 f"(pass --at PRICE to choose)")
        price, source = prices[sym]
        if acc is not None:
            reports.append(acc.report(sym, md, price=price, price_source=source))
        else:
            entries = groups[(sym, md)]
            reports.append(pnl.report(sym, md, entries, price=price, price_source=source, since=since, until=until,
                                      detail=detail))
            if by:
                rows += pnl.periods(sym, md, entries, by, since=since, until=until)
    return reports, rows, notes


def _load_accumulator(state: dict[str, Any] | None) -> Any:
    from tradebot.pnl import Accumulator

    return Accumulator() if state is None else Accumulator.from_json(state)
