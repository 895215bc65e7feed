"""The ``tradebot`` command line: parse options, make one core call, render, map errors to exit codes.

The root app and every command's registration are here, in the order ``--help`` lists them. The commands
live in :mod:`.setup`, :mod:`.trading`, :mod:`.reports` and :mod:`.backtest`; what they share in
:mod:`.common` (root options, settings, errors) and :mod:`.options` (option parsers and shared options); all
rendering in :mod:`.render`. Each command calls one function of :mod:`tradebot.app`. Nothing here speaks SQL,
HTTP or trading logic, and nothing outside this package imports it. Heavy libraries are imported inside the
commands that need them so that ``tradebot --help`` stays fast.
"""

# No ``from __future__ import annotations`` here: Typer would eval() every string annotation of every
# command while building the tree for --help, which costs more than evaluating them once at import.
import gc

# Fewer collections during start-up (anthropic's import allocates a lot) and a cheaper exit (see main()).
gc.set_threshold(100_000, 50, 100)

import sys  # noqa: E402

import typer  # noqa: E402

from tradebot.cli import advisors, backtest, reports, setup, telegram, trading  # noqa: E402
from tradebot.cli.common import root  # noqa: E402

__all__ = ["app", "main"]

app = typer.Typer(
    help="An hourly Upbit (KRW) trading bot that asks Claude, trades paper by default, and records every "
    "decision and fill in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.callback()(root)
trades_app = typer.Typer(help="Inspect recorded trades.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
paper_app = typer.Typer(help="Manage the paper (simulated) account.", no_args_is_help=True)
localdb_app = typer.Typer(help="Manage the embedded PostgreSQL used when DATABASE_URL is not set.", no_args_is_help=True)
advisors_app = typer.Typer(help="Score the advisors' decisions: is the AI worth its cost?", no_args_is_help=True)
app.add_typer(trades_app, name="trades")
app.add_typer(config_app, name="config")
app.add_typer(paper_app, name="paper")
app.add_typer(localdb_app, name="local-db")
app.add_typer(advisors_app, name="advisors")

app.command("init-db")(setup.init_db)
trades_app.command("list")(reports.trades_list)
config_app.command("show")(setup.config_show)
app.command("doctor")(setup.doctor)
app.command("demo")(setup.demo)
localdb_app.command("start")(setup.localdb_start)
localdb_app.command("stop")(setup.localdb_stop)
localdb_app.command("status")(setup.localdb_status)
app.command("run-cycle")(trading.run_cycle)
app.command("pnl")(reports.pnl)
app.command("reconcile")(trading.reconcile)
app.command("metrics")(trading.metrics)
app.command("pause")(trading.pause)
app.command("resume")(trading.resume)
paper_app.command("reset")(trading.paper_reset)
paper_app.command("balance")(trading.paper_balance)
app.command("simulator")(setup.simulator)
app.command("backtest")(backtest.backtest)
app.command("markets")(reports.markets)
advisors_app.command("score")(advisors.advisors_score)
advisors_app.command("report")(advisors.advisors_report)
app.command("telegram")(telegram.telegram)


def main() -> None:
    """Console-script entry point (``python -m tradebot`` too).

    The last-resort guard: an exception no command expected prints one ``Error:`` line saying where the
    traceback was written (a 0600 file in the state directory, secrets scrubbed) and exits 1, so nobody
    sees a raw traceback; Ctrl-C prints one line and exits 130. Exits (typer.Exit, SystemExit) pass.
    """
    import os

    from tradebot.cli.crash import command_words, echo_safely, write_crash_report

    # NumPy's OpenBLAS thread pool slows the indicators' small matrix products on a busy 2-core box.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app(prog_name="tradebot")
    except SystemExit as e:
        if e.code == 130:  # Typer turns Ctrl-C into Exit(130), silently
            echo_safely("Error: interrupted")
        raise
    except KeyboardInterrupt:
        echo_safely("Error: interrupted")
        raise SystemExit(130) from None
    except Exception as e:  # noqa: BLE001 — the point of the guard
        command = " ".join(["tradebot", *command_words(app, sys.argv[1:])])
        where = write_crash_report(e, command)
        echo_safely(f"Error: unexpected {type(e).__name__} in `{command}`; the traceback was written to {where}")
        raise SystemExit(1) from None
    finally:
        # Nothing allocated now needs collecting: skip the (large, after anthropic) final collection.
        gc.freeze()
