"""The last-resort guard's tools: naming the command that failed and writing its traceback, scrubbed of every
credential, to a private file (see :func:`tradebot.cli.main`)."""

from datetime import UTC
from pathlib import Path
from typing import Any

import typer

from tradebot.cli.common import env_file_option


def echo_safely(line: str) -> None:
    """Print ``line`` on stderr, if stderr can still take it."""
    try:
        typer.echo(line, err=True)
    except Exception:  # noqa: BLE001 — stderr closed or unencodable: nothing more can be said
        pass


def command_words(app: typer.Typer, args: list[str]) -> list[str]:
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


def write_crash_report(error: BaseException, command: str) -> str:
    """Write the traceback, scrubbed of every credential, to a new 0600 file: in the state directory
    (TRADEBOT_STATE_DIR when valid, else the default), else a private temporary file. Returns where."""
    import os
    import tempfile
    import traceback
    from datetime import datetime

    from tradebot import __version__
    from tradebot.errors import scrub

    env: dict[str, str] = dict(os.environ)
    secrets: list[str] = []
    directories: list[Path] = []
    try:
        from tradebot.config import read_env_file, secret_values, state_dir_candidates

        env_file = env_file_option() or Path(".env")
        try:
            if env_file.is_file():  # not a pipe (--env-file <(...)): it was drained already, and could block
                env = {**read_env_file(env_file), **env}
        except Exception:  # noqa: BLE001 — an unreadable env file: the environment alone
            pass
        secrets = secret_values(env)
        directories = state_dir_candidates(env)
    except Exception:  # noqa: BLE001 — the report must be written even when the configuration code is what broke
        pass
    now = datetime.now(UTC)
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
