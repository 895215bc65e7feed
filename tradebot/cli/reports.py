"""Commands that report what was recorded: ``trades list`` and ``pnl``. Registered in :mod:`tradebot.cli`."""

from typing import Annotated

import typer

from tradebot.cli.common import errors_to_exit, settings_from
from tradebot.cli.options import (
    By,
    Format,
    FormatOption,
    ModeOpt,
    Side,
    Status,
    UntilOption,
    market_option,
    parse_when,
    positive_decimal,
    whole_number,
)


@errors_to_exit
def trades_list(
    ctx: typer.Context,
    symbol: Annotated[str | None, typer.Option(help="Market, e.g. KRW-BTC.")] = None,
    side: Annotated[Side | None, typer.Option(help="buy or sell.")] = None,
    status: Annotated[Status | None, typer.Option(help="pending, completed, failed, cancelled or unknown (needs attention).")] = None,
    mode: Annotated[ModeOpt | None, typer.Option(help="paper or live.")] = None,
    since: Annotated[str | None, typer.Option(help="From this date or ISO timestamp (UTC unless it has an offset).")] = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(parser=whole_number(1, 100_000), metavar="INTEGER",
                                       help="At most this many trades (1-100,000).")] = 20,
    fmt: FormatOption = Format.table,
) -> None:
    """List recorded trades, newest first."""
    from tradebot.app.reports import list_trades
    from tradebot.cli.render.reports import trades_output

    market = market_option(symbol, "--symbol") if symbol is not None else None
    start, end = parse_when(since, "--since"), parse_when(until, "--until", end_of_day=True)
    trades = list_trades(settings_from(ctx), symbol=market, side=side.value if side else None,
                         status=status.value if status else None, mode=mode.value if mode else None,
                         since=start, until=end, limit=limit)
    text, newline = trades_output(trades, fmt.value)
    typer.echo(text, nl=newline)


@errors_to_exit
def pnl(
    ctx: typer.Context,
    symbol: Annotated[str | None, typer.Option(help="Only this market, e.g. KRW-BTC.")] = None,
    mode: Annotated[ModeOpt | None, typer.Option(help="paper or live (default: both, reported separately).")] = None,
    since: Annotated[str | None, typer.Option(help="Count trades from this date or ISO timestamp (UTC).")] = None,
    until: UntilOption = None,
    at: Annotated[str | None, typer.Option(help="Value the open position at this price (offline) instead of the exchange's.")] = None,
    by: Annotated[By | None, typer.Option(help="Add a per-period table: day, week or month (UTC).")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Include every realized sell (JSON: sells_detail).")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Profit and loss per market and mode from completed trades, fees on both sides (average-cost method).

    Realized P&L per sell = (total − fee) − average cost × volume, the average cost including buy fees;
    unrealized = volume × price − cost basis. See tradebot/pnl.py for the exact accounting.
    """
    from tradebot.app.reports import pnl_reports
    from tradebot.cli.render.reports import pnl_output
    from tradebot.config import MAX_KRW, MIN_PRICE_KRW

    market = market_option(symbol, "--symbol") if symbol else symbol  # "" stays "": no market matches it
    price = positive_decimal(at, "--at", "price", lo=MIN_PRICE_KRW, hi=MAX_KRW) if at is not None else None
    reports, periods, notes = pnl_reports(settings_from(ctx), symbol=market, mode=mode.value if mode else None,
                                          since=parse_when(since, "--since"),
                                          until=parse_when(until, "--until", end_of_day=True),
                                          at=price, by=by.value if by else None, detail=detail)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    text, newline = pnl_output(reports, periods, fmt.value, by=by is not None, detail=detail)
    typer.echo(text, nl=newline)


@errors_to_exit
def markets(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(parser=whole_number(1, 1000), metavar="INTEGER",
                                       help="At most this many markets (1-1,000).")] = 20,
    fmt: FormatOption = Format.table,
) -> None:
    """List Upbit's KRW markets, the most traded over the last 24 hours first: price, change since the
    previous day's close, KRW traded, and Upbit's warning and caution flags — to help choose which to trade."""
    from tradebot.app.reports import market_quotes
    from tradebot.cli.render.reports import markets_output

    text, newline = markets_output(market_quotes(settings_from(ctx), limit=limit), fmt.value)
    typer.echo(text, nl=newline)

