"""Runs on the same account queue on one account lock (issue 12): a cycle of another market — here simulated
by a session holding the lock — is waited for, never run beside, so two runs never spend the same KRW; a run
that waits longer than TRADEBOT_LOCK_WAIT_S gives up with exit 75 and does nothing. Real CLI, simulator, real
PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, Stack, answer


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    with live_services(tb_env, tmp_path / "metrics", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_LLM_MAX_RETRIES="0",
                       TRADEBOT_LLM_TIMEOUT_S="5") as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, tmp_path / "metrics")


def hold_account_lock(db_url: str, seconds: float) -> threading.Thread:
    taken = threading.Event()

    def hold() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtextextended('tradebot-account:live', 0))")
            taken.set()
            time.sleep(seconds)

    t = threading.Thread(target=hold)
    t.start()
    assert taken.wait(10)
    return t


def test_a_run_waits_for_another_run_on_the_same_account(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy"))
    holder = hold_account_lock(stack.db_url, 3)
    started = time.monotonic()
    out = stack.run(TRADEBOT_LOCK_WAIT_S="60")
    waited = time.monotonic() - started
    holder.join()
    assert out.returncode == 0, out.stdout + out.stderr
    assert waited >= 2.5  # it queued behind the other run instead of trading beside it
    assert [o["side"] for o in stack.sim.orders()] == ["bid"]


def test_a_run_gives_up_after_the_wait_and_does_nothing(stack: Stack) -> None:
    holder = hold_account_lock(stack.db_url, 4)
    out = stack.run(TRADEBOT_LOCK_WAIT_S="1")
    holder.join()
    assert out.returncode == 75 and out.stdout == ""
    assert out.stderr.strip() == ("Error: another run on this live account has been busy for over 1 s "
                                  "(TRADEBOT_LOCK_WAIT_S); nothing done")
    assert stack.rows("SELECT count(*) FROM decisions") == [(0,)] and stack.sim.orders() == []
