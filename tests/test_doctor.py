"""``tradebot doctor`` end to end: the real CLI as a subprocess against the Upbit simulator, the fake Anthropic
and Telegram servers (in-process threads) and a real PostgreSQL. Every case also checks that doctor placed
no order, sent no message, generated no tokens and printed none of the secrets."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.telegram_server import FakeTelegram
from tests.stack import live_services
from tradebot.exchange.simulator import SimulatorServer
from tradebot.store.db import code_schema_version, describe_target

ACCESS = "doctor-upbit-ACCESS-key-" + "A" * 40
SECRET = "doctor-upbit-SECRET-key-" + "S" * 64  # ≥ 64 chars, like a real Upbit secret
WRONG_SECRET = "doctor-upbit-WRONG-secret-" + "W" * 64
ANTHROPIC_KEY = "fake-anthropic-doctor-" + "K" * 40
WRONG_ANTHROPIC_KEY = "fake-anthropic-doctor-WRONG-" + "X" * 40
BOT_TOKEN = "987654:DOCTOR-telegram-token-" + "T" * 20
WRONG_BOT_TOKEN = "987654:DOCTOR-WRONG-token-" + "Z" * 20
SECRETS = (ACCESS, SECRET, WRONG_SECRET, ANTHROPIC_KEY, WRONG_ANTHROPIC_KEY, BOT_TOKEN, WRONG_BOT_TOKEN)

# Importing anthropic costs ~1.5 s per run: the cases that are not about Anthropic use the rules advisor.
RULES = {"TRADEBOT_ADVISOR": "rules"}

ALL_CHECKS = ["configuration", "state directory", "metrics directory", "database", "schema", "upbit market data",
              "upbit account", "anthropic", "telegram"]


@dataclass
class Stack:
    sim: SimulatorServer
    model: FakeAnthropic
    telegram: FakeTelegram
    env: dict[str, str]
    db_url: str
    tmp: Path

    def doctor(self, *args: str, unset: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in {**self.env, **env}.items() if k not in unset}
        out = run_cli([*args, "doctor"], full, timeout=60)
        self.assert_harmless(out)
        return out

    def assert_harmless(self, out: subprocess.CompletedProcess[str]) -> None:
        """Whatever the outcome: no order, no message, no generated tokens, no secret in the output."""
        assert self.sim.orders() == []
        assert self.telegram.messages == [] and self.telegram.texts == []
        assert all(r.path.endswith("/getMe") for r in self.telegram.requests)
        assert all(r.method == "GET" and r.path.startswith("/v1/models") for r in self.model.requests)
        for secret in SECRETS:
            assert secret not in out.stdout and secret not in out.stderr


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN) as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, tmp_path)


def lines(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Check name → its whole line."""
    found: dict[str, str] = {}
    for line in out.stdout.splitlines():
        name = line[2:].split(":", 1)[0]
        assert line[:2] in ("✓ ", "✗ ", "! ") and name not in found, out.stdout
        found[name] = line
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_everything_fine_in_live_mode(stack: Stack) -> None:
    out = stack.doctor()
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr == ""
    found = lines(out)
    assert list(found) == ALL_CHECKS
    assert all(line.startswith("✓ ") for line in found.values()), out.stdout
    assert found["configuration"] == "✓ configuration: live mode, KRW-BTC, advisor claude, from the environment (no env file)"
    assert found["database"] == f"✓ database: connected to {describe_target(stack.db_url)}"
    assert found["schema"] == f"✓ schema: version {code_schema_version()}"
    assert found["upbit account"] == "✓ upbit account: 1 balance, free KRW 1,000,000"
    assert found["upbit market data"].startswith("✓ upbit market data: KRW-BTC last price ")
    assert found["anthropic"] == "✓ anthropic: model claude-sonnet-4-6 available (Claude Sonnet 4.6)"
    assert found["telegram"] == "✓ telegram: bot @tradebot_fake_bot, chat 4242"
    assert [r.path for r in stack.model.requests] == ["/v1/models/claude-sonnet-4-6"]
    assert [r.path for r in stack.telegram.requests] == [f"/bot{BOT_TOKEN}/getMe"]


def test_wrong_upbit_secret(stack: Stack) -> None:
    out = stack.doctor(UPBIT_SECRET_KEY=WRONG_SECRET, **RULES)
    assert out.returncode == 1
    line = lines(out)["upbit account"]
    assert line.startswith("✗ upbit account: GET /v1/accounts: Upbit refused the API key (jwt_verification)")
    assert "check UPBIT_ACCESS_KEY / UPBIT_SECRET_KEY" in line
    assert lines(out)["upbit market data"].startswith("✓ ")


def test_wrong_upbit_secret_in_paper_mode_is_a_warning(stack: Stack) -> None:
    out = stack.doctor(UPBIT_SECRET_KEY=WRONG_SECRET, TRADEBOT_MODE="paper", **RULES)
    assert out.returncode == 0, out.stdout
    assert lines(out)["upbit account"].startswith("! upbit account: GET /v1/accounts: Upbit refused the API key")


