"""Commands that set the bot up or check it: ``init-db``, ``config show``, ``doctor``, ``demo``, ``local-db``
and ``simulator``. Registered in :mod:`tradebot.cli`."""

from pathlib import Path
from typing import Annotated

import typer

from tradebot.cli.common import errors_to_exit, explicit_env_file, settings_from
from tradebot.cli.options import InstallPostgresOption, krw_amount
from tradebot.errors import EXIT_USAGE


@errors_to_exit
def init_db(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (safe to run any number of times, even concurrently)."""
    from tradebot.app.setup import init_db
    from tradebot.cli.render.runs import migration_line

    result, target, folded = init_db(settings_from(ctx))
    typer.echo(migration_line(result, target))
    if folded:
        typer.echo(f"Folded {folded:,} completed trade(s) into the P&L checkpoints (`tradebot pnl` starts from them).")


@errors_to_exit
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings (secrets masked) and where they came from."""
    from tradebot.cli.render.runs import config_lines

    settings = settings_from(ctx)
    for line in config_lines(settings.env_file, settings.public_items()):
        typer.echo(line)


@errors_to_exit
def doctor(ctx: typer.Context) -> None:
    """Check configuration, database, schema, and the Upbit, Anthropic and Telegram connections.

    Prints one line per check with ✓ or ✗ and how to fix it; exits 0 only when every required check
    passes. It never places an order.
    """
    from tradebot.app.doctor import run_checks
    from tradebot.cli.render.runs import check_lines

    explicit = explicit_env_file(ctx)
    checks = run_checks(explicit or Path(".env"), explicit_env_file=explicit is not None)
    for line in check_lines(checks):
        typer.echo(line)
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        raise typer.Exit(1 if all(c.name != "configuration" for c in failed) else EXIT_USAGE)


@errors_to_exit
def demo(ctx: typer.Context, install: InstallPostgresOption = False) -> None:
    """Try tradebot with nothing to set up: embedded PostgreSQL, local Upbit simulator, one paper cycle over a
    three-market portfolio.

    Uses DATABASE_URL when it is set, otherwise the embedded PostgreSQL in TRADEBOT_STATE_DIR. Always paper
    mode, whatever the env file says.
    """
    from tradebot.app.demo import run_demo
    from tradebot.cli.render.reports import trades_table
    from tradebot.cli.render.runs import check_lines, portfolio_lines

    code = 0
    for kind, payload in run_demo(settings_from(ctx), install_postgres=install):
        if kind == "info":
            typer.echo(f"· {payload}")
        elif kind == "checks":
            typer.echo("\n$ tradebot doctor")
            for line in check_lines(payload):
                typer.echo(line)
        elif kind == "cycle":
            typer.echo("\n$ tradebot run-cycle")
            for line in portfolio_lines(payload, f"tradebot paper cycle for {', '.join(payload.markets)}"):
                typer.echo(line)
            code = payload.exit_code
        elif kind == "trades":
            typer.echo("\n$ tradebot trades list")
            typer.echo(trades_table(payload))
            if not payload:
                typer.echo("No trades yet (this cycle held).")
    raise typer.Exit(code)


@errors_to_exit
def localdb_start(ctx: typer.Context, install: InstallPostgresOption = False) -> None:
    """Create (first time) and start the embedded PostgreSQL; prints its URL."""
    from tradebot.app.setup import start_local_db

    typer.echo(start_local_db(settings_from(ctx), install=install, say=lambda line: typer.echo(line, err=True)))


@errors_to_exit
def localdb_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL (its data stays in the state directory)."""
    from tradebot.app.setup import stop_local_db

    base = stop_local_db(settings_from(ctx))
    typer.echo(f"Stopped the embedded PostgreSQL in {base}.")


@errors_to_exit
def localdb_status(ctx: typer.Context) -> None:
    """Say whether the embedded PostgreSQL is running, and its URL."""
    from tradebot.app.setup import local_db_status
    from tradebot.cli.render.runs import local_db_line

    state, where = local_db_status(settings_from(ctx))
    typer.echo(local_db_line(state, where))
    if state != "running":
        raise typer.Exit(1)


@errors_to_exit
def simulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8765,
    access_key: Annotated[str, typer.Option(help="Access key the simulator accepts.")] = "",
    secret_key: Annotated[str, typer.Option(help="Secret key the simulator verifies JWTs with.")] = "",
    starting_krw: Annotated[str, typer.Option(help="KRW in the simulated account.")] = "1000000",
    candles: Annotated[Path | None, typer.Option("--candles", "--candles-csv", exists=True, dir_okay=False,
                                                 help="CSV of hourly candles (Upbit field names) to replay.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic price path (same seed, same path).")] = 42,
    markets: Annotated[str, typer.Option(help="Comma-separated KRW markets to simulate.")] = "KRW-BTC",
    fill_delay: Annotated[float, typer.Option(help="Seconds an order stays 'wait' before it fills.")] = 0.0,
    rate_limits: Annotated[bool, typer.Option("--rate-limits/--no-rate-limits",
                                              help="Refuse requests beyond Upbit's per-second limits with a 429, like Upbit.")] = True,
) -> None:
    """Serve a local Upbit-compatible REST API on loopback (prices, orders, balances) for paper runs and tests.

    `python -m tradebot.exchange.simulator [OPTIONS]` is this same command (`--candles-csv` is its old name of
    `--candles`).
    """
    from tradebot.app.setup import serve_simulator
    from tradebot.exchange.simulator import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Faults, SimulatorConfig

    krw = krw_amount(starting_krw, "--starting-krw")
    try:  # the options, checked by the simulator's own configuration
        cfg = SimulatorConfig(port=port, access_key=access_key or DEFAULT_ACCESS_KEY, secret_key=secret_key or DEFAULT_SECRET_KEY,
                              starting_krw=krw, candles_csv=candles, seed=seed,
                              markets=tuple(m.strip().upper() for m in markets.split(",") if m.strip()),
                              faults=Faults(fill_delay_s=fill_delay), rate_limits=rate_limits)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    serve_simulator(cfg)
