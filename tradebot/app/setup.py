"""The setup commands: ``init-db``, ``local-db start|stop|status`` and ``simulator``. (``doctor`` and ``demo``
have their own modules, :mod:`tradebot.app.doctor` and :mod:`tradebot.app.demo`.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tradebot.app.parts import database_url

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.exchange.simulator import SimulatorConfig
    from tradebot.infra.localpg import LocalPostgres
    from tradebot.store.db import MigrateResult


def init_db(settings: Settings) -> tuple[MigrateResult, str, int]:
    """``tradebot init-db``: create or upgrade the schema, then bring every market's P&L checkpoint up to date;
    (what was applied, where — no password, how many completed trades were folded into the checkpoints).

    The bot folds its own fills as it records them, so the fold finds nothing to do — except on a database
    upgraded from a version without checkpoints (or with rows written by something else): there the one-time
    replay of its history happens here, once, and not in the first ``pnl`` (or Telegram ``/pnl``) after it."""
    from tradebot.pnl import fold_all
    from tradebot.store.db import describe_target, migrate, open_checked

    url = database_url(settings)
    result = migrate(url)
    with open_checked(url) as conn:
        folded = fold_all(conn)
    return result, describe_target(url), folded


def _local_server(settings: Settings) -> LocalPostgres:
    from tradebot.infra.localpg import LocalPostgres

    return LocalPostgres(settings.state_dir / "postgres")


def start_local_db(settings: Settings, *, install: bool, say: Callable[[str], None]) -> str:
    """``tradebot local-db start``: create (first time) and start the embedded server; its URL. With
    ``install``, missing server binaries are installed first (``say`` is told before the slow part)."""
    from tradebot.infra.localpg import find_bindir, install_postgres

    server = _local_server(settings)
    if find_bindir() is None and install:
        say("PostgreSQL server binaries not found: installing Debian's postgresql package…")
        install_postgres()
    server.start()
    return server.url()


def stop_local_db(settings: Settings) -> Path:
    """``tradebot local-db stop``: stop the embedded server; where its data stays."""
    server = _local_server(settings)
    server.stop()
    return server.base


LocalDbState = Literal["running", "stopped", "absent"]


def local_db_status(settings: Settings) -> tuple[LocalDbState, str | Path]:
    """``tradebot local-db status``: ("running", URL), ("stopped", data directory) or ("absent", where it
    will be created)."""
    server = _local_server(settings)
    if server.running():
        return "running", server.url()
    if server.initialized():
        return "stopped", server.data
    return "absent", server.base


def serve_simulator(config: SimulatorConfig) -> None:
    """``tradebot simulator``: serve the local Upbit-compatible API in the foreground until interrupted."""
    from tradebot.exchange.simulator import serve

    serve(config)
