"""What every command shares: the root options, loading the settings once, and turning errors into exit codes.

Parsers for option values and the options several commands declare alike are in :mod:`tradebot.cli.options`.
"""

# No ``from __future__ import annotations`` in cli/: Typer would eval() every string annotation of every
# command while building the tree for --help, which costs more than evaluating them once at import.
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tradebot.errors import TradebotError

if TYPE_CHECKING:
    from tradebot.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

_env_file_option: Path | None = None  # --env-file, remembered for the crash report (see tradebot.cli.crash)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``Error: message`` (credentials scrubbed) on stderr; raise the result to exit with ``code``."""
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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record is emitted, not as it was when the handler was made: a
    command run in-process (tests, an embedding program) after another one that swapped stderr — and closed
    its stand-in — must not print a logging error instead of its notice."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def root(
    ctx: typer.Context,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="Read settings from this .env file (default: ./.env when it exists).",
                     dir_okay=False),
    ] = None,
) -> None:
    """Global options."""
    import logging

    # Warnings from the adapters go to stderr (the cron log) with a recognizable prefix; step lines are stdout.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", handlers=[_StderrHandler()])
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
            handler.addFilter(_ScrubFilter())
    global _env_file_option
    _env_file_option = env_file
    # One-line notices from the core (a database created or upgraded, a directory created): "note: …".
    notices = logging.getLogger("tradebot.notice")
    if not notices.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        notices.addHandler(handler)
        notices.setLevel(logging.INFO)
        notices.propagate = False
    ctx.obj = {"env_file": env_file}


def env_file_option() -> Path | None:
    """The ``--env-file`` given to this run, if any (None before the root options are parsed)."""
    return _env_file_option


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


def settings_from(ctx: typer.Context) -> "Settings":
    """Load and validate the settings once for this command."""
    from tradebot.config import load_settings

    obj = (ctx.find_root().obj or {})
    if "settings" not in obj:
        explicit: Path | None = obj.get("env_file")
        obj["settings"] = load_settings(explicit or Path(".env"), explicit_env_file=explicit is not None)
        ctx.find_root().obj = obj
    settings: Settings = obj["settings"]
    return settings


def explicit_env_file(ctx: typer.Context) -> Path | None:
    """``--env-file`` as given (None: the default ``./.env`` when it exists)."""
    env_file: Path | None = (ctx.find_root().obj or {}).get("env_file")
    return env_file
