"""Issue 10, items 3-5: no secret leaks, no traceback for any input, no number read silently wrong.

Everything runs the real CLI: as a subprocess (``python -m tradebot``) for the scenarios, and in-process
through the console-script entry point ``tradebot.cli.main`` (``sys.argv`` and the environment set for the
call) for the property-based tests, which feed random text to every setting and to the main options.
The Upbit side of the leak test is the simulator behind a misbehaving proxy (tests/fakes/echo_proxy.py)
that echoes the request's ``Authorization: Bearer <JWT>`` in its errors, so the real adapter runs over HTTP.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, run_cli
from tests.fakes.echo_proxy import Echo, EchoingProxy
from tests.stack import live_services
from tradebot.config import ENV_NAMES, parse_number
from tradebot.infra.localpg import free_port

ACCESS = "ECHOACCESSKEY" + "a1b2c3d4e5" * 4
SECRET = "ECHOSECRETKEY" + "f6a7b8c9d0" * 6
ANTHROPIC_KEY = "fake-anthropic-ECHO-" + "K" * 40
BOT_TOKEN = "123456:ECHO-telegram-token-" + "T" * 20


def one_error_line(out: subprocess.CompletedProcess[str], code: int, starts: str) -> str:
    """The run exited ``code`` with exactly one stderr line, an ``Error:`` line starting with ``starts``."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    return lines[0]


def usage_error(out: subprocess.CompletedProcess[str], option: str) -> None:
    """A usage error (exit 2) naming ``option``, no traceback, and short (no megabytes of digits)."""
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Error:" in out.stderr and option in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr and len(out.stderr) < 1000, out.stderr


# ======================================================================== 3. secrets that still leak
DB_PW = "DBPASSWORDCANARY42"


