"""The embedded PostgreSQL (``DATABASE_URL`` unset) as a hostile local user and a careless owner would meet it.

Every test runs the real ``tradebot`` CLI against a real cluster that it creates in a fresh state directory
(issue 10, items 1 and 6): another unix user cannot connect at all, the bot's role is not a superuser, a
cluster made by an earlier version is upgraded on the next start, doctor fails when the cluster trusts
others, and processes started together wait for one start instead of racing it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, run_cli
from tests.stack import live_services
from tradebot.infra.localpg import BOT_ROLE, LocalPostgres, find_bindir, install_postgres, socket_url

ACCESS = "sim-access-key-" + "E" * 50
SECRET = "sim-secret-key-" + "M" * 60
ANTHROPIC_KEY = "fake-anthropic-" + "B" * 40
BOT_TOKEN = "123456:FAKE-telegram-token-" + "D" * 20

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                                reason="switching to another unix user needs root and runuser")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A short state directory (unix socket paths are limited to 107 bytes), removed with its server."""
    find_bindir() or install_postgres()
    top = Path(tempfile.mkdtemp(prefix="tb-emb-"))
    os.chmod(top, 0o711)  # as root the server runs as `postgres`, which must pass through
    state_dir = top / "state"
    yield state_dir
    server = LocalPostgres(state_dir / "postgres")
    if server.initialized():
        server.stop("immediate")
    shutil.rmtree(top, ignore_errors=True)


