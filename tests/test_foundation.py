"""Issue 2: schema, init-db, trades list, config errors, help texts — against a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, run_cli
from tradebot.store.db import code_schema_version, describe_target, migrate, migrations, sql_dir


def catalog(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Everything about the schema that matters: columns, constraints, indexes."""
    with psycopg.connect(url) as conn:
        cols = conn.execute("""
            SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity
            FROM information_schema.columns WHERE table_schema = 'public'
            ORDER BY table_name, column_name""").fetchall()
        cons = conn.execute("""
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            ORDER BY 1, 2""").fetchall()
        idx = conn.execute("""
            SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
            ORDER BY 1, 2""").fetchall()
        versions = conn.execute("SELECT version, description FROM schema_version ORDER BY 1").fetchall()
    return {"columns": cols, "constraints": cons, "indexes": idx, "versions": versions}


def test_schema_applies_twice_without_change(empty_db_url: str) -> None:
    first = migrate(empty_db_url)
    assert first.before is None and first.applied == ("schema.sql",)
    before = catalog(empty_db_url)
    # The file itself is idempotent, and init-db's second run does nothing.
    with psycopg.connect(empty_db_url) as conn:
        conn.execute((sql_dir() / "schema.sql").read_text().encode())
    second = migrate(empty_db_url)
    assert second.applied == () and second.before == second.after == code_schema_version()
    assert catalog(empty_db_url) == before


def test_fresh_schema_equals_migrated_schema(pg_admin_url: str, empty_db_url: str, db_url: str) -> None:
    first, *later = migrations()
    assert first.version == 1 and later, "there must be at least one upgrade to compare"
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(first.path.read_text().encode())
    result = migrate(empty_db_url)
    assert result.before == 1 and result.applied == tuple(m.path.name for m in later)
    assert catalog(empty_db_url) == catalog(db_url)


