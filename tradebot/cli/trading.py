"""Commands that trade or change the bot's state: ``run-cycle``, ``reconcile``, ``metrics``, ``pause`` /
``resume`` and ``paper reset`` / ``paper balance``. Registered in :mod:`tradebot.cli`."""

from typing import Annotated

import typer

from tradebot.cli.common import errors_to_exit, fail, settings_from
from tradebot.cli.options import krw_amount, market_option, whole_number


@errors_to_exit
def run_cycle(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary instead of step lines.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and record the decision, but send no order.")] = False,
) -> None:
    """Run one trading cycle (what cron runs hourly).

    With several markets (TRADEBOT_MARKETS) one run decides for all of them under one budget: one block of
    lines per market and a portfolio summary (--json: a list of markets and the portfolio totals).

    Exit codes: 0 the cycle completed (trade, hold, filtered or vetoed); 1 a step failed, for any market
    (no unsafe action was taken and the failure is recorded and alerted; the other markets went on); 2
    configuration or usage error; 75 another cycle holding one of the markets (same mode) is running, or
    another run on the same account did not finish within TRADEBOT_LOCK_WAIT_S.
    """
    from tradebot.app.trading import run_cycle_once
    from tradebot.cli.render.runs import cycle_json, cycle_lines, portfolio_error, portfolio_lines
    from tradebot.errors import scrub

    settings = settings_from(ctx)
    report = run_cycle_once(settings, dry_run=dry_run)
    several = len(settings.markets) > 1
    title = f"tradebot {settings.mode} cycle for {', '.join(settings.markets)}" + (" (dry run)" if dry_run else "")
    if json_out:
        typer.echo(cycle_json(report))
    else:
        for line in (portfolio_lines if several else cycle_lines)(report, title):
            typer.echo(line)
    if report.exit_code:
        error = portfolio_error(report) if several else f"{report.failed_step} failed: {scrub(report.error or '')}"
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(report.exit_code)


@errors_to_exit
def reconcile(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(parser=whole_number(1, 90), metavar="INTEGER",
                                      help="Look-back window for orders on the exchange (1-90 days).")] = 7,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change without writing.")] = False,
) -> None:
    """Make the trades table equal to the exchange: finish pending orders, insert missing filled orders of
    ours (marked recovered), correct rows that differ. Running it twice changes nothing the second time."""
    from tradebot.app.trading import reconcile_now
    from tradebot.cli.render.runs import reconcile_lines

    report = reconcile_now(settings_from(ctx), days=days, dry_run=dry_run)
    for line in reconcile_lines(report, days=days, dry_run=dry_run):
        typer.echo(line)
    if report.attention and not dry_run:
        raise fail(f"{len(report.attention)} item(s) need your attention (quarantined or unknown, see above)", 1)


@errors_to_exit
def metrics(ctx: typer.Context) -> None:
    """Rewrite the Prometheus textfile (tradebot.prom) in TRADEBOT_METRICS_DIR from the database."""
    from tradebot.app.trading import rewrite_metrics

    for path in rewrite_metrics(settings_from(ctx)):
        typer.echo(f"wrote {path}")


MarketOption = Annotated[str | None, typer.Option(help="Only this market, e.g. KRW-ETH (default: every market).")]


@errors_to_exit
def pause(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "paused by the owner",
    market: MarketOption = None,
) -> None:
    """Stop new buys (sells still happen) until `tradebot resume`. Stored in the database."""
    from tradebot.app.trading import set_pause

    chosen = market_option(market, "--market") if market is not None else None
    set_pause(settings_from(ctx), True, reason, chosen)
    if chosen is None:
        typer.echo("Paused: no new buys; sells continue. `tradebot resume` lifts it.")
    else:
        typer.echo(f"Paused {chosen}: no new buys of it; sells continue. `tradebot resume --market {chosen}` lifts it.")


@errors_to_exit
def resume(ctx: typer.Context, market: MarketOption = None) -> None:
    """Allow new buys again after `tradebot pause`."""
    from tradebot.app.trading import set_pause

    chosen = market_option(market, "--market") if market is not None else None
    set_pause(settings_from(ctx), False, "resumed by the owner", chosen)
    typer.echo("Resumed: buys are allowed again." if chosen is None else f"Resumed {chosen}: buys of it are allowed again.")


@errors_to_exit
def paper_reset(
    ctx: typer.Context,
    krw: Annotated[str | None, typer.Option(help="Starting KRW (default: TRADEBOT_PAPER_KRW).")] = None,
) -> None:
    """Start the paper account afresh (earlier paper trades stay recorded for history)."""
    from tradebot.app.trading import reset_paper

    amount = krw_amount(krw, "--krw") if krw is not None else None
    settings = settings_from(ctx)
    typer.echo(f"Paper account reset to {reset_paper(settings, amount):,f} KRW.")


@errors_to_exit
def paper_balance(ctx: typer.Context) -> None:
    """Show the paper account (derived from the recorded paper trades)."""
    from tradebot.app.trading import paper_balances
    from tradebot.cli.render.runs import balance_lines

    for line in balance_lines(paper_balances(settings_from(ctx))):
        typer.echo(line)
