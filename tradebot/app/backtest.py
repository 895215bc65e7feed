"""The application layer of ``tradebot backtest``: from Settings and a request to a report.

:func:`run_backtest_command` and :func:`run_compare_command` read the settings, build the market-data
exchange (:func:`tradebot.app.market_data`), open the database and call the core in
:mod:`tradebot.backtest`, which takes those parts as arguments. The CLI (:mod:`tradebot.cli.backtest`) parses
options, calls one of these and renders the result.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tradebot.backtest.candles import HOUR, WARMUP_SLACK, LoadedCandles, Progress, floor_hour, load_market_candles
from tradebot.backtest.compare import CompareReport, compare_live
from tradebot.backtest.csv import CsvCandles, read_csv_columns
from tradebot.backtest.simulate import BacktestReport, BacktestRequest, backtest_candles, backtest_csv
from tradebot.errors import ConfigError, TradebotError
from tradebot.models import Market
from tradebot.risk import RiskLimits

if TYPE_CHECKING:
    from tradebot.backtest.portfolio import PortfolioBacktest
    from tradebot.config import Settings

DEFAULT_DAYS = 365


def _period(req: BacktestRequest, end: datetime) -> tuple[datetime, datetime]:
    """[since, until) from the request; ``end`` is the default ``until`` (now, or the end of the CSV data)."""
    until = req.until or end
    since = req.since or until - timedelta(days=req.days or DEFAULT_DAYS)
    if since >= until:
        raise ConfigError("--since", f"({since:%Y-%m-%d %H:%M}) must be before --until ({until:%Y-%m-%d %H:%M})")
    return since, until


def _exchange_candles(settings: Settings, market: Market, since: datetime, until: datetime,
                      progress: Progress | None = None) -> LoadedCandles:
    """The period's candles from the market-data exchange through the database's ``candles`` cache."""
    from tradebot.app.parts import database_url, market_data
    from tradebot.store.db import open_checked

    exchange = market_data(settings)
    try:
        with open_checked(database_url(settings)) as conn:
            return load_market_candles(conn, exchange, market, since, until, progress)
    finally:
        exchange.close()


def _csv_data(path: Path) -> CsvCandles:
    """The CSV file's candles; ConfigError (exit 2) when it has none."""
    data = read_csv_columns(path)
    if not len(data):
        raise ConfigError("--csv", f"{path} has no candles")
    return data


def run_backtest_command(settings: Settings, req: BacktestRequest, progress: Progress | None = None) -> BacktestReport:
    """Everything ``tradebot backtest`` computes: the candles (CSV, or the exchange through the cache) of the
    period and its warm-up, then :func:`~tradebot.backtest.simulate.backtest_csv` /
    :func:`~tradebot.backtest.simulate.backtest_candles` with the live gate's limits.

    The period is ``[until - days, until)``; ``until`` defaults to the current hour (the forming candle is
    never used) or, with ``csv``, to the end of the file's last candle.
    """
    warmup = settings.hourly_candles + WARMUP_SLACK
    starting = float(req.starting_krw if req.starting_krw is not None else settings.paper_krw)
    if req.csv is not None:
        # Columns, not Candles: a file of millions of rows is read in one pass, and only the period is used.
        data = _csv_data(req.csv)
        since, until = _period(req, data.start(-1) + HOUR)
        return backtest_csv(data, since=since, until=until, limits=RiskLimits.from_settings(settings), market=req.market,
                            starting_krw=starting, warmup=warmup)
    else:
        # Candles exist only for hours that are over: a later --until is the current hour.
        now_hour = floor_hour(datetime.now(UTC))
        if req.until is not None and req.until > now_hour:
            req = replace(req, until=now_hour)
        since, until = _period(req, now_hour)
        loaded = _exchange_candles(settings, req.market, since - warmup * HOUR, until, progress)
    return backtest_candles(loaded.candles, since=since, until=until, limits=RiskLimits.from_settings(settings), market=req.market,
                            starting_krw=starting, source=loaded.source, warmup=warmup, notes=loaded.notes)