def test_wrong_anthropic_key(stack: Stack) -> None:
    out = stack.doctor(ANTHROPIC_API_KEY=WRONG_ANTHROPIC_KEY)
    assert out.returncode == 1
    assert lines(out)["anthropic"] == ("✗ anthropic: Anthropic rejected ANTHROPIC_API_KEY (authentication_error) — "
                                       "create a key in the Anthropic Console and set ANTHROPIC_API_KEY")


def test_unknown_model(stack: Stack) -> None:
    out = stack.doctor(TRADEBOT_MODEL="claude-nonexistent-9")
    assert out.returncode == 1
    assert lines(out)["anthropic"] == ("✗ anthropic: model claude-nonexistent-9 not found: check TRADEBOT_MODEL — "
                                       "set it to a model id your key can use, e.g. claude-sonnet-4-6")


def test_unreachable_anthropic(stack: Stack) -> None:
    port = free_port()
    out = stack.doctor(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}")
    assert out.returncode == 1
    assert lines(out)["anthropic"].startswith(f"✗ anthropic: cannot reach Anthropic at 127.0.0.1:{port}: APIConnectionError")


def test_wrong_telegram_token(stack: Stack) -> None:
    out = stack.doctor(TELEGRAM_BOT_TOKEN=WRONG_BOT_TOKEN, **RULES)
    assert out.returncode == 1
    assert lines(out)["telegram"] == ("✗ telegram: Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized) — "
                                      "check TELEGRAM_BOT_TOKEN (from @BotFather) and TELEGRAM_API_URL")


def test_unreachable_telegram(stack: Stack) -> None:
    port = free_port()
    out = stack.doctor(TELEGRAM_API_URL=f"http://127.0.0.1:{port}", **RULES)
    assert out.returncode == 1
    assert lines(out)["telegram"].startswith(f"✗ telegram: cannot reach Telegram at 127.0.0.1:{port}: ConnectionError")


def test_telegram_unset_is_only_a_warning(stack: Stack) -> None:
    out = stack.doctor(unset=("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID"), **RULES)
    assert out.returncode == 0, out.stdout
    assert lines(out)["anthropic"] == "✓ anthropic: not used (advisor: rules)"
    assert stack.model.requests == []
    assert lines(out)["telegram"] == ("! telegram: TELEGRAM_BOT_TOKEN is not set, no notifications will be sent — "
                                      "create a bot with @BotFather and set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID")
    assert stack.telegram.requests == []


def test_unreachable_database(stack: Stack) -> None:
    port = free_port()
    out = stack.doctor(DATABASE_URL=f"postgresql://tradebot@127.0.0.1:{port}/tradebot?connect_timeout=2", **RULES)
    assert out.returncode == 1
    found = lines(out)
    assert found["database"].startswith(f"✗ database: cannot connect to PostgreSQL at 127.0.0.1:{port}/tradebot: ")
    assert found["database"].endswith(" — check DATABASE_URL and that PostgreSQL is running")
    assert "schema" not in found
    assert found["upbit account"].startswith("✓ ")  # the other checks still run


def test_database_without_schema(stack: Stack, empty_db_url: str) -> None:
    out = stack.doctor(DATABASE_URL=empty_db_url, **RULES)
    assert out.returncode == 1
    found = lines(out)
    assert found["database"].startswith("✓ ")
    assert found["schema"] == "✗ schema: the database has no tradebot schema: run `tradebot init-db`"


def test_malformed_setting_exits_2_naming_the_variable(stack: Stack) -> None:
    out = stack.doctor(TRADEBOT_MAX_ORDER_KRW="lots")
    assert out.returncode == 2
    assert out.stdout.splitlines() == [
        "✗ configuration: TRADEBOT_MAX_ORDER_KRW must be a number, e.g. 50000; got 'lots' — "
        "fix the variable in your env file (see .env.example)"]
    assert stack.model.requests == [] and stack.telegram.requests == []


@pytest.mark.parametrize("mode", [0o644, 0o600], ids=["0644", "0600"])
def test_env_file_permissions(stack: Stack, mode: int) -> None:
    env_file = stack.tmp / "tradebot.env"
    env_file.write_text(f"UPBIT_SECRET_KEY={SECRET}\nTRADEBOT_TICKER=KRW-BTC\n")
    env_file.chmod(mode)
    out = stack.doctor("--env-file", str(env_file), unset=("UPBIT_SECRET_KEY",), **RULES)
    assert out.returncode == 0, out.stdout
    found = lines(out)
    assert found["configuration"].endswith(f"from {env_file}")
    assert found["upbit account"].startswith("✓ ")  # the secret came from the file
    if mode == 0o644:
        assert found["env file permissions"] == (f"! env file permissions: {env_file} is readable by group or others "
                                                 f"(-rw-r--r--) — chmod 600 {env_file}")
    else:
        assert found["env file permissions"] == f"✓ env file permissions: {env_file} is private (-rw-------)"
