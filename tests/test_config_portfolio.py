"""Issue 12's settings: TRADEBOT_MARKETS beside TRADEBOT_TICKER, and the portfolio limits with their defaults
(through the real CLI: exit codes and ``Error:`` lines as users see them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli


def config(env: dict[str, str], **settings: str) -> tuple[int, dict[str, str], str]:
    out = run_cli(["config", "show"], {**env, **settings})
    values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line and not line.startswith("#"))
    return out.returncode, values, out.stderr


@pytest.fixture
def env(tb_env: dict[str, str]) -> dict[str, str]:
    return tb_env


def test_one_market_by_either_name_and_the_defaults_follow_it(env: dict[str, str]) -> None:
    code, values, _ = config(env)
    assert code == 0 and (values["TRADEBOT_TICKER"], values["TRADEBOT_MARKETS"]) == ("KRW-BTC", "KRW-BTC")
    assert (values["TRADEBOT_MAX_EXPOSURE_KRW"], values["TRADEBOT_MAX_OPEN_POSITIONS"], values["TRADEBOT_KRW_RESERVE"]) == (
        "200000", "1", "0")
    code, values, _ = config(env, TRADEBOT_MARKETS=" krw-eth ", TRADEBOT_MAX_POSITION_KRW="300,000")
    assert code == 0 and (values["TRADEBOT_TICKER"], values["TRADEBOT_MARKETS"]) == ("KRW-ETH", "KRW-ETH")
    assert values["TRADEBOT_MAX_EXPOSURE_KRW"] == "300000"
    code, values, _ = config(env, TRADEBOT_MARKETS="KRW-XRP", TRADEBOT_TICKER="krw-xrp", TRADEBOT_KRW_RESERVE="10,000",
                             TRADEBOT_MAX_EXPOSURE_KRW="150000", TRADEBOT_MAX_OPEN_POSITIONS="3")
    assert code == 0 and values["TRADEBOT_MARKETS"] == "KRW-XRP"
    assert (values["TRADEBOT_MAX_EXPOSURE_KRW"], values["TRADEBOT_MAX_OPEN_POSITIONS"], values["TRADEBOT_KRW_RESERVE"]) == (
        "150000", "3", "10000")


@pytest.mark.parametrize(("settings", "error"), [
    ({"TRADEBOT_MARKETS": "KRW-BTC,,KRW-ETH"}, "Error: TRADEBOT_MARKETS has an empty item"),
    ({"TRADEBOT_MARKETS": "KRW-BTC,krw-btc"}, "Error: TRADEBOT_MARKETS lists KRW-BTC twice"),
    ({"TRADEBOT_MARKETS": "KRW-BTC,BTC-ETH"}, "Error: TRADEBOT_MARKETS must be a KRW market"),
    ({"TRADEBOT_MARKETS": "KRW-BTC,KRW-ETH", "TRADEBOT_TICKER": "KRW-BTC"},
     "Error: TRADEBOT_MARKETS and TRADEBOT_TICKER (KRW-BTC) disagree"),
    ({"TRADEBOT_MARKETS": ",".join(f"KRW-C{i}" for i in range(21))}, "Error: TRADEBOT_MARKETS lists 21 markets; at most 20"),
    ({"TRADEBOT_MARKETS": "KRW-ETH", "TRADEBOT_TICKER": "KRW-BTC"}, "Error: TRADEBOT_MARKETS and TRADEBOT_TICKER (KRW-BTC) disagree"),
    ({"TRADEBOT_MAX_OPEN_POSITIONS": "0"}, "Error: TRADEBOT_MAX_OPEN_POSITIONS must be between 1 and 20"),
    ({"TRADEBOT_KRW_RESERVE": "-1"}, "Error: TRADEBOT_KRW_RESERVE must be between 0"),
    ({"TRADEBOT_MAX_EXPOSURE_KRW": "lots"}, "Error: TRADEBOT_MAX_EXPOSURE_KRW must be a number"),
])
def test_bad_market_lists_and_limits_are_one_error_line_and_exit_2(env: dict[str, str], settings: dict[str, str],
                                                                  error: str, tmp_path: Path) -> None:
    code, _, err = config(env, **settings)
    assert code == 2 and err.startswith(error) and len(err.strip().splitlines()) == 1, err


def test_the_cycle_and_the_backtest_gate_with_the_configured_portfolio_limits(monkeypatch: pytest.MonkeyPatch,
                                                                             env: dict[str, str]) -> None:
    from decimal import Decimal

    from tradebot.config import load_settings
    from tradebot.risk import RiskLimits

    for name in [n for n in os.environ if n.startswith("TRADEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRADEBOT_STATE_DIR", env["TRADEBOT_STATE_DIR"])
    monkeypatch.setenv("TRADEBOT_KRW_RESERVE", "25000")
    monkeypatch.setenv("TRADEBOT_MAX_OPEN_POSITIONS", "4")
    monkeypatch.setenv("TRADEBOT_MAX_EXPOSURE_KRW", "123456")
    limits = RiskLimits.from_settings(load_settings(Path("/nonexistent/.env"), explicit_env_file=False))
    assert (limits.krw_reserve, limits.max_open_positions, limits.max_exposure_krw) == (Decimal(25000), 4, Decimal(123456))