@pytest.mark.parametrize(("variable", "value", "accepted"), [
    ("DATABASE_URL", f"postgresql://bot:{DB_PW}@127.0.0.1:5432/tradebot", True),
    ("DATABASE_URL", f"postgresql://bot@127.0.0.1:5432/tradebot?password={DB_PW}", True),
    ("DATABASE_URL", f"postgresql://bot@127.0.0.1:5432/tradebot?sslmode=disable&password=x&password={DB_PW}", True),
    ("DATABASE_URL", f"postgresql://bot@127.0.0.1:5432/tradebot?pass%77ord={DB_PW}", True),
    ("DATABASE_URL", f"postgresql://bot@127.0.0.1:5432/tradebot?%70assword={DB_PW}%21", True),
    ("DATABASE_URL", f"postgresql://bot@127.0.0.1:5432/tradebot?sslpassword={DB_PW}", True),
    ("DATABASE_URL", f"postgresql://:{DB_PW}@127.0.0.1/tradebot", True),
    ("DATABASE_URL", f"postgresql://bot:{DB_PW}@x@127.0.0.1/tradebot", True),  # libpq: password up to the first @
    ("DATABASE_URL", f"postgresql://bot@127.0.0.1/tradebot?PassWord={DB_PW}", False),  # libpq refuses the case
    ("UPBIT_API_URL", f"http://proxyuser:{DB_PW}@127.0.0.1:3128", True),
    ("TELEGRAM_API_URL", f"https://u:{DB_PW}@127.0.0.1", True),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_config_show_masks_every_password_form(tb_env: dict[str, str], variable: str, value: str, accepted: bool) -> None:
    out = run_cli(["config", "show"], {**tb_env, variable: value})
    assert DB_PW not in out.stdout + out.stderr, out.stdout + out.stderr
    if accepted:
        assert out.returncode == 0, out.stderr
        [line] = [ln for ln in out.stdout.splitlines() if ln.startswith(f"{variable}=")]
        assert "****" in line and "127.0.0.1" in line, line
    else:
        one_error_line(out, 2, f"Error: {variable} ")


@pytest.fixture
def live(tb_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Any, Any, Any, dict[str, str]]]:
    with live_services(tb_env, tmp_path / "metrics", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_LLM_MAX_RETRIES="0",
                       TRADEBOT_LLM_TIMEOUT_S="5", TRADEBOT_ORDER_POLL_TIMEOUT_S="5") as stack:
        yield stack


def test_a_jwt_echoed_by_a_misbehaving_endpoint_never_leaks(live: Any, db_url: str) -> None:
    sim, model, telegram, env = live
    buy = {"decision": "buy", "confidence": 0.9, "fraction": 0.5, "reason": "test"}
    seen: list[tuple[str, str]] = []
    scenarios: list[tuple[str, list[Echo], list[str], int, bool]] = [
        # (label, what the proxy breaks, command, exit code, the model answers buy)
        ("accounts 401 (JSON echo)", [Echo("GET", "/v1/accounts", 401)], ["run-cycle"], 1, False),
        ("accounts 401, --json", [Echo("GET", "/v1/accounts", 401)], ["run-cycle", "--json"], 1, False),
        ("order POST 400 (JSON echo)", [Echo("POST", "/v1/orders", 400)], ["run-cycle"], 1, True),
        ("order POST 400 (JWT as the error name)", [Echo("POST", "/v1/orders", 400, "json_name")], ["run-cycle"], 1, True),
        ("ticker 404 (JSON echo)", [Echo("GET", "/v1/ticker", 404)], ["run-cycle"], 1, False),
        ("accounts 502 (text echo)", [Echo("GET", "/v1/accounts", 502, "text")], ["run-cycle"], 1, False),
        ("doctor, accounts 401", [Echo("GET", "/v1/accounts", 401)], ["doctor"], 1, False),
        ("reconcile, closed orders 401", [Echo("GET", "/v1/orders/closed", 401)], ["reconcile"], 1, False),
    ]
    echoed = 0
    for label, rules, args, code, answers_buy in scenarios:
        if answers_buy:
            model.enqueue_tool_answer(buy)
        with EchoingProxy(sim.url, rules) as proxy:
            out = run_cli(args, {**env, "UPBIT_API_URL": proxy.url})
        echoed += proxy.echoed
        assert out.returncode == code, (label, out.stdout, out.stderr)
        assert "Traceback" not in out.stdout + out.stderr, (label, out.stderr)
        seen += [(f"{label}: stdout", out.stdout), (f"{label}: stderr", out.stderr)]
    assert echoed >= len(scenarios)  # the proxy really offered the JWT to the client every time
    assert sim.orders() == []
    failed = [r for r in _rows(db_url) if r[0] == "trades"]
    assert len(failed) == 2 and all('"failed"' in r[1] for r in failed)  # the two rejected orders
    seen += [(f"table {t}", text) for t, text in _rows(db_url)]
    seen += [(f"telegram {i}", json.dumps(r.body)) for i, r in enumerate(telegram.requests)]
    assert sum("failed" in t for t in telegram.texts) >= 6
    leaks = [f"{needle!r} in {where}: {text[max(0, text.index(needle) - 60):text.index(needle) + 40]!r}"
             for where, text in seen for needle in ("eyJ", "Bearer ", ACCESS, SECRET) if needle in text]
    assert not leaks, "\n".join(leaks)


def _rows(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
        return [(t, text) for t in tables for (text,) in conn.execute(f'SELECT row_to_json(x)::text FROM "{t}" x')]


def _doctor_env_line(tb_env: dict[str, str], env_file: Path) -> str:
    env = {**tb_env, "TRADEBOT_ADVISOR": "rules", "UPBIT_API_URL": f"http://127.0.0.1:{free_port()}"}
    out = run_cli(["--env-file", str(env_file), "doctor"], env, timeout=60)
    assert "Traceback" not in out.stdout + out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if "env file permissions" in ln]
    return line


@pytest.mark.parametrize("case", ["private", "owned by another user", "world-writable directory",
                                  "sticky world-writable directory", "group-writable directory",
                                  "directory owned by another user"])
def test_doctor_calls_the_env_file_private_only_when_no_one_else_can_touch_it(tb_env: dict[str, str], tmp_path: Path,
                                                                              case: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    directory = tmp_path / "conf"
    directory.mkdir(mode=0o700)
    env_file = directory / "tradebot.env"
    env_file.write_text("TRADEBOT_TICKER=KRW-BTC\n")
    env_file.chmod(0o600)
    nobody = 65534
    mode = {"world-writable directory": 0o777, "sticky world-writable directory": 0o1777,
            "group-writable directory": 0o770}.get(case)
    if mode is not None:
        directory.chmod(mode)
    if case == "owned by another user":
        os.chown(env_file, nobody, -1)
    if case == "directory owned by another user":
        os.chown(directory, nobody, -1)
    line = _doctor_env_line(tb_env, env_file)
    if case == "private":
        assert line == f"✓ env file permissions: {env_file} is private (-rw-------)"
        return
    assert line.startswith("! env file permissions: ") and "private" not in line, line
    expected = {
        "owned by another user": f"{env_file} is owned by nobody, not by root who runs tradebot, so that user can change it"
                                 f" — chown root {env_file}",
        "world-writable directory": f"its directory {directory} may be written by group or others (drwxrwxrwx)",
        "sticky world-writable directory": f"its directory {directory} may be written by group or others (drwxrwxrwt)",
        "group-writable directory": f"its directory {directory} may be written by group or others (drwxrwx---)",
        "directory owned by another user": f"its directory {directory} is owned by nobody, who can replace what is in it",
    }[case]
    assert expected in line, line
    if "writ" in case:
        assert f"chmod go-w {directory}" in line


def test_doctor_says_nothing_false_about_a_device_env_file(tb_env: dict[str, str]) -> None:
    line = _doctor_env_line(tb_env, Path("/dev/null"))
    assert line == "✓ env file permissions: /dev/null is not a regular file (crw-rw-rw-), so no secret is kept in it"


# ==================================================================== 4. tracebacks instead of Error lines
@pytest.mark.parametrize(("variable", "value", "message"), [
    ("DATABASE_URL", "postgresql://u:p@[::1:5432/db", "has a malformed host"),
    ("DATABASE_URL", "postgresql://u:p@[zz]:5432/db", "has a malformed host"),
    ("DATABASE_URL", "postgresql://u@127.0.0.1:99999/db", "has an invalid port"),
    ("DATABASE_URL", "postgresql://u@127.0.0.1:0/db", "has an invalid port"),
    ("UPBIT_API_URL", "http://[::1", "has a malformed IPv6 address"),
    ("ANTHROPIC_BASE_URL", "http://[::1", "has a malformed IPv6 address"),
    ("TELEGRAM_API_URL", "http://[::1", "has a malformed IPv6 address"),
    ("UPBIT_API_URL", "http://::1]:8765", "has a malformed IPv6 address"),
    ("UPBIT_API_URL", "http://127.0.0.1:99999", "has an invalid port"),
    ("ANTHROPIC_BASE_URL", "http://[::1]:70000", "has an invalid port"),
    ("TELEGRAM_API_URL", "https://127.0.0.1:0", "has an invalid port"),
    ("UPBIT_API_URL", "http://127.0.0.1:８７", "has an invalid port"),
    ("UPBIT_API_URL", "http://127.0.0.1: 80", "must be an http(s) URL like https://api.upbit.com without spaces"),
    ("UPBIT_API_URL", "http://:8765", "has no host"),
    ("TELEGRAM_API_URL", "http://" + "a" * 70 + ".example", "has an invalid host name"),
])
def test_broken_urls_are_configuration_errors(tb_env: dict[str, str], variable: str, value: str, message: str) -> None:
    out = run_cli(["config", "show"], {**tb_env, variable: value})
    line = one_error_line(out, 2, f"Error: {variable} {message}")
    assert "p@" not in line  # a DATABASE_URL is never quoted (it may hold a password)


def test_an_out_of_range_port_stops_run_cycle_at_load_time(tb_env: dict[str, str]) -> None:
    out = run_cli(["run-cycle"], {**tb_env, "UPBIT_API_URL": "http://127.0.0.1:99999", "TRADEBOT_ADVISOR": "rules"})
    one_error_line(out, 2, "Error: UPBIT_API_URL has an invalid port")
    assert out.stdout == ""  # nothing ran: before, the cycle failed at run time ("InvalidURL")


@pytest.mark.parametrize("variable", ["TRADEBOT_STATE_DIR", "TRADEBOT_METRICS_DIR"])
@pytest.mark.parametrize(("value", "message"), [
    ("~nouser/x", "starts with ~ but user 'nouser' has no home directory here"),
    ("relative/state", "must be an absolute path"),
    ("./state", "must be an absolute path"),
    ("/proc/self", "points into /proc"),
    ("/sys/kernel/x", "points into /sys"),
    ("/dev/shm/tradebot", "points into /dev"),
    ("/tmp/../proc/1", "points into /proc"),
    ("LINK-TO-PROC", "points into /proc"),  # a symlink to /proc/self
])
def test_unusable_state_and_metrics_directories_are_configuration_errors(tb_env: dict[str, str], tmp_path: Path,
                                                                          variable: str, value: str, message: str) -> None:
    if value == "LINK-TO-PROC":
        value = str(tmp_path / "to-proc")
        os.symlink("/proc/self", value)
    for args in (["config", "show"], ["run-cycle"]):
        out = run_cli(args, {**tb_env, variable: value, "TRADEBOT_ADVISOR": "rules"})
        one_error_line(out, 2, f"Error: {variable} {message}")
    assert not (tmp_path / "relative").exists() and not (tmp_path / "state").exists()


def test_the_state_directory_must_not_be_a_file_but_the_metrics_one_may_be_at_load_time(tb_env: dict[str, str],
                                                                                        tmp_path: Path) -> None:
    out = run_cli(["config", "show"], {**tb_env, "TRADEBOT_STATE_DIR": "/etc/passwd"})
    one_error_line(out, 2, "Error: TRADEBOT_STATE_DIR is not a directory (/etc/passwd is a file)")
    out = run_cli(["config", "show"], {**tb_env, "TRADEBOT_STATE_DIR": "/etc/passwd/state"})
    one_error_line(out, 2, "Error: TRADEBOT_STATE_DIR is inside a file, not a directory")
    # Metrics failures never stop trading: a file there is the cycle's warning (tests/test_reliability.py).
    out = run_cli(["config", "show"], {**tb_env, "TRADEBOT_METRICS_DIR": "/etc/passwd"})
    assert out.returncode == 0 and "TRADEBOT_METRICS_DIR=/etc/passwd" in out.stdout, out.stderr
    # A directory that does not exist yet is fine: it is created when first needed.
    later = tmp_path / "not" / "yet"
    out = run_cli(["config", "show"], {**tb_env, "TRADEBOT_STATE_DIR": str(later), "TRADEBOT_METRICS_DIR": str(later)})
    assert out.returncode == 0 and f"TRADEBOT_STATE_DIR={later}" in out.stdout, out.stderr
    assert not later.exists()


def test_a_relative_default_state_directory_is_refused_too(tb_env: dict[str, str], tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root's default state directory is /var/lib/tradebot, whatever HOME says")
    env = {k: v for k, v in tb_env.items() if k != "TRADEBOT_STATE_DIR"}
    out = run_cli(["config", "show"], {**env, "HOME": "relative-home", "XDG_STATE_HOME": "also-relative"}, cwd=tmp_path)
    one_error_line(out, 2, "Error: TRADEBOT_STATE_DIR must be an absolute path")


INSERT_TRADE = """INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
                  requested_krw, created_at)
                  VALUES ('tb-far-1', 'uuid-far-1', 'KRW-BTC', 'buy', 'paper', 'completed', 130000000, 0.00038461,
                          49999.3, 24.99965, 50000, '2026-11-20T01:05:00Z')"""


def test_far_dates_work_or_are_usage_errors(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(INSERT_TRADE)
    for args in (["--until", "9999-12-31"], ["--since", "0001-01-01"], ["--since", "0001-01-01T00:00:00+01:00"],
                 ["--until", "9999-12-31T23:59:59-05:00"], ["--since", "2026-01-01", "--until", "9999-12-31"]):
        out = run_cli(["trades", "list", "--format", "json", *args], tb_env)
        assert out.returncode == 0, (args, out.stderr)
        assert [t["client_order_id"] for t in json.loads(out.stdout)] == ["tb-far-1"], args  # no upper bound in effect
        out = run_cli(["pnl", "--format", "json", "--at", "140,000,000", *args], tb_env)
        assert out.returncode == 0, (args, out.stderr)
        assert [r["buys"] for r in json.loads(out.stdout)] == [1], args
    for args in (["--until", "0001-01-01"], ["--since", "9999-12-31"], ["--since", "9999-12-31T23:59:59-05:00"]):
        out = run_cli(["trades", "list", "--format", "json", *args], tb_env)
        assert out.returncode == 0 and json.loads(out.stdout) == [], (args, out.stderr)
    # A backtest before Upbit had KRW markets is meaningless: a usage error that says so.
    for args, option in ((["--since", "0001-01-01", "--until", "0001-01-03"], "--since"),
                         (["--until", "0001-01-03", "--days", "2"], "--until"),
                         (["--since", "2017-09-24"], "--since")):
        out = run_cli(["backtest", *args], tb_env)
        usage_error(out, option)
        assert "2017-09-25, when Upbit opened its KRW markets" in out.stderr
    # A far --until of a backtest over a file: no upper bound, so the period ends with the file.
    csv_file = candles_csv(tmp_path / "c.csv")
    out = run_cli(["backtest", "--csv", str(csv_file), "--until", "9999-12-31", "--format", "json"], tb_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["last_candle"].startswith("2024-01-30T23:00")


def candles_csv(path: Path, days: int = 30) -> Path:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = ["time,open,high,low,close,volume"]
    price = 50_000_000
    for h in range(days * 24):
        step = (h * 7919) % 13 - 6
        o, c = price, price + step * 20_000
        rows.append(f"{(start + timedelta(hours=h)).isoformat()},{o},{max(o, c) + 10_000},{min(o, c) - 10_000},{c},1.5")
        price = c
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("at", ["1e99999999", "1e999999", "0", "-5", "1e13", "1000000000001", "0.000000001",
                                "Infinity", "NaN", "1" * 5000])
def test_pnl_at_is_bounded_like_every_price(tb_env: dict[str, str], at: str) -> None:
    usage_error(run_cli(["pnl", "--at", at], tb_env), "--at")


@pytest.mark.parametrize("at", ["1e12", "1,000,000,000,000", "0.00000001", "140,000,000"])
def test_pnl_at_inside_the_bounds_is_accepted(tb_env: dict[str, str], at: str) -> None:
    out = run_cli(["pnl", "--at", at], tb_env)
    assert out.returncode == 0, out.stderr


def test_amounts_of_krw_have_the_bounds_of_tradebot_paper_krw(tb_env: dict[str, str], tmp_path: Path) -> None:
    for krw in ("1e400", "1000000000001", "-1", "NaN", "Infinity"):
        usage_error(run_cli(["paper", "reset", "--krw", krw], tb_env), "--krw")
        usage_error(run_cli(["backtest", "--csv", str(tmp_path / "none.csv"), "--starting-krw", krw], tb_env),
                    "--starting-krw")
        # Before, the simulator accepted 1e400 and served: the timeout would fail this test.
        usage_error(run_cli(["simulator", "--port", "0", "--starting-krw", krw], tb_env, timeout=30), "--starting-krw")
    env = {**tb_env, "TRADEBOT_MODE": "paper"}
    out = run_cli(["paper", "reset", "--krw", "1e12"], env)
    assert out.returncode == 0 and out.stdout.strip() == "Paper account reset to 1,000,000,000,000 KRW.", out.stderr
    out = run_cli(["paper", "reset", "--krw", "0"], env)
    assert out.returncode == 0 and out.stdout.strip() == "Paper account reset to 0 KRW.", out.stderr


def test_env_file_that_is_binary_empty_a_device_or_missing(tb_env: dict[str, str], tmp_path: Path) -> None:
    binary = tmp_path / "binary.env"
    binary.write_bytes(bytes(range(256)) * 4)
    out = run_cli(["--env-file", str(binary), "config", "show"], tb_env)
    line = one_error_line(out, 2, f"Error: --env-file {binary} is not a text file")
    assert "permissions" not in line
    latin1 = tmp_path / "latin1.env"
    latin1.write_bytes("# caf\xe9\nTRADEBOT_TICKER=KRW-ETH\n".encode("latin-1"))
    one_error_line(run_cli(["--env-file", str(latin1), "config", "show"], tb_env), 2, f"Error: --env-file {latin1} is not a text file")
    for empty in (Path("/dev/null"), tmp_path / "empty.env"):
        if empty.name == "empty.env":
            empty.write_text("")
        out = run_cli(["--env-file", str(empty), "config", "show"], tb_env)
        assert out.returncode == 0 and out.stdout.startswith(f"# env file: {empty}\n"), out.stderr
    out = run_cli(["--env-file", "/dev/zero", "config", "show"], tb_env, timeout=30)
    one_error_line(out, 2, "Error: --env-file /dev/zero is larger than 1 MB")
    one_error_line(run_cli(["--env-file", str(tmp_path / "nope.env"), "config", "show"], tb_env), 2,
                   f"Error: --env-file {tmp_path / 'nope.env'} does not exist")


CRASHING = textwrap.dedent('''
    import os
    import sys
    import tradebot.cli as cli

    @cli.app.command("explode")
    def explode() -> None:
        """A command that fails in a way nobody planned for (BOOM says how)."""
        if os.environ.get("BOOM") == "interrupt":
            raise KeyboardInterrupt
        raise RuntimeError("boom with " + os.environ.get("BOOM", ""))

    sys.argv = ["tradebot", *sys.argv[1:], "explode"]
    cli.main()
''')


def run_crashing(env: dict[str, str], *global_options: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, with one extra command that raises what BOOM says."""
    return subprocess.run([sys.executable, "-c", CRASHING, *global_options], env=env, capture_output=True, text=True,
                          timeout=60)


def test_an_unexpected_exception_prints_one_line_and_leaves_a_private_scrubbed_crash_report(tb_env: dict[str, str],
                                                                                           tmp_path: Path) -> None:
    state = Path(tb_env["TRADEBOT_STATE_DIR"])
    state.mkdir(mode=0o700)
    env_file = tmp_path / "bot.env"
    env_file.write_text(f"UPBIT_SECRET_KEY={SECRET}\n")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJhY2Nlc3Nfa2V5IjoiYWJjIn0.c2lnbmF0dXJl"
    env = {**tb_env, "UPBIT_ACCESS_KEY": ACCESS, "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
           "DATABASE_URL": f"postgresql://bot:{DB_PW}@127.0.0.1:1/tradebot"}
    leaked = [ACCESS, SECRET, BOT_TOKEN, ANTHROPIC_KEY, DB_PW, jwt, "Bearer "]
    # The exception's text carries every secret (the env file's too), a JWT and a bearer header.
    boom = " | ".join([ACCESS, SECRET, BOT_TOKEN, ANTHROPIC_KEY, f"postgresql://bot:{DB_PW}@127.0.0.1:1/tradebot",
                       f"Authorization: Bearer {jwt}", jwt])
    out = run_crashing({**env, "BOOM": boom}, "--env-file", str(env_file))
    assert out.returncode == 1 and out.stdout == "", out.stderr
    m = re.fullmatch(r"Error: unexpected RuntimeError in `tradebot explode`; the traceback was written to (\S+)\n",
                     out.stderr)
    assert m, out.stderr
    report = Path(m.group(1))
    assert report.parent == state and re.fullmatch(r"crash-\d{8}T\d{6}Z-\d+\.txt", report.name), report
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    text = report.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom with" in text
    assert "command: tradebot explode" in text and text.count("[redacted]") >= 6
    for secret in leaked:
        assert secret not in text and secret not in out.stderr, secret

    # The state directory cannot take it: a private temporary file instead.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = run_crashing({**tb_env, "TRADEBOT_STATE_DIR": str(tmp_path / "missing"), "TMPDIR": str(scratch)})
    m = re.fullmatch(r"Error: unexpected RuntimeError in `tradebot explode`; the traceback was written to (\S+)\n",
                     out.stderr)
    assert out.returncode == 1 and m, out.stderr
    report = Path(m.group(1))
    assert report.parent == scratch and stat.S_IMODE(report.stat().st_mode) == 0o600
    assert "RuntimeError" in report.read_text()


def test_ctrl_c_is_one_line_and_exit_130(tb_env: dict[str, str]) -> None:
    out = run_crashing({**tb_env, "BOOM": "interrupt"})
    assert out.returncode == 130 and out.stderr == "Error: interrupted\n", out.stderr


def test_python_m_tradebot_and_the_console_script_both_go_through_main() -> None:
    assert "main()" in (ROOT / "tradebot" / "__main__.py").read_text()
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "tradebot"]
    assert script.value == "tradebot.cli:main"


# ============================================================================== 5. numbers read silently wrong
@pytest.mark.parametrize(("variable", "value", "shown"), [
    ("TRADEBOT_ORDER_POLL_TIMEOUT_S", "1,2,3", None),
    ("TRADEBOT_MAX_ORDER_KRW", "12,34", None),
    ("TRADEBOT_MAX_ORDER_KRW", "5,0000", None),
    ("TRADEBOT_MAX_ORDER_KRW", "50,000.000,5", None),
    ("TRADEBOT_MAX_ORDER_KRW", "50,000_000", None),
    ("TRADEBOT_MAX_ORDER_KRW", "５０", None),
    ("TRADEBOT_MAX_ORDER_KRW", "٥٠٠٠٠", None),
    ("TELEGRAM_CHAT_ID", "１２３", None),
    ("TELEGRAM_CHAT_ID", "-１００１２３", None),
    ("TRADEBOT_HOURLY_CANDLES", "１００", None),
    ("TRADEBOT_HOURLY_CANDLES", "1_0_0", None),
    ("TRADEBOT_LLM_MAX_RETRIES", "²", None),
    ("TRADEBOT_MAX_ORDER_KRW", "50,000", "50000"),
    ("TRADEBOT_PAPER_KRW", "1,000,000.5", "1000000.5"),
    ("TRADEBOT_PAPER_KRW", "2_000_000", "2000000"),
    ("TRADEBOT_HOURLY_CANDLES", "1,000", "1000"),
    ("TELEGRAM_CHAT_ID", "-100123", "-100123"),
])
def test_numbers_are_read_exactly_or_refused(tb_env: dict[str, str], variable: str, value: str, shown: str | None) -> None:
    out = run_cli(["config", "show"], {**tb_env, variable: value})
    if shown is None:
        one_error_line(out, 2, f"Error: {variable} ")
    else:
        assert out.returncode == 0 and f"{variable}={shown}\n" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize(("args", "option"), [
    (["pnl", "--at", "1,2,3"], "--at"),
    (["pnl", "--at", "５０"], "--at"),
    (["paper", "reset", "--krw", "12,34"], "--krw"),
    (["paper", "reset", "--krw", "１０００"], "--krw"),
    (["backtest", "--csv", "x.csv", "--starting-krw", "1,0,0,0,0,0,0"], "--starting-krw"),
    (["backtest", "--csv", "x.csv", "--starting-krw", "５０００００"], "--starting-krw"),
    (["simulator", "--port", "0", "--starting-krw", "1,2,3"], "--starting-krw"),
    (["trades", "list", "--limit", "1_0"], "--limit"),  # Typer's own int read it as 10
    (["reconcile", "--days", "1_0"], "--days"),
    (["backtest", "--csv", "x.csv", "--days", "3_0"], "--days"),
])
def test_number_options_are_read_like_settings(tb_env: dict[str, str], args: list[str], option: str) -> None:
    usage_error(run_cli(args, tb_env, timeout=30), option)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=Decimal(-10**15), max_value=Decimal(10**15)))
def test_grouped_numbers_read_back_exactly(d: Decimal) -> None:
    assert parse_number(f"{d:,f}") == d
    assert parse_number(f"{d:f}") == d


@given(st.text(st.characters(codec="utf-8"), max_size=20))
def test_parse_number_refuses_what_is_not_plainly_a_number(text: str) -> None:
    try:
        value = parse_number(text)
    except ValueError as e:
        assert str(e)
        return
    core = text.strip()
    assert core.isascii() and value.is_finite()
    assert all(c.isdigit() or c in "+-.,_eE" for c in core)
    for sep in ",_":
        if sep in core:  # groups of exactly three digits after the first one
            whole = core.lstrip("+-").split(".")[0].split("e")[0].split("E")[0]
            groups = whole.split(sep)
            assert 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]), text


# ========================================================== property-based: random input never gives a traceback
@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_main(args: list[str], env: dict[str, str], cwd: Path) -> Outcome:
    """One run of the console-script entry point, in this process, with ``args`` and exactly ``env``."""
    from tradebot.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with mock.patch.dict(os.environ, env, clear=True), mock.patch.object(sys, "argv", ["tradebot", *args]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd):
        try:
            main()
        except SystemExit as e:
            code = e.code
    return Outcome(code if isinstance(code, int) else (0 if code is None else 1), out.getvalue(), err.getvalue())


def assert_clean(o: Outcome, what: object) -> None:
    """The property: no traceback, no unexpected exception, exit 0, 1 or 2, and an Error: line on 2."""
    text = o.out + o.err
    assert "Traceback" not in text, (what, text[-2000:])
    assert "Error: unexpected" not in o.err, (what, o.err)
    assert o.code in (0, 1, 2), (what, o.code, o.err)
    if o.code == 2:
        assert "Error:" in o.err, (what, o.err)


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
UNDECODABLE = st.text(st.sampled_from(["\udcff", "\udc80", "\udce9", "a", "/", "1"]), min_size=1, max_size=6)
NUMBERISH = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.integers(min_value=-10**30, max_value=10**30).map(lambda n: f"{n:,}"),
    st.floats().map(repr),
    st.integers(0, 10**9).map(lambda n: f"1e{n}"),
    st.lists(st.integers(0, 99999), min_size=1, max_size=5).map(lambda xs: ",".join(map(str, xs))),
    st.text("0123456789,._-+eE ", max_size=15),
    st.text("０１２３٤٥५²", min_size=1, max_size=4),
)
BRACKETS = st.text("[]{}()<>:/@?#%~\\'\" ", min_size=1, max_size=10)


def paths(tmp: Path) -> st.SearchStrategy[str]:
    """Paths of every kind; the absolute ones that could be written to stay inside ``tmp``."""
    return st.one_of(
        st.sampled_from(["~nouser/x", "~nouser", "~", "~/state", "rel/x", ".", "..", "/proc/self", "/proc", "/sys",
                         "/sys/kernel", "/dev/null", "/dev", "/dev/shm/x", "/etc/passwd", "/etc/passwd/x", "",
                         "/tmp/../proc/self"]),
        TEXT.filter(lambda t: ".." not in t).map(lambda t: f"{tmp}/{t}"),
        TEXT.filter(lambda t: not t.strip().startswith(("/", "~"))),
    )


def urls(local_only: bool) -> st.SearchStrategy[str]:
    hosts = ["127.0.0.1", "[::1]", "[::1", "::1]", "[", "]", "[zz]", "", "u:p@127.0.0.1", "127.0.0.1:1:2", "%"]
    if not local_only:
        hosts += ["localhost", "ä.example", "a..b", "x" * 70, "example.com"]
    ports = st.one_of(st.just(""), st.integers(-5, 10**6).map(lambda p: f":{p}"), TEXT.map(lambda t: ":" + t))
    built = st.builds(lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
                      st.sampled_from(["http", "https", "ftp", "postgresql", "postgres", "HTTP", ""]),
                      st.sampled_from(hosts), ports, st.one_of(st.just(""), TEXT.map(lambda t: "/" + t)))
    return st.one_of(built, TEXT, BRACKETS)


def setting_values(name: str, tmp: Path, *, local_only: bool) -> st.SearchStrategy[str]:
    kinds = [TEXT, UNDECODABLE, NUMBERISH, BRACKETS, urls(local_only=True)]
    if name in ("TRADEBOT_STATE_DIR", "TRADEBOT_METRICS_DIR"):
        return st.one_of(paths(tmp), UNDECODABLE.map(lambda t: f"{tmp}/{t}"))
    if name.endswith(("_URL",)):
        kinds.append(urls(local_only))
    return st.one_of(*kinds)


@pytest.fixture
def prop_env(tb_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The base environment of the property tests: nothing on the network answers, HOME is a scratch directory."""
    (tmp_path / "home").mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    return {**tb_env, "HOME": str(tmp_path / "home"), "UPBIT_API_URL": dead, "ANTHROPIC_BASE_URL": dead,
            "TELEGRAM_API_URL": dead, "TRADEBOT_ADVISOR": "rules", "TRADEBOT_MODE": "paper"}


PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_random_settings_never_give_a_traceback(prop_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    names = sorted(ENV_NAMES.values())

    @settings(PROPERTY, max_examples=800)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        # One to three settings at once, each with a value of any kind.
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        env = dict(prop_env)
        for name in chosen:
            env[name] = data.draw(setting_values(name, tmp_path, local_only=False), label=name)
        o = run_main(["config", "show"], env, work)
        assert_clean(o, {n: env[n] for n in chosen})
        if o.code == 2:
            assert any(f"Error: {n} " in o.err for n in chosen), (chosen, o.err)  # it names the setting

    check()
    assert not list(work.iterdir())  # nothing was created relative to the working directory


def test_random_main_options_never_give_a_traceback(prop_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    csv_file = candles_csv(tmp_path / "candles.csv")
    # Each option is mostly plausible (so that most runs get past parsing) and sometimes anything at all.
    plausible_when = st.one_of(
        st.dates(min_value=date(2017, 9, 25), max_value=date(2030, 1, 1)).map(str),
        st.datetimes(min_value=datetime(2017, 9, 25), max_value=datetime(2030, 1, 1),
                     timezones=st.just(UTC) | st.none()).map(lambda d: d.isoformat()),
        st.sampled_from(["9999-12-31", "0001-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00",
                         "2024-01-05", "2024-01-20T10:00", "2017-09-25", "2017-09-24", "2024-01-10Z",
                         "2024-01-05T00:00:00+14:00", "2024-01-31T23:59:59.999999-12:00"]))
    plausible_amount = st.one_of(
        st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**12), places=8).map(str),
        st.integers(1, 10**12).map(lambda n: f"{n:,}"))
    plausible_count = st.integers(1, 3650).map(str)
    plausible_symbol = st.sampled_from(["KRW-BTC", "krw-eth", "KRW-XRP"])
    wild = st.one_of(TEXT, UNDECODABLE, NUMBERISH, BRACKETS,
                     st.datetimes(timezones=st.just(UTC) | st.none()).map(lambda d: d.isoformat()))
    opt = lambda name, values: st.one_of(st.just([]), values.map(lambda v: [name, v]))  # noqa: E731

    def commands(when: Any, amount: Any, count: Any, symbol: Any) -> Any:
        return st.one_of(
            st.tuples(st.just(["trades", "list"]), opt("--since", when), opt("--until", when), opt("--limit", count),
                      opt("--symbol", symbol), opt("--format", st.sampled_from(["table", "json", "csv"]))),
            st.tuples(st.just(["pnl"]), opt("--at", amount), opt("--since", when), opt("--until", when),
                      opt("--symbol", symbol), opt("--by", st.sampled_from(["day", "week", "month"]))),
            st.tuples(st.just(["paper", "reset"]), opt("--krw", amount)),
            st.tuples(st.just(["backtest", "--csv", str(csv_file), "--format", "json"]), opt("--since", when),
                      opt("--until", when), opt("--days", count), opt("--market", symbol),
                      opt("--starting-krw", amount)),
        )

    # Half the runs get plausible values only (so they reach the database and the backtest), half anything.
    plausible = commands(plausible_when, plausible_amount, plausible_count, plausible_symbol)
    anything = commands(*(st.one_of(p, wild) for p in (plausible_when, plausible_amount, plausible_count,
                                                        plausible_symbol)))

    @settings(PROPERTY, max_examples=600)
    @given(st.one_of(plausible, anything))
    def check(parts: tuple[list[str], ...]) -> None:
        args = [a for part in parts for a in part]
        assert_clean(run_main(args, prop_env, work), args)

    check()
    assert not list(work.iterdir())


def test_a_notice_after_an_earlier_run_swapped_stderr_is_printed_not_a_logging_error(prop_env: dict[str, str],
                                                                                     tmp_path: Path) -> None:
    """Found by the property below: an earlier in-process run (Typer's test runner, which closes its stand-in
    stderr) left the log handlers writing to a closed stream, so the embedded server's "note:" became a logging
    error with a traceback. The handlers write to the stderr of the moment."""
    from typer.testing import CliRunner

    from tradebot.cli import app

    work = tmp_path / "cwd"
    work.mkdir()
    assert CliRunner().invoke(app, ["config", "show"], env=prop_env).exit_code == 0
    o = run_main(["run-cycle"], {**prop_env, "DATABASE_URL": "", "TRADEBOT_STATE_DIR": str(tmp_path / "state")}, work)
    assert_clean(o, "DATABASE_URL=''")
    assert "note: creating the embedded PostgreSQL in" in o.err


def test_run_cycle_with_a_random_setting_never_gives_a_traceback(prop_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    names = sorted(ENV_NAMES.values())

    @settings(PROPERTY, max_examples=16)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(names))
        env = {**prop_env, name: data.draw(setting_values(name, tmp_path, local_only=True), label=name)}
        o = run_main(["run-cycle"], env, work)
        assert_clean(o, {name: env[name]})

    check()
