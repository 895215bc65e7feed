"""The ``tradebot`` command line: parse options, make one core call, render, map errors to exit codes.

Nothing here speaks SQL, HTTP or trading logic. Heavy libraries are imported inside the commands that
need them so that ``tradebot --help`` stays fast.
"""

# No ``from __future__ import annotations`` here: Typer would eval() every string annotation of every
# command while building the tree for --help, which costs more than evaluating them once at import.
import gc

# Fewer collections during start-up (anthropic's import allocates a lot) and a cheaper exit (see main()).
gc.set_threshold(100_000, 50, 100)

import functools  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date, datetime, time, timedelta, timezone  # noqa: E402
from enum import Enum  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, Optional, TypeVar  # noqa: E402

import typer  # noqa: E402

from tradebot.errors import EXIT_USAGE, TradebotError  # noqa: E402

app = typer.Typer(
    help="An hourly Upbit (KRW) trading bot that asks Claude, trades paper by default, and records every "
    "decision and fill in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
trades_app = typer.Typer(help="Inspect recorded trades.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
paper_app = typer.Typer(help="Manage the paper (simulated) account.", no_args_is_help=True)
localdb_app = typer.Typer(help="Manage the embedded PostgreSQL used when DATABASE_URL is not set.", no_args_is_help=True)
app.add_typer(trades_app, name="trades")
app.add_typer(config_app, name="config")
app.add_typer(paper_app, name="paper")
app.add_typer(localdb_app, name="local-db")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> typer.Exit:
    from tradebot.errors import scrub

    typer.echo(f"Error: {scrub(message)}", err=True)
    return typer.Exit(code)


def errors_to_exit(fn: F) -> F:
    """Turn TradebotError into ``Error: …`` on stderr and its exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TradebotError as e:
            raise fail(str(e), e.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def root(
    ctx: typer.Context,
    env_file: Annotated[
        Optional[Path],
        typer.Option("--env-file", help="Read settings from this .env file (default: ./.env when it exists).",
                     dir_okay=False),
    ] = None,
) -> None:
    """Global options."""
    import logging

    # Warnings from the adapters go to stderr (the cron log) with a recognizable prefix; step lines are stdout.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
            handler.addFilter(_ScrubFilter())
    global _env_file_option
    _env_file_option = env_file
    # One-line notices from the core (a database created or upgraded, a directory created): "note: …".
    notices = logging.getLogger("tradebot.notice")
    if not notices.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        notices.addHandler(handler)
        notices.setLevel(logging.INFO)
        notices.propagate = False
    ctx.obj = {"env_file": env_file}


class _ScrubFilter:
    """Log lines lose credentials too (an exception's text may echo a request): see errors.scrub."""

    def filter(self, record: Any) -> bool:
        from tradebot.errors import scrub

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a malformed log call: logging reports it itself
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_env_file_option: Optional[Path] = None  # --env-file, remembered for the crash report (see main)


def settings_from(ctx: typer.Context) -> Any:
    """Load and validate the settings once for this command."""
    from tradebot.config import load_settings

    obj = (ctx.find_root().obj or {})
    if "settings" not in obj:
        explicit: Path | None = obj.get("env_file")
        obj["settings"] = load_settings(explicit or Path(".env"), explicit_env_file=explicit is not None)
        ctx.find_root().obj = obj
    return obj["settings"]


# ---------------------------------------------------------------------------------------------- init-db
@app.command("init-db")
@errors_to_exit
def init_db(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (safe to run any number of times, even concurrently)."""
    from tradebot.store.db import describe_target, migrate
    from tradebot.wiring import database_url

    settings = settings_from(ctx)
    url = database_url(settings)
    result = migrate(url)
    target = describe_target(url)
    if not result.applied:
        typer.echo(f"Schema is up to date (version {result.after}) at {target}.")
    elif result.before is None:
        typer.echo(f"Created schema version {result.after} at {target}.")
    else:
        typer.echo(f"Upgraded schema from version {result.before} to {result.after} at {target} "
                   f"({', '.join(result.applied)}).")


# ------------------------------------------------------------------------------------------ trades list
class Side(str, Enum):
    buy = "buy"
    sell = "sell"


class Status(str, Enum):
    pending = "pending"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    unknown = "unknown"


class ModeOpt(str, Enum):
    paper = "paper"
    live = "live"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def parse_when(value: str | None, option: str, *, end_of_day: bool = False) -> datetime | None:
    """A date (``2026-11-01``) or ISO timestamp, as UTC; naive values are UTC. With ``end_of_day`` (an upper
    bound, ``--until``) a bare date means the end of that day.

    Far dates work: an upper bound past the last time Python can hold (``--until 9999-12-31``) is no bound
    at all (None); a time before year 1 once in UTC (``0001-01-01T00:00+01:00``) becomes the first one, and
    a lower bound past the last one the last one.
    """
    if value is None:
        return None
    text = value.strip()
    bare = len(text) == 10
    try:
        if bare:
            ts = datetime.combine(date.fromisoformat(text), time(0), tzinfo=timezone.utc)
        else:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{_quoted(value)} is not a date (YYYY-MM-DD) or ISO timestamp", param_hint=option) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    try:
        ts = ts.astimezone(timezone.utc)
        if bare and end_of_day:
            ts += timedelta(days=1)
    except OverflowError:
        if ts.year < 5000:
            return datetime.min.replace(tzinfo=timezone.utc)
        return None if end_of_day else datetime.max.replace(tzinfo=timezone.utc)
    return ts


def _quoted(text: str) -> str:
    """An option value for a message: quoted, on one line, and short."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def positive_decimal(text: str, option: str, what: str, *, lo: Any = None, hi: Any = None) -> Any:
    """A positive Decimal from an option value, within ``lo``..``hi`` when given, or a usage error.

    Read by :func:`tradebot.config.parse_number` like every setting: ASCII digits, thousands separators
    only between groups of three (``50,000``).
    """
    from tradebot.config import number_hint, parse_number

    try:
        value = parse_number(text)
    except ValueError as e:
        raise typer.BadParameter(f"{_quoted(text)} is not a positive {what}{number_hint(e)}", param_hint=option) from None
    if value <= 0:
        raise typer.BadParameter(f"{_quoted(text)} is not a positive {what}", param_hint=option)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"from {lo:,f} to {hi:,f}" if lo is not None else f"more than 0 and at most {hi:,f}"
        raise typer.BadParameter(f"{_quoted(text)} is out of range: the {what} must be {bounds}", param_hint=option)
    return value


def whole_number(lo: int, hi: int) -> Callable[[Any], int]:
    """A Typer ``parser`` for a whole-number option from ``lo`` to ``hi``, read by
    :func:`tradebot.config.parse_number` like every number (Typer's own int accepts ``1_0`` as 10)."""

    def parse(value: Any) -> int:
        if isinstance(value, int):  # the default
            return value
        from tradebot.config import number_hint, parse_number

        try:
            number = parse_number(value)
        except ValueError as e:
            raise typer.BadParameter(f"{_quoted(value)} is not a whole number{number_hint(e)}") from None
        if not lo <= number <= hi or number != number.to_integral_value():
            raise typer.BadParameter(f"{_quoted(value)} is not a whole number from {lo:,} to {hi:,}")
        return int(number)

    return parse


def market_option(text: str, option: str) -> Any:
    """The market named by ``option`` (``--symbol``, ``--market``), validated like TRADEBOT_TICKER."""
    from tradebot.config import parse_market

    try:
        return parse_market(text, option)
    except TradebotError as e:
        raise typer.BadParameter(str(e).removeprefix(f"{option} "), param_hint=option) from None


def krw_amount(text: str, option: str) -> Any:
    """An amount of KRW from 0 to 1,000,000,000,000 (the bounds of TRADEBOT_PAPER_KRW), or a usage error."""
    from tradebot.config import MAX_KRW, number_hint, parse_number

    try:
        value = parse_number(text)
    except ValueError as e:
        raise typer.BadParameter(f"{_quoted(text)} is not an amount of KRW{number_hint(e)}", param_hint=option) from None
    if not 0 <= value <= MAX_KRW:
        raise typer.BadParameter(f"{_quoted(text)} is out of range: it must be from 0 to {MAX_KRW:,f} KRW", param_hint=option)
    return value


@trades_app.command("list")
@errors_to_exit
def trades_list(
    ctx: typer.Context,
    symbol: Annotated[Optional[str], typer.Option(help="Market, e.g. KRW-BTC.")] = None,
    side: Annotated[Optional[Side], typer.Option(help="buy or sell.")] = None,
    status: Annotated[Optional[Status], typer.Option(help="pending, completed, failed, cancelled or unknown (needs attention).")] = None,
    mode: Annotated[Optional[ModeOpt], typer.Option(help="paper or live.")] = None,
    since: Annotated[Optional[str], typer.Option(help="From this date or ISO timestamp (UTC unless it has an offset).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Up to this date (inclusive) or ISO timestamp (exclusive).")] = None,
    limit: Annotated[int, typer.Option(parser=whole_number(1, 100_000), metavar="INTEGER",
                                       help="At most this many trades (1-100,000).")] = 20,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv (exact decimals in json/csv).")] = Format.table,
) -> None:
    """List recorded trades, newest first."""
    from tradebot.render import to_csv, to_json
    from tradebot.store.db import open_checked
    from tradebot.wiring import database_url
    from tradebot.store.trades import TRADE_COLUMNS, TradeFilter, list_trades

    if symbol is not None:
        symbol = market_option(symbol, "--symbol")
    f = TradeFilter(symbol=symbol, side=side.value if side else None, status=status.value if status else None,
                    mode=mode.value if mode else None, since=parse_when(since, "--since"),
                    until=parse_when(until, "--until", end_of_day=True), limit=limit)
    settings = settings_from(ctx)
    with open_checked(database_url(settings)) as conn:
        trades = list_trades(conn, f)
    if fmt is Format.json:
        typer.echo(to_json(trades))
    elif fmt is Format.csv:
        typer.echo(to_csv(trades, TRADE_COLUMNS), nl=False)
    else:
        from tradebot.render import trades_table

        typer.echo(trades_table(trades))
        if not trades:
            typer.echo("No trades match these filters.")


# ---------------------------------------------------------------------------------------------- config
@config_app.command("show")
@errors_to_exit
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings (secrets masked) and where they came from."""
    settings = settings_from(ctx)
    source = str(settings.env_file) if settings.env_file else "(no env file; environment only)"
    typer.echo(f"# env file: {source}")
    for name, value in settings.public_items():
        typer.echo(f"{name}={value}")


# ---------------------------------------------------------------------------------------------- doctor
@app.command()
@errors_to_exit
def doctor(ctx: typer.Context) -> None:
    """Check configuration, database, schema, and the Upbit, Anthropic and Telegram connections.

    Prints one line per check with ✓ or ✗ and how to fix it; exits 0 only when every required check
    passes. It never places an order.
    """
    from tradebot.doctor import run_checks

    explicit = (ctx.find_root().obj or {}).get("env_file")
    checks = run_checks(explicit or Path(".env"), explicit_env_file=explicit is not None)
    _print_checks(checks)
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        raise typer.Exit(1 if all(c.name != "configuration" for c in failed) else EXIT_USAGE)


def _print_checks(checks: list[Any]) -> None:
    for c in checks:
        mark = "✓" if c.ok else ("!" if not c.required else "✗")
        line = f"{mark} {c.name}: {c.detail}"
        if not c.ok and c.fix:
            line += f" — {c.fix}"
        typer.echo(line)


def _print_report(report: Any, title: str) -> None:
    from tradebot.errors import scrub

    typer.echo(title)
    for line in report.steps:
        typer.echo(f"{'✓' if line.ok else '✗'} {line.step}: {scrub(line.text)}")
    typer.echo(f"→ {report.outcome} ({report.duration_s:.2f} s)")


# ------------------------------------------------------------------------------------------------ demo
@app.command()
@errors_to_exit
def demo(
    ctx: typer.Context,
    install: Annotated[bool, typer.Option("--install-postgres", help="If the PostgreSQL server binaries are missing, install Debian's postgresql package (root only).")] = False,
) -> None:
    """Try tradebot with nothing to set up: embedded PostgreSQL, local Upbit simulator, one paper cycle.

    Uses DATABASE_URL when it is set, otherwise the embedded PostgreSQL in TRADEBOT_STATE_DIR. Always paper
    mode, whatever the env file says.
    """
    from tradebot.demo import run_demo
    from tradebot.render import trades_table

    code = 0
    for kind, payload in run_demo(settings_from(ctx), install_postgres=install):
        if kind == "info":
            typer.echo(f"· {payload}")
        elif kind == "checks":
            typer.echo("\n$ tradebot doctor")
            _print_checks(payload)
        elif kind == "cycle":
            typer.echo("\n$ tradebot run-cycle")
            _print_report(payload, f"tradebot paper cycle for {payload.market}")
            code = payload.exit_code
        elif kind == "trades":
            typer.echo("\n$ tradebot trades list")
            typer.echo(trades_table(payload))
            if not payload:
                typer.echo("No trades yet (this cycle held).")
    raise typer.Exit(code)


# -------------------------------------------------------------------------------------------- local-db
def _local_server(ctx: typer.Context) -> Any:
    from tradebot.localpg import LocalPostgres

    settings = settings_from(ctx)
    return LocalPostgres(settings.state_dir / "postgres")


@localdb_app.command("start")
@errors_to_exit
def localdb_start(
    ctx: typer.Context,
    install: Annotated[bool, typer.Option("--install-postgres", help="If the PostgreSQL server binaries are missing, install Debian's postgresql package (root only).")] = False,
) -> None:
    """Create (first time) and start the embedded PostgreSQL; prints its URL."""
    from tradebot.localpg import find_bindir, install_postgres

    server = _local_server(ctx)
    if find_bindir() is None and install:
        typer.echo("PostgreSQL server binaries not found: installing Debian's postgresql package…", err=True)
        install_postgres()
    server.start()
    typer.echo(server.url())


@localdb_app.command("stop")
@errors_to_exit
def localdb_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL (its data stays in the state directory)."""
    server = _local_server(ctx)
    server.stop()
    typer.echo(f"Stopped the embedded PostgreSQL in {server.base}.")


@localdb_app.command("status")
@errors_to_exit
def localdb_status(ctx: typer.Context) -> None:
    """Say whether the embedded PostgreSQL is running, and its URL."""
    server = _local_server(ctx)
    if server.running():
        typer.echo(f"running: {server.url()}")
    elif server.initialized():
        typer.echo(f"stopped (data in {server.data})")
        raise typer.Exit(1)
    else:
        typer.echo(f"not created yet (it is created in {server.base} on first use)")
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------- run-cycle
@app.command("run-cycle")
@errors_to_exit
def run_cycle_cmd(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary instead of step lines.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and record the decision, but send no order.")] = False,
) -> None:
    """Run one trading cycle (what cron runs hourly).

    Exit codes: 0 the cycle completed (trade, hold, filtered or vetoed); 1 a step failed (no unsafe action
    was taken and the failure is recorded and alerted); 2 configuration or usage error; 75 another cycle
    for the same ticker and mode is running.
    """
    import json

    from tradebot.errors import scrub
    from tradebot.wiring import run_cycle_once

    settings = settings_from(ctx)
    report = run_cycle_once(settings, dry_run=dry_run)
    if json_out:
        typer.echo(scrub(json.dumps(report.to_json(), indent=2)))
    else:
        _print_report(report, f"tradebot {settings.mode} cycle for {settings.market}" + (" (dry run)" if dry_run else ""))
    if report.exit_code:
        typer.echo(f"Error: {report.failed_step} failed: {scrub(report.error or '')}", err=True)
        raise typer.Exit(report.exit_code)


# ------------------------------------------------------------------------------------------------- pnl
class By(str, Enum):
    day = "day"
    week = "week"
    month = "month"


PNL_COLUMNS = ("symbol", "mode", "trades", "buys", "sells", "position_volume", "average_cost", "cost_basis", "price",
               "price_source", "unrealized_pnl", "realized_pnl", "total_pnl", "fees", "round_trips", "win_rate",
               "best_trade", "worst_trade", "unmatched_volume", "max_drawdown", "capital", "return_on_capital",
               "buy_hold_pnl", "buy_hold_return")


@app.command()
@errors_to_exit
def pnl(
    ctx: typer.Context,
    symbol: Annotated[Optional[str], typer.Option(help="Only this market, e.g. KRW-BTC.")] = None,
    mode: Annotated[Optional[ModeOpt], typer.Option(help="paper or live (default: both, reported separately).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Count trades from this date or ISO timestamp (UTC).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Up to this date (inclusive) or ISO timestamp (exclusive).")] = None,
    at: Annotated[Optional[str], typer.Option(help="Value the open position at this price (offline) instead of the exchange's.")] = None,
    by: Annotated[Optional[By], typer.Option(help="Add a per-period table: day, week or month (UTC).")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Include every realized sell (JSON: sells_detail).")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv (exact decimals in json/csv).")] = Format.table,
) -> None:
    """Profit and loss per market and mode from completed trades, fees on both sides (average-cost method).

    Realized P&L per sell = (total − fee) − average cost × volume, the average cost including buy fees;
    unrealized = volume × price − cost basis. See tradebot/pnl.py for the exact accounting.
    """
    import json

    from tradebot.render import pnl_table, period_table, record_dict, to_csv
    from tradebot.wiring import pnl_reports

    if symbol:
        symbol = market_option(symbol, "--symbol")
    from tradebot.config import MAX_KRW, MIN_PRICE_KRW

    price = positive_decimal(at, "--at", "price", lo=MIN_PRICE_KRW, hi=MAX_KRW) if at is not None else None
    reports, rows, notes = pnl_reports(settings_from(ctx), symbol=symbol, mode=mode.value if mode else None,
                                       since=parse_when(since, "--since"), until=parse_when(until, "--until", end_of_day=True),
                                       at=price, by=by.value if by else None, detail=detail)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if fmt is Format.json:
        out = []
        for r in reports:
            d = {k: v for k, v in record_dict(r).items() if k in PNL_COLUMNS}
            if detail:
                d["sells_detail"] = [record_dict(x) for x in r.realized_sells]
            out.append(d)
        payload: Any = {"reports": out, "periods": [record_dict(p) for p in rows]} if by else out
        typer.echo(json.dumps(payload, indent=2))
    elif fmt is Format.csv:
        if by:
            typer.echo(to_csv(rows, ("period", "symbol", "mode", "realized_pnl", "fees", "buys", "sells", "bought_volume", "sold_volume")), nl=False)
        else:
            typer.echo(to_csv(reports, PNL_COLUMNS), nl=False)
    else:
        if not reports:
            typer.echo("No completed trades match these filters.")
        for r in reports:
            typer.echo(pnl_table(r))
        if by and rows:
            typer.echo(period_table(rows))


# ------------------------------------------------------------------------------------------- reconcile
@app.command()
@errors_to_exit
def reconcile(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(parser=whole_number(1, 90), metavar="INTEGER",
                                      help="Look-back window for orders on the exchange (1-90 days).")] = 7,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change without writing.")] = False,
) -> None:
    """Make the trades table equal to the exchange: finish pending orders, insert missing filled orders of
    ours (marked recovered), correct rows that differ. Running it twice changes nothing the second time."""
    from tradebot.wiring import reconcile_now

    settings = settings_from(ctx)
    report = reconcile_now(settings, days=days, dry_run=dry_run)
    verb = "would change" if dry_run else "changed"
    for c in report.changes:
        typer.echo(f"{c.kind}: {c.client_order_id}: {c.detail}")
    typer.echo(f"{len(report.changed)} row(s) {verb}; {report.checked_pending} pending checked, "
               f"{report.checked_exchange} filled order(s) of ours on the exchange in the last {days} day(s).")
    if report.attention and not dry_run:
        raise fail(f"{len(report.attention)} item(s) need your attention (quarantined or unknown, see above)", 1)


# --------------------------------------------------------------------------------------------- metrics
@app.command()
@errors_to_exit
def metrics(ctx: typer.Context) -> None:
    """Rewrite the Prometheus textfile (tradebot.prom) in TRADEBOT_METRICS_DIR from the database."""
    from tradebot.wiring import rewrite_metrics

    for path in rewrite_metrics(settings_from(ctx)):
        typer.echo(f"wrote {path}")


# -------------------------------------------------------------------------------------- pause / resume
@app.command()
@errors_to_exit
def pause(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "paused by the owner",
) -> None:
    """Stop new buys (sells still happen) until `tradebot resume`. Stored in the database."""
    from tradebot.wiring import set_pause

    set_pause(settings_from(ctx), True, reason)
    typer.echo("Paused: no new buys; sells continue. `tradebot resume` lifts it.")


@app.command()
@errors_to_exit
def resume(ctx: typer.Context) -> None:
    """Allow new buys again after `tradebot pause`."""
    from tradebot.wiring import set_pause

    set_pause(settings_from(ctx), False, "resumed by the owner")
    typer.echo("Resumed: buys are allowed again.")


# ----------------------------------------------------------------------------------------------- paper
@paper_app.command("reset")
@errors_to_exit
def paper_reset(
    ctx: typer.Context,
    krw: Annotated[Optional[str], typer.Option(help="Starting KRW (default: TRADEBOT_PAPER_KRW).")] = None,
) -> None:
    """Start the paper account afresh (earlier paper trades stay recorded for history)."""
    from tradebot.wiring import reset_paper

    amount = krw_amount(krw, "--krw") if krw is not None else None
    settings = settings_from(ctx)
    if amount is None:
        amount = settings.paper_krw
    reset_paper(settings, amount)
    typer.echo(f"Paper account reset to {amount:,f} KRW.")


@paper_app.command("balance")
@errors_to_exit
def paper_balance(ctx: typer.Context) -> None:
    """Show the paper account (derived from the recorded paper trades)."""
    from tradebot.wiring import paper_balances

    for b in paper_balances(settings_from(ctx)):
        avg = f"  avg buy price {b.avg_buy_price:,.0f}" if b.currency != "KRW" else ""
        typer.echo(f"{b.currency:>6}  {b.free:,f}{avg}")


# ------------------------------------------------------------------------------------------- simulator
@app.command()
@errors_to_exit
def simulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8765,
    access_key: Annotated[str, typer.Option(help="Access key the simulator accepts.")] = "",
    secret_key: Annotated[str, typer.Option(help="Secret key the simulator verifies JWTs with.")] = "",
    starting_krw: Annotated[str, typer.Option(help="KRW in the simulated account.")] = "1000000",
    candles: Annotated[Optional[Path], typer.Option("--candles", "--candles-csv", exists=True, dir_okay=False,
                                                    help="CSV of hourly candles (Upbit field names) to replay.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic price path (same seed, same path).")] = 42,
    markets: Annotated[str, typer.Option(help="Comma-separated KRW markets to simulate.")] = "KRW-BTC",
    fill_delay: Annotated[float, typer.Option(help="Seconds an order stays 'wait' before it fills.")] = 0.0,
) -> None:
    """Serve a local Upbit-compatible REST API on loopback (prices, orders, balances) for paper runs and tests.

    `python -m tradebot.exchange.simulator [OPTIONS]` is this same command (`--candles-csv` is its old name of
    `--candles`).
    """
    from tradebot.exchange.simulator import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Faults, SimulatorConfig, serve

    krw = krw_amount(starting_krw, "--starting-krw")
    try:
        cfg = SimulatorConfig(port=port, access_key=access_key or DEFAULT_ACCESS_KEY, secret_key=secret_key or DEFAULT_SECRET_KEY,
                              starting_krw=krw, candles_csv=candles, seed=seed,
                              markets=tuple(m.strip().upper() for m in markets.split(",") if m.strip()),
                              faults=Faults(fill_delay_s=fill_delay))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    serve(cfg)


from tradebot.cli_backtest import register as _register_backtest  # noqa: E402 (needs app and errors_to_exit)

_register_backtest(app)


def main() -> None:
    """Console-script entry point (``python -m tradebot`` too).

    The last-resort guard: an exception no command expected prints one ``Error:`` line saying where the
    traceback was written (a 0600 file in the state directory, secrets scrubbed) and exits 1, so nobody
    sees a raw traceback; Ctrl-C prints one line and exits 130. Exits (typer.Exit, SystemExit) pass.
    """
    import os

    # NumPy's OpenBLAS thread pool slows the indicators' small matrix products on a busy 2-core box.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app(prog_name="tradebot")
    except SystemExit as e:
        if e.code == 130:  # Typer turns Ctrl-C into Exit(130), silently
            _echo_safely("Error: interrupted")
        raise
    except KeyboardInterrupt:
        _echo_safely("Error: interrupted")
        raise SystemExit(130) from None
    except Exception as e:  # noqa: BLE001 — the point of the guard
        command = " ".join(["tradebot", *_command_words(sys.argv[1:])])
        where = _write_crash_report(e, command)
        _echo_safely(f"Error: unexpected {type(e).__name__} in `{command}`; the traceback was written to {where}")
        raise SystemExit(1) from None
    finally:
        # Nothing allocated now needs collecting: skip the (large, after anthropic) final collection.
        gc.freeze()


def _echo_safely(line: str) -> None:
    try:
        typer.echo(line, err=True)
    except Exception:  # noqa: BLE001 — stderr closed or unencodable: nothing more can be said
        pass


def _command_words(args: list[str]) -> list[str]:
    """The command path the user asked for (``run-cycle``, ``trades list``), from known names only."""
    import typer.main

    words: list[str] = []
    try:
        command: Any = typer.main.get_command(app)
        it = iter(args)
        for arg in it:
            if arg == "--env-file":
                next(it, None)
                continue
            if arg.startswith("-"):
                continue
            sub = getattr(command, "commands", {}).get(arg)
            if sub is None:
                break
            words.append(arg)
            command = sub
            if not getattr(command, "commands", None):
                break
    except Exception:  # noqa: BLE001 — naming the command must never fail the guard
        pass
    return words


def _write_crash_report(error: BaseException, command: str) -> str:
    """Write the traceback, scrubbed of every credential, to a new 0600 file: in the state directory
    (TRADEBOT_STATE_DIR when valid, else the default), else a private temporary file. Returns where."""
    import os
    import tempfile
    import traceback
    from datetime import datetime, timezone

    from tradebot import __version__
    from tradebot.errors import scrub

    env: dict[str, str] = dict(os.environ)
    secrets: list[str] = []
    directories: list[Path] = []
    try:
        from tradebot.config import read_env_file, secret_values, state_dir_candidates

        env_file = _env_file_option or Path(".env")
        try:
            if env_file.is_file():  # not a pipe (--env-file <(...)): it was drained already, and could block
                env = {**read_env_file(env_file), **env}
        except Exception:  # noqa: BLE001 — an unreadable env file: the environment alone
            pass
        secrets = secret_values(env)
        directories = state_dir_candidates(env)
    except Exception:  # noqa: BLE001 — the report must be written even when the configuration code is what broke
        pass
    now = datetime.now(timezone.utc)
    text = scrub("".join(traceback.format_exception(error)), secrets, url_passwords=True)
    report = (f"tradebot {__version__} crash report, {now:%Y-%m-%d %H:%M:%S} UTC, pid {os.getpid()}\n"
              f"command: {command}\n\n{text}").encode("utf-8", "backslashreplace")
    name = f"crash-{now:%Y%m%dT%H%M%SZ}-{os.getpid()}.txt"
    for directory in directories:
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(report)
            return str(path)
        except OSError:
            continue
    try:
        fd, tmp = tempfile.mkstemp(prefix="tradebot-crash-", suffix=".txt")  # 0600, only this user can read it
        with os.fdopen(fd, "wb") as f:
            f.write(report)
        return tmp
    except Exception as e:  # noqa: BLE001
        return f"nowhere (neither the state directory nor the temporary directory could take it: {type(e).__name__})"


if __name__ == "__main__":  # pragma: no cover
    main()