def run_compare_command(settings: Settings, req: BacktestRequest, mode: str,
                        progress: Progress | None = None) -> CompareReport:
    """Everything ``tradebot backtest --compare-live`` computes: the recorded decisions (all, or those in
    ``--since/--until/--days``), their orders and the ledger from the database, the candles of their period
    (CSV, or the exchange through the cache), then
    :func:`~tradebot.backtest.compare.compare_live`."""
    from tradebot.app.parts import database_url
    from tradebot.store.db import open_checked
    from tradebot.store.decisions import recorded_decisions
    from tradebot.store.history import orders_of
    from tradebot.store.trades import ledger_entries

    since, until = req.since, req.until
    if req.days is not None:
        until = until or datetime.now(UTC)
        since = until - timedelta(days=req.days)
    with open_checked(database_url(settings)) as conn:
        decisions = recorded_decisions(conn, req.market, mode, since, until)
        orders = orders_of(conn, [d.id for d in decisions])
        ledger = ledger_entries(conn, req.market, mode)
    if not decisions:
        raise TradebotError(f"no recorded decisions for {req.market} ({mode}) in this period: run some cycles first "
                            "(`tradebot run-cycle`)")
    warmup = settings.hourly_candles + WARMUP_SLACK
    if req.csv is not None:
        # Only the candles the comparison can use: the first decision's live window and the backtest's warm-up
        # before it (with a candle to spare each), up to the candle in which the last decision traded.
        data = _csv_data(req.csv)
        first_at = min(d.created_at for d in decisions)
        lo = max(0, data.index(first_at - HOUR, after=True) - warmup - 2)
        hi = data.index(floor_hour(max(d.created_at for d in decisions)) + HOUR)
        loaded = LoadedCandles(data.candles(lo, hi), f"csv {data.name}", 0, data.notes)
    else:
        # From the live window of the first decision to the candle in which the last one traded (the hour
        # it was made in), when that candle is complete.
        first = floor_hour(decisions[0].created_at) - HOUR
        end = min(floor_hour(decisions[-1].created_at) + HOUR, floor_hour(datetime.now(UTC)))
        loaded = _exchange_candles(settings, req.market, first - warmup * HOUR, max(end, first + HOUR), progress)
    return compare_live(decisions, orders, ledger, loaded.candles, market=req.market, mode=mode,
                        limits=RiskLimits.from_settings(settings), window=settings.hourly_candles, source=loaded.source,
                        notes=loaded.notes)


def run_portfolio_backtest(settings: Settings, req: BacktestRequest, markets: tuple[Market, ...],
                           progress: Progress | None = None) -> PortfolioBacktest:
    """``tradebot backtest --markets``: every market's candles of the period and its warm-up (the exchange
    through the cache), replayed together by :func:`tradebot.backtest.portfolio.backtest_portfolio` under the
    configured portfolio limits (one KRW balance, the live sequencing)."""
    from decimal import Decimal

    from tradebot.backtest.portfolio import backtest_portfolio

    if req.csv is not None:
        raise ConfigError("--csv", "holds one market's candles: backtest several markets from the exchange (their "
                          "candles are cached in the database), or one market with --csv")
    warmup = settings.hourly_candles + WARMUP_SLACK
    starting = req.starting_krw if req.starting_krw is not None else settings.paper_krw
    now_hour = floor_hour(datetime.now(UTC))
    if req.until is not None and req.until > now_hour:
        req = replace(req, until=now_hour)
    since, until = _period(req, now_hour)
    loaded = {m: _exchange_candles(settings, m, since - warmup * HOUR, until, progress) for m in markets}
    notes = [note for got in loaded.values() for note in got.notes]
    limits = RiskLimits.from_settings(settings)
    if limits.max_open_positions is not None and limits.max_open_positions < len(markets):
        notes.append(f"TRADEBOT_MAX_OPEN_POSITIONS is {limits.max_open_positions}: at most that many of the "
                     f"{len(markets)} markets hold a position at once (set it, and TRADEBOT_MAX_EXPOSURE_KRW, to trade "
                     "them together)")
    source = ", ".join(sorted({got.source for got in loaded.values()}))
    return backtest_portfolio({m: got.candles for m, got in loaded.items()}, since=since, until=until, limits=limits,
                              starting_krw=Decimal(starting), warmup=warmup, source=source, notes=notes)


def run_compare_markets(settings: Settings, req: BacktestRequest, markets: tuple[Market, ...], mode: str,
                        progress: Progress | None = None) -> list[CompareReport]:
    """``--compare-live`` for several markets: one comparison per market that has recorded decisions in the
    period (a market without any is left out); an error only when none has."""
    reports = []
    for m in markets:
        try:
            reports.append(run_compare_command(settings, replace(req, market=m), mode, progress))
        except TradebotError as e:
            if not str(e).startswith("no recorded decisions"):
                raise
    if not reports:
        raise TradebotError(f"no recorded decisions for {', '.join(markets)} ({mode}) in this period: run some cycles "
                            "first (`tradebot run-cycle`)")
    return reports
