"""The scorecard's commands: ``advisors score`` and ``advisors report``. Registered in :mod:`tradebot.cli`."""

from typing import Annotated

import typer

from tradebot.cli.common import errors_to_exit, settings_from
from tradebot.cli.options import Format, FormatOption, ModeOpt, UntilOption, market_option, parse_when


@errors_to_exit
def advisors_score(
    ctx: typer.Context,
    refresh: Annotated[bool, typer.Option("--refresh/--no-refresh",
                                          help="Fetch each market's new hourly candles first (one request per market).")] = True,
) -> None:
    """Score every decision whose +1 h, +4 h or +24 h horizon has passed: the forward return from its price and
    whether it was right (after the round-trip fee). Idempotent: scoring again changes nothing."""
    from tradebot.app.advisors import score_decisions

    run = score_decisions(settings_from(ctx), refresh=refresh)
    for note in run.notes:
        typer.echo(note, err=True)
    typer.echo(f"Scored {run.scored:,} decision horizon(s); {run.waiting:,} still waiting for their horizon "
               "(or for its hourly candle).")


@errors_to_exit
def advisors_report(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Decisions from this date (UTC; the report counts whole days).")] = None,
    until: UntilOption = None,
    market: Annotated[str | None, typer.Option(help="Only this market, e.g. KRW-BTC (default: every market and the portfolio).")] = None,
    mode: Annotated[ModeOpt | None, typer.Option(help="paper or live (default: TRADEBOT_MODE).")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Is the AI worth its cost? Every advisor's decisions side by side: the acting one, Claude, the rules and
    the baselines hold and buy_and_hold.

    Per advisor: decisions by kind; hit rate at +1 h, +4 h and +24 h (a buy is right when the price then is
    above the decision's price by more than the 0.1 % round-trip fee, a sell when below by more, a hold when it
    moved less than the fee or there was no position); the mean return after buys and sells; the P&L of
    following its decisions through the risk gate with the backtest's fills (next hour's open, fees); the model's
    tokens and cost (KRW at TRADEBOT_USD_KRW); then a verdict in words, and a warning when the sample is too
    small. Reads the database (run `tradebot advisors score` first to score the newest decisions) and keeps its
    ledgers' checkpoints in TRADEBOT_STATE_DIR/report-ledgers, so the next report of the window is faster.
    """
    from tradebot.app.advisors import advisors_report as build
    from tradebot.cli.render.advisors import advisors_output

    card = build(settings_from(ctx), mode=mode.value if mode else None, since=parse_when(since, "--since"),
                 until=parse_when(until, "--until", end_of_day=True),
                 market=str(market_option(market, "--market")) if market else None)
    text, newline = advisors_output(card, fmt.value)
    typer.echo(text, nl=newline)
