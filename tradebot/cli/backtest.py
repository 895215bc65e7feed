"""The ``backtest`` command: parse options, make one core call (:mod:`tradebot.app.backtest`), render table or
JSON. Registered in :mod:`tradebot.cli`; heavy modules are imported inside the command so that
``tradebot --help`` stays fast."""

import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from tradebot.cli.common import errors_to_exit, settings_from
from tradebot.cli.options import ModeOpt, OutputFormat, market_option, parse_when, positive_decimal, whole_number

# Upbit opened its KRW markets on this day: a backtest period before it has no candles anywhere.
UPBIT_KRW_START = datetime(2017, 9, 25, tzinfo=UTC)


@errors_to_exit
def backtest(
    ctx: typer.Context,
    days: Annotated[int | None, typer.Option(parser=whole_number(1, 3650), metavar="INTEGER", help="Length of the period in days (1-3,650), ending at --until (default 365; with --csv the period ends with the file).")] = None,
    since: Annotated[str | None, typer.Option(help="Start of the period: a date (YYYY-MM-DD) or ISO timestamp, UTC unless it has an offset.")] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (exclusive; a bare date includes that day). Default: the current hour.")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Read hourly candles from this CSV (Upbit candle fields, or time,open,high,low,close,volume) instead of the exchange.", dir_okay=False)] = None,
    market: Annotated[str | None, typer.Option(help="Market, e.g. KRW-BTC (default: TRADEBOT_MARKETS).")] = None,
    markets: Annotated[str | None, typer.Option("--markets", help="Several markets, comma-separated (e.g. KRW-BTC,KRW-ETH), replayed together through the portfolio gate: one KRW balance, the live sequencing (default: TRADEBOT_MARKETS).")] = None,
    starting_krw: Annotated[str | None, typer.Option(help="Starting KRW of the simulated account (default: TRADEBOT_PAPER_KRW).")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
    plot: Annotated[Path | None, typer.Option(help="Also draw the equity curve to this PNG (needs the 'plot' extra: matplotlib).", dir_okay=False)] = None,
    compare_live: Annotated[bool, typer.Option("--compare-live", help="Compare the recorded decisions and fills with what the strategy would have done over their period.")] = False,
    mode: Annotated[ModeOpt | None, typer.Option(help="With --compare-live: the paper or live records (default: TRADEBOT_MODE).")] = None,
) -> None:
    """Backtest the rule strategy through the live risk gate over hourly candles.

    Same strategy, same risk gate (min confidence, max order, max position, fee headroom, 5,000 KRW minimum,
    dust rule, daily loss limit), same 0.05 % fee as the live cycle. A signal on a completed candle fills at
    the next candle's open, without slippage; no look-ahead. Candles come from the exchange (200 per
    request) and are cached in the database, so a second run needs no network; --csv reads a file instead.
    Hours without trades stay gaps. With --compare-live, the bot's recorded decisions are replayed with the
    strategy and compared: differing decisions, slippage of fills, fees, and the P&L gap.

    Several markets (--markets, or TRADEBOT_MARKETS listing several) are replayed together hour by hour: one
    KRW balance, sells first and buys by confidence, the portfolio limits (exposure, open positions, KRW
    reserve, daily loss); the report has a row per market and the total. --compare-live then compares each
    market and adds the portfolio's totals.
    """
    import os

    # OpenBLAS starts a thread pool for the indicators' small matrix products; on a busy two-core machine
    # waking it costs more than the products (signals for a year: ~2 ms on one thread, 10-50 ms with the pool
    # under load). Only effective before NumPy is imported, which this command does first.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from tradebot.app.backtest import run_backtest_command, run_compare_command
    from tradebot.backtest.simulate import BacktestRequest
    from tradebot.cli.render.backtest import backtest_output, download_progress, write_plot
    from tradebot.config import MAX_KRW, parse_markets
    from tradebot.errors import ConfigError

    settings = settings_from(ctx)
    if market and markets:
        raise typer.BadParameter("give --market or --markets, not both", param_hint="--markets")
    try:
        several = parse_markets(markets, None) if markets else (() if market else settings.markets)
    except ConfigError as e:
        raise typer.BadParameter(str(e).removeprefix("TRADEBOT_MARKETS ").strip(), param_hint="--markets") from None
    chosen = market_option(market, "--market") if market else (several[0] if several else settings.market)
    if plot is not None and len(several) > 1:
        raise typer.BadParameter("draws one market's backtest: add --market M", param_hint="--plot")
    if days is not None and since is not None and until is not None:
        raise typer.BadParameter("give --days or --since with --until, not all three", param_hint="--days")
    if days is not None and since is not None:
        raise typer.BadParameter("give --days or --since, not both", param_hint="--days")
    krw: Decimal | None = (positive_decimal(starting_krw, "--starting-krw", "amount of KRW", hi=MAX_KRW)
                           if starting_krw is not None else None)
    if compare_live and starting_krw is not None:
        raise typer.BadParameter("--compare-live starts from the bot's recorded equity", param_hint="--starting-krw")
    start: datetime | None = parse_when(since, "--since")
    end: datetime | None = parse_when(until, "--until", end_of_day=True)  # None when far in the future
    for option, text, when in (("--since", since, start), ("--until", until, end)):
        if when is not None and (when < UPBIT_KRW_START or (option == "--until" and when == UPBIT_KRW_START)):
            raise typer.BadParameter(f"{text!r} is before {UPBIT_KRW_START:%Y-%m-%d}, when Upbit opened its KRW markets: "
                                     "there is nothing to backtest before it", param_hint=option)
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter("must be after --since", param_hint="--until")
    req = BacktestRequest(market=chosen, days=days, since=start, until=end, csv=csv_file, starting_krw=krw)

    # A long download shows its progress on a terminal; under cron and with --format json it stays silent.
    show = download_progress() if fmt is OutputFormat.table and sys.stderr.isatty() else None
    report: Any
    if len(several) > 1:
        from tradebot.app.backtest import run_compare_markets, run_portfolio_backtest

        if compare_live:
            report = run_compare_markets(settings, req, several, (mode.value if mode else settings.mode), progress=show)
        else:
            report = run_portfolio_backtest(settings, req, several, progress=show)
    elif compare_live:
        report = run_compare_command(settings, req, (mode.value if mode else settings.mode), progress=show)
    else:
        report = run_backtest_command(settings, req, progress=show)
    if show is not None:
        show.finish()
    for note in (n for r in (report if isinstance(report, list) else [report]) for n in r.notes):
        typer.echo(f"note: {note}", err=True)
    if plot is not None:
        write_plot(report, plot, compare_live=compare_live)
    typer.echo(backtest_output(report, fmt.value, compare_live=compare_live))
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)
