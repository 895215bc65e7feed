"""The commands that trade or change the bot's state: ``run-cycle``, ``reconcile``, ``metrics``, ``pause`` /
``resume``, ``paper reset`` / ``paper balance``. One function per command; the CLI calls these and nothing
deeper."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.app.parts import cycle_connection, database_url, make_advisor, make_exchange, make_notifier
from tradebot.errors import LockedError, StorageError, TradebotError
from tradebot.infra.faults import crashpoint

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.cycle import CycleReport, Notifier
    from tradebot.models import Market
    from tradebot.portfolio_cycle import PortfolioReport
    from tradebot.store.db import Connection


def run_cycle_once(settings: Settings, *, dry_run: bool = False) -> CycleReport | PortfolioReport:
    """Everything ``tradebot run-cycle`` does: lock, cycle (shadow decisions included), scoring, metrics.
    Raises LockedError (exit 75).

    One market runs the one-market cycle (:func:`tradebot.cycle.run_cycle`, exactly as before several
    markets existed); several run the portfolio cycle (:mod:`tradebot.portfolio_cycle`). A database that
    cannot be reached at the start means no order at all: the failure is reported (and alerted) like any
    failed step.
    """
    from tradebot.app.advisors import budget_alert, score_after_cycle
    from tradebot.app.digest import send_digest
    from tradebot.cycle import CycleParts, CycleReport, StepLine, notify, run_cycle

    notifier = make_notifier(settings)
    started = time.perf_counter()
    try:
        with cycle_connection(settings) as conn:
            made: list[Any] = []

            def advisor() -> Any:
                made.append(make_advisor(settings, conn))
                return made[-1]

            parts = CycleParts(settings=settings, conn=conn, exchange=make_exchange(settings, conn),
                               make_advisor=advisor, notifier=notifier, crashpoint=crashpoint,
                               make_shadow_model=lambda: make_advisor(replace(settings, advisor="claude"), conn))
            if len(settings.markets) > 1:
                from tradebot.portfolio_cycle import run_portfolio_cycle

                portfolio = run_portfolio_cycle(parts, dry_run=dry_run)
                score_after_cycle(conn, settings, parts.now())
                budget_alert(conn, notifier, made, parts.now())
                write_portfolio_metrics(settings, portfolio, conn)
                send_digest(conn, settings, notifier, parts.now(), equity=portfolio.equity_krw,
                            prices={str(r.market): r.position.price for r in portfolio.reports if r.position})
                keep_pnl_current(conn, settings.mode, [r for r in portfolio.reports if r.fill is not None])
                return portfolio
            report = run_cycle(parts, dry_run=dry_run)
            score_after_cycle(conn, settings, parts.now())
            budget_alert(conn, notifier, made, parts.now())
            write_run_metrics(settings, report, conn)
            send_digest(conn, settings, notifier, parts.now(), equity=report.position.equity if report.position else None,
                        prices={str(report.market): report.position.price} if report.position else {})
            keep_pnl_current(conn, settings.mode, [report] if report.fill is not None else [])
            return report
    except LockedError:
        raise
    except TradebotError as e:
        if e.exit_code != 1:
            raise  # configuration problems: exit 2, no alert storm every hour
        if len(settings.markets) > 1:
            return _portfolio_database_failure(settings, dry_run, str(e), notifier, time.perf_counter() - started)
        report = CycleReport(market=settings.market, mode=settings.mode, dry_run=dry_run, started_at=datetime.now(UTC))
        report.outcome, report.failed_step, report.error = "failed", "database", str(e)
        report.steps.append(StepLine("database", False, str(e)))
        report.duration_s = time.perf_counter() - started
        notify(CycleParts(settings=settings, conn=None, exchange=None, make_advisor=lambda: make_advisor(settings),  # type: ignore[arg-type]
                          notifier=notifier), report)
        write_run_metrics(settings, report, None)
        return report


def keep_pnl_current(conn: Connection, mode: str, traded: list[CycleReport]) -> None:
    """Fold this run's fills into the markets' P&L checkpoints (and day totals), so that `tradebot pnl` never
    has to replay a history the bot wrote itself. Best effort: a failure only leaves the work to `pnl`."""
    import logging

    from tradebot.pnl import whole_history

    for r in traded:
        try:
            whole_history(conn, r.market, mode)
        except StorageError as e:
            logging.getLogger(__name__).warning("pnl checkpoint of %s not updated (%s); `tradebot pnl` will", r.market, e.reason)


def _portfolio_database_failure(settings: Settings, dry_run: bool, error: str, notifier: Notifier,
                                seconds: float) -> PortfolioReport:
    """A portfolio run that could not reach its database: every market failed, nothing sent, one alert."""
    from tradebot.cycle import CycleParts, CycleReport, StepLine
    from tradebot.portfolio_cycle import PortfolioReport, notify_portfolio

    now = datetime.now(UTC)
    report = PortfolioReport(markets=settings.markets, mode=settings.mode, dry_run=dry_run, started_at=now, cycle_id="",
                             failed_step="database", error=error, duration_s=seconds)
    report.steps.append(StepLine("database", False, error))
    for market in settings.markets:
        r = CycleReport(market=market, mode=settings.mode, dry_run=dry_run, started_at=now, duration_s=seconds)
        r.outcome, r.failed_step, r.error = "failed", "database", error
        report.reports.append(r)
    notify_portfolio(CycleParts(settings=settings, conn=None, exchange=None, make_advisor=lambda: make_advisor(settings),  # type: ignore[arg-type]
                                notifier=notifier), report)
    write_portfolio_metrics(settings, report, None)
    return report


def write_portfolio_metrics(settings: Settings, report: PortfolioReport, conn: Connection | None) -> None:
    """The metrics of a portfolio run: one run series per market, the portfolio gauges; never a crash."""
    from tradebot.cycle import StepLine
    from tradebot.metrics import write_metrics
    from tradebot.models import PortfolioInfo, RunInfo
    from tradebot.store.totals import read_totals

    if settings.metrics_dir is None:
        return
    finished = time.time()
    pnl: dict[Market, Decimal] = {}
    if conn is not None:
        try:
            from tradebot.pnl import realized_today, whole_history

            today = datetime.now(UTC).date()
            pnl = {r.market: realized_today(whole_history(conn, r.market, settings.mode)[0], today) for r in report.reports}
        except StorageError:  # the database may be the reason this run failed
            pnl = {}
    losses = {m: max(-x, Decimal(0)) for m, x in pnl.items()}
    total_loss = max(-sum(pnl.values(), Decimal(0)), Decimal(0)) if pnl else None
    # Equity is the portfolio's (tradebot_portfolio_equity_krw): per market it would count the KRW n times.
    runs = [RunInfo(market=r.market, mode=settings.mode, finished_at=finished, success=not r.failed,
                    duration_s=report.duration_s, position_volume=r.position.coin_volume if r.position else None,
                    equity_krw=None, price_krw=r.position.price if r.position else None,
                    daily_realized_loss_krw=losses.get(r.market), daily_loss_limit_krw=settings.daily_loss_limit_krw)
            for r in report.reports]
    portfolio = None
    if report.free_krw is not None and report.exposure_krw is not None and report.equity_krw is not None:
        portfolio = PortfolioInfo(mode=settings.mode, krw_free=report.free_krw, exposure_krw=report.exposure_krw,
                                  open_positions=report.open_positions or 0, equity_krw=report.equity_krw,
                                  markets=len(report.reports), markets_failed=len(report.failed_markets),
                                  max_exposure_krw=settings.max_exposure_krw,
                                  max_open_positions=settings.max_open_positions,
                                  daily_realized_loss_krw=total_loss, daily_loss_limit_krw=settings.daily_loss_limit_krw)
    totals = None
    if conn is not None:
        try:
            from tradebot.store.state import save_last_portfolio, save_last_run

            for run in runs:
                save_last_run(conn, run)
            if portfolio is not None:
                save_last_portfolio(conn, portfolio)
            totals = read_totals(conn, (settings.llm_daily_budget_usd, settings.llm_monthly_budget_usd))
        except StorageError as e:
            report.steps.append(StepLine("metrics", False, f"totals not updated: database error ({e.reason})"))
    try:
        write_metrics(settings.metrics_dir, runs, totals, portfolio)
    except OSError as e:
        report.steps.append(StepLine("metrics", False, f"cannot write metrics to {settings.metrics_dir}: {e.strerror or type(e).__name__}"))
    except Exception as e:  # noqa: BLE001 — metrics never stop trading
        report.steps.append(StepLine("metrics", False, f"metrics failed: {type(e).__name__}"))


def rewrite_metrics(settings: Settings) -> list[Any]:
    """``tradebot metrics``: rewrite tradebot.prom from the database and the last recorded run."""
    from tradebot.errors import ConfigError
    from tradebot.metrics import write_metrics
    from tradebot.store.db import open_checked
    from tradebot.store.state import load_last_portfolio, load_last_run
    from tradebot.store.totals import read_totals

    if settings.metrics_dir is None:
        raise ConfigError("TRADEBOT_METRICS_DIR", "is not set; set it to node_exporter's textfile directory")
    with open_checked(database_url(settings)) as conn:
        runs = [run for m in settings.markets if (run := load_last_run(conn, m, settings.mode)) is not None]
        portfolio = load_last_portfolio(conn, settings.mode) if len(settings.markets) > 1 else None
        totals = read_totals(conn, (settings.llm_daily_budget_usd, settings.llm_monthly_budget_usd))
    try:
        return write_metrics(settings.metrics_dir, runs[0] if len(runs) == 1 else runs or None, totals, portfolio)
    except OSError as e:
        raise TradebotError(f"cannot write metrics to {settings.metrics_dir}: {e.strerror or type(e).__name__}") from None


def write_run_metrics(settings: Settings, report: CycleReport, conn: Connection | None) -> None:
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
            totals = read_totals(conn, (settings.llm_daily_budget_usd, settings.llm_monthly_budget_usd))
        except StorageError as e:  # the database may be why this run failed: still write the file
            totals = None
            report.steps.append(StepLine("metrics", False, f"totals not updated: database error ({e.reason})"))
    try:
        write_metrics(settings.metrics_dir, run, totals)
    except OSError as e:
        report.steps.append(StepLine("metrics", False, f"cannot write metrics to {settings.metrics_dir}: {e.strerror or type(e).__name__}"))
    except Exception as e:  # noqa: BLE001 — metrics never stop trading
        report.steps.append(StepLine("metrics", False, f"metrics failed: {type(e).__name__}"))


def set_pause(settings: Settings, paused: bool, reason: str, market: Market | None = None) -> None:
    """``tradebot pause`` / ``resume``: stop or allow new buys of every market (``market`` None) or of one
    (stored in the database, with the reason). Resuming one market while all are paused keeps the others
    paused."""
    from tradebot.errors import ConfigError
    from tradebot.store.db import open_checked
    from tradebot.store.state import resume_market, set_paused

    if market is not None and market not in settings.markets:
        raise ConfigError("--market", f"{market} is not a traded market (TRADEBOT_MARKETS: {','.join(settings.markets)})")
    with open_checked(database_url(settings)) as conn:
        if market is None or paused:
            set_paused(conn, paused, reason, market)
        else:
            resume_market(conn, market, reason, settings.markets)


def reset_paper(settings: Settings, krw: Decimal | None) -> Decimal:
    """``tradebot paper reset``: start the paper account afresh with ``krw`` (default TRADEBOT_PAPER_KRW);
    the amount it starts with."""
    from tradebot.exchange.paper import PaperExchange
    from tradebot.store.db import open_checked

    amount = settings.paper_krw if krw is None else krw
    with open_checked(database_url(settings)) as conn:
        PaperExchange(None, conn, settings.paper_krw).reset(amount)  # type: ignore[arg-type]
    return amount


def paper_balances(settings: Settings) -> list[Any]:
    """``tradebot paper balance``: the paper account's balances, derived from the recorded paper trades."""
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
        since = datetime.now(UTC) - timedelta(days=days)
        report = reconcile(conn, exchange, settings.markets[0], settings.mode, since, dry_run=dry_run)
        for market in settings.markets[1:]:  # every traded market, one report
            more = reconcile(conn, exchange, market, settings.mode, since, dry_run=dry_run)
            report.changes += more.changes
            report.checked_pending += more.checked_pending
            report.checked_exchange += more.checked_exchange
        report.changes[:0] = [Change("journal", line.split(":")[0], line) for line in replayed]
        report.changes[:0] = [Change("quarantined", "journal", note) for note in damaged]
        return report