def env_for(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADEBOT_", "UPBIT_", "ANTHROPIC_", "TELEGRAM_", "DATABASE_URL", "PG"))}
    return {**env, "TRADEBOT_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT), **extra}


def psql(url: str, sql: str, *, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    bindir = find_bindir()
    assert bindir is not None
    cmd = [str(bindir / "psql"), url, "-XAtc", sql]
    if as_user:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")


def tcp_urls(server: LocalPostgres) -> list[str]:
    """Every TCP address a local attacker would try: loopback v4/v6 on the default and configured ports."""
    ports = {5432}
    conf = (server.data / "postgresql.conf").read_text()
    ports |= {int(p) for p in re.findall(r"^port\s*=\s*(\d+)", conf, re.M)}
    return [f"postgresql://postgres@{host}:{port}/tradebot?connect_timeout=3"
            for host in ("127.0.0.1", "[::1]") for port in sorted(ports)]


# ---------------------------------------------------------------------------------- 1. who can connect
@needs_root
def test_another_unix_user_cannot_connect_and_the_bot_is_not_a_superuser(state: Path) -> None:
    out = run_cli(["local-db", "start"], env_for(state))
    assert out.returncode == 0, out.stdout + out.stderr
    bot_url = out.stdout.strip()
    server = LocalPostgres(state / "postgres")
    admin = server.admin_url("tradebot")

    # The owner gets in (so the refusals below are real refusals, not a broken probe) ...
    assert psql(bot_url, "SELECT current_user").stdout.strip() == BOT_ROLE
    # ... `nobody` does not: not as the bot, not as the superuser, not over TCP.
    for url in (bot_url, admin, *tcp_urls(server)):
        attempt = psql(url, "SELECT 1", as_user="nobody")
        assert attempt.returncode != 0 and attempt.stdout == "", (url, attempt.stdout, attempt.stderr)

    # The bot's role: a plain login role that owns the tradebot database and nothing else.
    with psycopg.connect(bot_url) as conn:
        row = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                           "FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False, False, False, False)
        owned = conn.execute("SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles "
                             "WHERE rolname = current_user)").fetchall()
        assert owned == [("tradebot",)]
    hba = [ln.split() for ln in (server.data / "pg_hba.conf").read_text().splitlines()
           if ln.strip() and not ln.lstrip().startswith("#")]
    assert hba and all(words[0] == "local" and "trust" not in words and "replication" not in words for words in hba), hba
    assert oct(os.stat(server.sockets).st_mode & 0o777) == "0o700"

    # doctor agrees, and init-db + trades list work as the bot's role.
    assert run_cli(["init-db"], env_for(state)).returncode == 0
    doc = run_cli(["doctor"], env_for(state, TRADEBOT_ADVISOR="rules", UPBIT_API_URL="http://127.0.0.1:9"))
    assert "✓ database access: embedded PostgreSQL reachable only by this unix user" in doc.stdout, doc.stdout
    listed = run_cli(["trades", "list"], env_for(state))
    assert listed.returncode == 0 and "No trades match" in listed.stdout, listed.stdout + listed.stderr


def test_doctor_fails_when_the_embedded_cluster_trusts_other_users(state: Path) -> None:
    assert run_cli(["init-db"], env_for(state)).returncode == 0
    server = LocalPostgres(state / "postgres")
    with (server.data / "pg_hba.conf").open("a") as f:  # the owner "fixes" a connection problem this way
        f.write("host all all 127.0.0.1/32 trust\n")
    doc = run_cli(["doctor"], env_for(state, TRADEBOT_ADVISOR="rules", UPBIT_API_URL="http://127.0.0.1:9"))
    assert doc.returncode == 1, doc.stdout + doc.stderr
    [line] = [ln for ln in doc.stdout.splitlines() if "database access" in ln]
    assert line.startswith("✗ database access: pg_hba.conf line 6 trusts every connection it matches "
                           "(host all all 127.0.0.1/32 trust)"), line


# ------------------------------------------------------------------------- upgrade of an older cluster
def make_earlier_version_cluster(base: Path, port: int) -> str:
    """A cluster exactly as tradebot up to issue 10 made it: TCP on 127.0.0.1, trust for every local
    connection (replication included), the bot connecting as the ``postgres`` superuser. Returns its URL."""
    bindir = find_bindir()
    assert bindir is not None
    as_owner: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chmod(base.parent, 0o755)
        shutil.chown(base, "postgres", "postgres")
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres",
                    "-E", "UTF8", "--locale=C", "--no-sync"], check=True, capture_output=True)
    with (base / "data" / "postgresql.conf").open("a") as f:
        f.write(f"\n# tradebot\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "max_connections = 50\n")
    subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "postgres.log"),
                    "-w", "start"], check=True, capture_output=True)
    url = f"postgresql://postgres@127.0.0.1:{port}/tradebot?connect_timeout=5"
    with psycopg.connect(url.replace("/tradebot?", "/postgres?"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE tradebot")
    return url


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_a_cluster_from_an_earlier_version_is_upgraded_on_the_next_start(state: Path, running: bool) -> None:
    from tradebot.infra.localpg import free_port
    from tradebot.store.db import migrate

    base = state / "postgres"
    old_url = make_earlier_version_cluster(base, free_port())
    migrate(old_url)
    with psycopg.connect(old_url, autocommit=True) as conn:  # history that must survive the upgrade
        conn.execute("INSERT INTO paper_resets (starting_krw) VALUES (123456)")
    server = LocalPostgres(base)
    if not running:
        server.stop()

    out = run_cli(["paper", "balance"], env_for(state))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "123,456" in out.stdout
    notes = [ln for ln in out.stderr.splitlines() if ln.startswith("note: upgraded the embedded PostgreSQL")]
    assert len(notes) == 1 and out.stderr.strip() == notes[0], out.stderr

    # The old way in is closed: no TCP, no trust; the bot's role owns the old tables.
    for url in tcp_urls(server):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=3).close()
    assert "trust" not in (server.data / "pg_hba.conf").read_text()
    with psycopg.connect(server.url()) as conn:
        owners = conn.execute("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                              "WHERE relnamespace = 'public'::regnamespace").fetchall()
        assert owners == [(BOT_ROLE,)]
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        conn.execute("INSERT INTO paper_resets (starting_krw) VALUES (1)")  # and may write them

    again = run_cli(["init-db"], env_for(state))  # the upgrade happens once
    assert again.returncode == 0 and "note:" not in again.stderr, again.stdout + again.stderr
    doc = run_cli(["doctor"], env_for(state, TRADEBOT_ADVISOR="rules", UPBIT_API_URL="http://127.0.0.1:9"))
    assert "✓ database access" in doc.stdout, doc.stdout


# ------------------------------------------------------------------------------- 6. concurrent starts
def start_together(n: int, args: list[str], env: dict[str, str], tmp_path: Path) -> list[tuple[int, str, str]]:
    """Run ``tradebot ARGS`` in ``n`` processes that import everything first and then start at the same
    instant (a file appearing), so that they really race; returns (exit code, stdout, stderr) of each."""
    import time

    go = tmp_path / f"go-{time.monotonic_ns()}"
    code = ("import os, sys, time\n"
            "import tradebot.cli, tradebot.infra.localpg, tradebot.store.db, tradebot.app, psycopg\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.002)\n"
            f"sys.argv = ['tradebot', *{args!r}]\n"
            "tradebot.cli.main()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(n)]
    time.sleep(3.0)  # every process has finished importing and is polling for the file
    go.touch()
    return [(p.wait(180), *p.communicate()) for p in procs]


def test_five_init_db_at_once_on_a_fresh_state_directory_all_succeed(state: Path, tmp_path: Path) -> None:
    outs = start_together(5, ["init-db"], env_for(state), tmp_path)
    assert [code for code, _, _ in outs] == [0] * 5, outs
    created = [o for _, o, _ in outs if o.startswith("Created schema version")]
    assert len(created) == 1, outs
    assert sum("note: creating the embedded PostgreSQL" in e for _, _, e in outs) == 1, outs


def test_five_cycles_started_together_while_the_embedded_server_is_stopped(state: Path, tmp_path: Path) -> None:
    """One trades, the other four wait for the one server start and then exit 75 like any overlapping
    cycle: no failure, no alert."""
    from tests.test_reliability import answer

    assert run_cli(["init-db"], env_for(state)).returncode == 0
    LocalPostgres(state / "postgres").stop()
    base = env_for(state)
    with live_services(base, tmp_path / "metrics", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_MODE="paper", TRADEBOT_BACKTEST_FILTER="off") as (sim, model, telegram, env):
        for _ in range(5):
            model.enqueue_tool_answer(answer("hold"), delay=3.0)  # the winner holds the cycle lock a while
        outs = start_together(5, ["run-cycle"], env, tmp_path)
        assert sorted(code for code, _, _ in outs) == [0, 75, 75, 75, 75], outs
        for code, stdout, stderr in outs:
            if code == 75:
                assert stdout == "" and stderr.strip() == "Error: another cycle for KRW-BTC (paper) is running; nothing done", stderr
        assert telegram.texts == []  # nobody failed, nobody alerted
        assert len(model.requests) == 1


def test_socket_url_names_the_directory_and_port_explicitly() -> None:
    url = socket_url(Path("/var/lib/Trade Bot/postgres/sock"), "tradebot", "tradebot")
    assert url == "postgresql://tradebot@%2Fvar%2Flib%2FTrade%20Bot%2Fpostgres%2Fsock:5432/tradebot?connect_timeout=5"
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    assert (info["host"], info["port"], info["user"], info["dbname"]) == \
        ("/var/lib/Trade Bot/postgres/sock", "5432", "tradebot", "tradebot")


@needs_root
def test_cron_path_without_sbin_still_starts_and_stops_the_embedded_server(state: Path) -> None:
    """Debian cron runs jobs with PATH=/usr/bin:/bin; runuser lives in /usr/sbin."""
    env = {**env_for(state), "PATH": "/usr/bin:/bin"}
    started = run_cli(["local-db", "start"], env)
    assert started.returncode == 0, started.stdout + started.stderr
    stopped = run_cli(["local-db", "stop"], env)
    assert stopped.returncode == 0 and stopped.stdout.startswith("Stopped the embedded PostgreSQL"), stopped.stdout + stopped.stderr