def test_init_db_twice_and_concurrently(tb_env: dict[str, str], empty_db_url: str) -> None:
    env = {**tb_env, "DATABASE_URL": empty_db_url}
    procs = [subprocess.Popen([sys.executable, "-m", "tradebot", "init-db"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = sorted(o[0].strip() for o in outs)
    assert lines[0].startswith(f"Created schema version {code_schema_version()} at {describe_target(empty_db_url)}")
    assert lines[1].startswith(f"Schema is up to date (version {code_schema_version()})")
    again = run_cli(["init-db"], env)
    assert again.returncode == 0 and again.stdout.startswith("Schema is up to date")


def test_init_db_upgrades_an_old_database(tb_env: dict[str, str], empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(migrations()[0].path.read_text().encode())
    env = {**tb_env, "DATABASE_URL": empty_db_url}
    old = run_cli(["trades", "list"], env)
    assert old.returncode == 1
    assert old.stderr.strip() == (f"Error: the database schema is version 1, this tradebot needs {code_schema_version()}: "
                                  "run `tradebot init-db` to upgrade it")
    up = run_cli(["init-db"], env)
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith(f"Upgraded schema from version 1 to {code_schema_version()}")
    assert run_cli(["trades", "list", "--format", "json"], env).stdout.strip() == "[]"


def test_newer_and_missing_schema_are_refused(tb_env: dict[str, str], db_url: str, empty_db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO schema_version (version, description) VALUES (999, 'from the future')")
    newer = run_cli(["trades", "list"], tb_env)
    assert newer.returncode == 1
    assert "newer than this tradebot understands" in newer.stderr and "upgrade tradebot" in newer.stderr
    init = run_cli(["init-db"], tb_env)
    assert init.returncode == 1 and "newer than this tradebot" in init.stderr
    missing = run_cli(["trades", "list"], {**tb_env, "DATABASE_URL": empty_db_url})
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: the database has no tradebot schema: run `tradebot init-db`"


INSERT = """INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
            requested_krw, requested_volume, error, created_at)
            VALUES (%(cid)s, %(tid)s, %(symbol)s, %(side)s, %(mode)s, %(status)s, %(price)s, %(amount)s, %(total)s,
                    %(fee)s, %(rkrw)s, %(rvol)s, %(error)s, %(at)s)"""


def trade(**kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(cid="tb-00000001", tid="uuid-1", symbol="KRW-BTC", side="buy", mode="paper",
                                   status="completed", price=Decimal("130000000"), amount=Decimal("0.00038461"),
                                   total=Decimal("49999.3"), fee=Decimal("24.99965"), rkrw=Decimal("50000"),
                                   rvol=None, error=None, at="2026-11-20T01:05:00Z")
    base.update(kw)
    return base


@pytest.mark.parametrize("bad", [
    dict(side="short"),
    dict(status="done"),
    dict(mode="demo"),
    dict(symbol="krw-btc; drop table trades"),
    dict(amount=Decimal("-1")),
    dict(fee=Decimal("-0.01")),
    dict(status="completed", tid=None),  # a completed trade has an exchange uuid
    dict(status="completed", amount=Decimal(0)),  # … and a fill
    dict(status="failed", tid=None, price=None, amount=None, total=None, fee=None, error=None),  # failed needs error
    dict(side="buy", rkrw=None),  # a buy records what was asked
    dict(cid="short"),
])
def test_constraints_reject_bad_rows(db_url: str, bad: dict[str, object]) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(psycopg.errors.IntegrityError):
            conn.execute(INSERT, trade(**bad))


def test_constraints_reject_duplicates(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(INSERT, trade())
    with psycopg.connect(db_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(INSERT, trade(tid="uuid-2"))  # same client order id
    with psycopg.connect(db_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(INSERT, trade(cid="tb-00000002"))  # same exchange uuid


@pytest.fixture
def ledger(db_url: str) -> str:
    rows = [
        trade(),
        trade(cid="tb-00000002", tid="uuid-2", side="sell", price=Decimal("131500000"), amount=Decimal("0.00038461"),
              total=Decimal("50576.215"), fee=Decimal("25.2881075"), rkrw=None, rvol=Decimal("0.00038461"),
              at="2026-11-21T02:05:00Z"),
        trade(cid="tb-00000003", tid=None, symbol="KRW-ETH", status="failed", price=None, amount=None, total=None,
              fee=None, rkrw=Decimal("5000"), error="insufficient_funds_bid: not enough KRW", at="2026-11-22T03:05:00Z"),
        trade(cid="tb-00000004", tid="uuid-4", mode="live", price=Decimal("4350000"), symbol="KRW-ETH",
              amount=Decimal("0.0115"), total=Decimal("50025"), fee=Decimal("25.0125"), at="2026-11-23T04:05:00Z"),
    ]
    with psycopg.connect(db_url) as conn:
        for r in rows:
            conn.execute(INSERT, r)
    return db_url


def test_trades_list_table_exact(tb_env: dict[str, str], ledger: str) -> None:
    out = run_cli(["trades", "list"], tb_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "ID  TIME (UTC)           SYMBOL   SIDE  MODE   STATUS           PRICE      AMOUNT  TOTAL KRW  FEE KRW  ORDER\n"
        "--  -------------------  -------  ----  -----  ---------  -----------  ----------  ---------  -------  ------\n"
        " 4  2026-11-23 04:05:00  KRW-ETH  buy   live   completed    4,350,000      0.0115     50,025    25.01  uuid-4\n"
        " 3  2026-11-22 03:05:00  KRW-ETH  buy   paper  failed               -           -          -        -  -\n"
        " 2  2026-11-21 02:05:00  KRW-BTC  sell  paper  completed  131,500,000  0.00038461     50,576    25.29  uuid-2\n"
        " 1  2026-11-20 01:05:00  KRW-BTC  buy   paper  completed  130,000,000  0.00038461     49,999    25.00  uuid-1\n"
    )


def test_trades_list_filters(tb_env: dict[str, str], ledger: str) -> None:
    def ids(*args: str) -> list[int]:
        out = run_cli(["trades", "list", "--format", "json", *args], tb_env)
        assert out.returncode == 0, out.stderr
        return [t["id"] for t in json.loads(out.stdout)]

    assert ids() == [4, 3, 2, 1]
    assert ids("--symbol", "krw-eth") == [4, 3]
    assert ids("--side", "sell") == [2]
    assert ids("--status", "failed") == [3]
    assert ids("--mode", "live") == [4]
    assert ids("--since", "2026-11-21") == [4, 3, 2]
    assert ids("--until", "2026-11-21") == [2, 1]  # a bare date includes that whole day
    assert ids("--since", "2026-11-21T02:05:00Z", "--until", "2026-11-22T03:05:00+00:00") == [2]
    assert ids("--since", "2026-11-21T11:05:00+09:00", "--until", "2026-11-21T11:05:01+09:00") == [2]
    assert ids("--limit", "2") == [4, 3]
    assert ids("--symbol", "KRW-XRP") == []


def test_trades_list_json_and_csv_are_exact(tb_env: dict[str, str], ledger: str) -> None:
    out = run_cli(["trades", "list", "--format", "json", "--side", "sell"], tb_env)
    [row] = json.loads(out.stdout)
    assert row == {
        "id": 2, "client_order_id": "tb-00000002", "trade_id": "uuid-2", "symbol": "KRW-BTC", "side": "sell",
        "mode": "paper", "status": "completed", "price": "131500000", "amount": "0.00038461",
        "total": "50576.215", "fee": "25.2881075", "requested_krw": None, "requested_volume": "0.00038461",
        "error": None, "decision_id": None, "recovered": False, "created_at": "2026-11-21T02:05:00+00:00",
        "updated_at": row["updated_at"],
    }
    csv_out = run_cli(["trades", "list", "--format", "csv", "--status", "completed", "--mode", "paper"], tb_env)
    lines = csv_out.stdout.splitlines()
    assert lines[0] == ("id,client_order_id,trade_id,symbol,side,mode,status,price,amount,total,fee,requested_krw,"
                        "requested_volume,error,decision_id,recovered,created_at,updated_at")
    assert lines[1].startswith("2,tb-00000002,uuid-2,KRW-BTC,sell,paper,completed,131500000,0.00038461,50576.215,"
                               "25.2881075,,0.00038461,,,False,2026-11-21T02:05:00+00:00,")
    assert len(lines) == 3


def test_trades_list_empty(tb_env: dict[str, str]) -> None:
    j = run_cli(["trades", "list", "--format", "json"], tb_env)
    assert j.returncode == 0 and j.stdout == "[]\n"
    t = run_cli(["trades", "list"], tb_env)
    assert t.returncode == 0
    assert t.stdout.splitlines()[-1] == "No trades match these filters."
    assert t.stdout.splitlines()[0].startswith("ID  TIME (UTC)")


def test_trades_list_bad_options(tb_env: dict[str, str]) -> None:
    for args, word in ([["--since", "yesterday"], "--since"], [["--symbol", "BTC"], "--symbol"],
                       [["--side", "long"], "--side"], [["--limit", "0"], "--limit"]):
        out = run_cli(["trades", "list", *args], tb_env)
        assert out.returncode == 2, (args, out.stderr)
        assert word in out.stderr


@pytest.mark.parametrize("variable,value,expected", [
    ("DATABASE_URL", "mysql://x@y/z", "Error: DATABASE_URL must look like postgresql://user:password@host:5432/dbname"),
    ("DATABASE_URL", "postgresql+psycopg://u@h/db", "Error: DATABASE_URL uses the SQLAlchemy scheme"),
    ("DATABASE_URL", "postgresql://u@h:notaport/db", "Error: DATABASE_URL has an invalid port"),
    ("TRADEBOT_MODE", "yolo", "Error: TRADEBOT_MODE must be one of paper, live; got 'yolo'"),
    ("TRADEBOT_TICKER", "BTC", "Error: TRADEBOT_TICKER must be an Upbit market code like KRW-BTC"),
    ("TRADEBOT_MAX_ORDER_KRW", "lots", "Error: TRADEBOT_MAX_ORDER_KRW must be a number"),
    ("TRADEBOT_MIN_CONFIDENCE", "1.5", "Error: TRADEBOT_MIN_CONFIDENCE must be between 0 and 1"),
    ("UPBIT_API_URL", "ftp://x", "Error: UPBIT_API_URL must be an http(s) URL"),
    ("TELEGRAM_CHAT_ID", "my chat", "Error: TELEGRAM_CHAT_ID must be a numeric chat id"),
])
def test_config_errors_exit_2_naming_the_variable(tb_env: dict[str, str], variable: str, value: str, expected: str) -> None:
    for args in (["trades", "list"], ["init-db"], ["config", "show"]):
        out = run_cli(args, {**tb_env, variable: value})
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith(expected), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_env_file_is_read_and_environment_wins(tb_env: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "bot.env"
    env_file.write_text("TRADEBOT_TICKER=KRW-ETH\nTRADEBOT_MODE=live\nUPBIT_SECRET_KEY=SECRET-abcdefghijklmnopqrstuvwxyz\n")
    out = run_cli(["--env-file", str(env_file), "config", "show"], {**tb_env, "TRADEBOT_MODE": "paper"})
    assert out.returncode == 0, out.stderr
    assert "TRADEBOT_TICKER=KRW-ETH" in out.stdout and "TRADEBOT_MODE=paper" in out.stdout
    assert "UPBIT_SECRET_KEY=**** (set, 33 chars)" in out.stdout
    assert "SECRET-abc" not in out.stdout + out.stderr
    missing = run_cli(["--env-file", str(tmp_path / "nope.env"), "config", "show"], tb_env)
    assert missing.returncode == 2 and missing.stderr.startswith("Error: --env-file ")
    bad = tmp_path / "bad.env"
    bad.write_text("TRADEBOT_MODE=sideways\n")
    out = run_cli(["--env-file", str(bad), "init-db"], tb_env)
    assert out.returncode == 2 and out.stderr.startswith("Error: TRADEBOT_MODE must be one of paper, live")
    # The default is ./.env in the working directory, when it exists.
    (tmp_path / ".env").write_text("TRADEBOT_TICKER=KRW-XRP\n")
    out = run_cli(["config", "show"], tb_env, cwd=tmp_path)
    assert "TRADEBOT_TICKER=KRW-XRP" in out.stdout


def test_unreachable_database_names_host_and_port(tb_env: dict[str, str]) -> None:
    from tradebot.infra.localpg import free_port

    port = free_port()
    out = run_cli(["trades", "list"], {**tb_env, "DATABASE_URL": f"postgresql://bot:hunter2pass@127.0.0.1:{port}/tradebot"})
    assert out.returncode == 1
    assert out.stderr.startswith(f"Error: cannot connect to PostgreSQL at 127.0.0.1:{port}/tradebot: ")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "hunter2pass" not in out.stderr


def all_commands() -> list[list[str]]:
    import typer.main

    from tradebot.cli import app

    group = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        found.append(path)

    walk(group, [])
    return found


def test_every_command_has_help_text() -> None:
    from typer.testing import CliRunner

    from tradebot.cli import app

    commands = all_commands()
    assert ["init-db"] in commands and ["trades", "list"] in commands and ["doctor"] in commands
    import typer.main

    group = typer.main.get_command(app)
    for path in commands:
        cmd = group
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        assert (cmd.help or "").strip(), f"{' '.join(path)} has no help text"
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_help_lists_every_command_and_module_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "tradebot", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    top = {p[0] for p in all_commands() if len(p) == 1}
    for name in top:
        assert f"  {name}" in out.stdout, name


def test_help_imports_no_heavy_module() -> None:
    code = ("import sys, runpy; sys.argv=['tradebot','--help']\n"
            "try:\n    runpy.run_module('tradebot', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('anthropic', 'pyupbit', 'pandas', 'numpy', 'psycopg', 'requests', 'jwt') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="
