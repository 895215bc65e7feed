"""Test fixtures: one real PostgreSQL server per test session, a fresh database per test.

The server is started from the system's PostgreSQL binaries by ``tradebot.infra.localpg`` (as the ``postgres``
user when the tests run as root). When the binaries are missing and we are root on Debian, the test
command installs the ``postgresql`` package first, so a fresh machine needs nothing but Python.
``TRADEBOT_TEST_DATABASE_URL`` (an admin URL to an existing server) skips all of that.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fakes importable in subprocesses too

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL (database ``postgres``) of a throwaway server for the whole session."""
    explicit = os.environ.get("TRADEBOT_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    from tradebot.infra.localpg import LocalPostgres, find_bindir, install_postgres

    bindir = find_bindir() or install_postgres()
    base = Path(tempfile.mkdtemp(prefix="tradebot-test-pg-"))
    os.chmod(base, 0o755)
    server = LocalPostgres(base / "pg", bindir=bindir, fast_unsafe=True)
    server.start()
    try:
        yield server.admin_url("postgres")
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _create_db(admin_url: str, template: str = "template0") -> str:
    import psycopg
    from psycopg import sql

    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return admin_url.rsplit("/", 1)[0] + "/" + name + ("?" + admin_url.split("?", 1)[1] if "?" in admin_url else "")


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> str:
    """A new, empty database."""
    return _create_db(pg_admin_url)


@pytest.fixture(scope="session")
def _schema_template(pg_admin_url: str) -> str:
    from tradebot.store.db import migrate

    url = _create_db(pg_admin_url)
    migrate(url)
    return url.rsplit("/", 1)[1].split("?")[0]


@pytest.fixture
def db_url(pg_admin_url: str, _schema_template: str) -> str:
    """A new database with the current schema (cloned from a migrated template: fast)."""
    return _create_db(pg_admin_url, template=_schema_template)


@pytest.fixture
def tb_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess against ``db_url``: no stray settings from the
    developer's shell, no .env file, state in a temporary directory."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADEBOT_", "UPBIT_", "ANTHROPIC_", "TELEGRAM_", "DATABASE_URL"))}
    env.update({"DATABASE_URL": db_url, "TRADEBOT_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)})
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tradebot ARGS`` as a real subprocess (exit codes, stdout, stderr as users see them)."""
    return subprocess.run([sys.executable, "-m", "tradebot", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, input=input)
