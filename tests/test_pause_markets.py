"""``pause`` / ``resume --market`` (issue 12): a pause of one market or of all, stored in the database, and the
cycle's buys obeying it (real CLI, simulator, fake model, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_cli
from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, Stack, answer
from tradebot.models import Market
from tradebot.store.state import is_paused, resume_market, set_paused

BTC, ETH, SOL = Market("KRW-BTC"), Market("KRW-ETH"), Market("KRW-SOL")


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN,
                       TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_LLM_MAX_RETRIES="0", TRADEBOT_LLM_TIMEOUT_S="5") as (
            sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, metrics)


def test_a_pause_of_the_traded_market_stops_its_buys_until_resumed(stack: Stack) -> None:
    out = run_cli(["pause", "--market", "krw-btc", "--reason", "news"], stack.env)
    assert out.returncode == 0 and out.stdout.strip() == (
        "Paused KRW-BTC: no new buys of it; sells continue. `tradebot resume --market KRW-BTC` lifts it.")
    stack.model.enqueue_tool_answer(answer("buy"))
    assert stack.run().returncode == 0
    out = run_cli(["resume", "--market", "KRW-BTC"], stack.env)
    assert out.returncode == 0 and out.stdout.strip() == "Resumed KRW-BTC: buys of it are allowed again."
    stack.model.enqueue_tool_answer(answer("buy"))
    assert stack.run().returncode == 0
    # A pause of every market, lifted for this one only.
    assert run_cli(["pause"], stack.env).returncode == 0
    stack.model.enqueue_tool_answer(answer("buy"))
    stack.run()
    assert run_cli(["resume", "--market", "KRW-BTC"], stack.env).returncode == 0
    stack.model.enqueue_tool_answer(answer("buy"))
    stack.run()
    assert [r[0] for r in stack.rows("SELECT action FROM decisions WHERE role = 'acting' ORDER BY id")] == ["hold", "buy", "hold", "buy"]
    assert [r[0] for r in stack.rows("SELECT vetoes->0->>'rule' FROM decisions WHERE role = 'acting' ORDER BY id")] == [
        "paused", None, "paused", None]
    assert [o["side"] for o in stack.sim.orders()] == ["bid", "bid"]
    # Every cycle names itself in its decision row (issue 12: the rows of one cycle's markets share it).
    ids = [r[0] for r in stack.rows("SELECT cycle_id FROM decisions WHERE role = 'acting' ORDER BY id")]
    assert None not in ids and len(set(ids)) == 4


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_a_market_that_is_not_traded_or_not_a_market_is_a_usage_error(stack: Stack, command: str) -> None:
    out = run_cli([command, "--market", "KRW-ETH"], stack.env)
    assert out.returncode == 2 and out.stderr.strip() == (
        "Error: --market KRW-ETH is not a traded market (TRADEBOT_MARKETS: KRW-BTC)")
    out = run_cli([command, "--market", "BTC"], stack.env)
    assert out.returncode == 2 and "--market" in out.stderr and "KRW" in out.stderr
    assert stack.rows("SELECT count(*) FROM bot_state WHERE key LIKE 'paused%'") == [(0,)]


def test_resuming_one_market_of_a_paused_portfolio_keeps_the_others_paused(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        set_paused(conn, True, "holiday")
        assert all(is_paused(conn, m) for m in (BTC, ETH, SOL)) and is_paused(conn)
        resume_market(conn, ETH, "ETH only", (BTC, ETH, SOL))
        assert [is_paused(conn, m) for m in (BTC, ETH, SOL)] == [True, False, True] and not is_paused(conn)
        reasons = dict(conn.execute("SELECT key, value->>'reason' FROM bot_state WHERE key LIKE 'paused%'").fetchall())
        assert reasons == {"paused": "ETH only", "paused:KRW-BTC": "holiday", "paused:KRW-ETH": "ETH only",
                           "paused:KRW-SOL": "holiday"}
        set_paused(conn, True, "SOL news", SOL)
        set_paused(conn, False, "all back")  # resuming every market lifts each market's own pause too
        assert not any(is_paused(conn, m) for m in (BTC, ETH, SOL))
        set_paused(conn, True, "BTC only", BTC)
        assert [is_paused(conn, m) for m in (BTC, ETH, SOL)] == [True, False, False] and not is_paused(conn)
