"""Fault injection for the portfolio cycle (issue 12), in the style of ``test_reliability.py``: SIGKILL between
two markets' orders and after the last order, an order rejected for insufficient funds in the middle of a
sequence, and two runs at once over overlapping and disjoint market lists. After each, the exchange's ledger
equals the trades table for every market and no order is doubled. Real CLI, simulator, fake model, real
PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import run_cli
from tests.test_cycle_e2e import Stack
from tests.test_portfolio_cycle import (
    answer,
    entry,
    ledger_matches_trades,
    portfolio_stack,  # noqa: F401 (the fixture "stack")
)


def two_buys() -> dict[str, object]:
    return answer(entry("KRW-BTC", "buy", 0.9), entry("KRW-ETH", "buy", 0.8), entry("KRW-SOL", "hold", 0.5, 0))


def statuses(stack: Stack) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in stack.rows("SELECT symbol, status FROM trades ORDER BY id")]


@pytest.mark.parametrize("then", ["reconcile", "run-cycle"])
@pytest.mark.parametrize("point", ["after_fill", "after_market_order", "before_decisions"])
def test_sigkill_inside_a_sequence_then_the_next_run_reaches_the_exchange_truth(stack: Stack, point: str, then: str) -> None:
    stack.model.enqueue_tool_answer(two_buys(), name="record_decisions")
    crashed = stack.run(TRADEBOT_CRASH_AT=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    orders = stack.sim.orders()
    if point == "after_fill":  # the first market's order filled on the exchange; its row is still pending
        assert [o["market"] for o in orders] == ["KRW-BTC"] and statuses(stack) == [("KRW-BTC", "pending")]
    elif point == "after_market_order":  # the first market done and recorded, the second never sent
        assert [o["market"] for o in orders] == ["KRW-BTC"] and statuses(stack) == [("KRW-BTC", "completed")]
        assert [r[0] for r in stack.rows("SELECT ticker FROM decisions WHERE role = 'acting'")] == ["KRW-BTC"]
    else:  # both orders done; the holding market's decision row not written yet
        assert [o["market"] for o in orders] == ["KRW-BTC", "KRW-ETH"]
        assert sorted(r[0] for r in stack.rows("SELECT ticker FROM decisions WHERE role = 'acting'")) == ["KRW-BTC", "KRW-ETH"]

    # `reconcile`, or the next run — in the same hour, the model asking for the same buys again.
    if then == "reconcile":
        out = run_cli(["reconcile"], stack.env)
    else:
        stack.model.enqueue_tool_answer(two_buys(), name="record_decisions")
        out = stack.run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    ledger_matches_trades(stack)
    after = stack.sim.orders()
    if then == "run-cycle":
        # A market already traded in this hour's slot is not traded again: no order doubled.
        assert sorted(o["market"] for o in after) == ["KRW-BTC", "KRW-ETH"]
        vetoes = stack.rows("SELECT ticker, vetoes->0->>'rule' FROM decisions WHERE role = 'acting' AND ticker = 'KRW-BTC' ORDER BY id")
        assert vetoes[-1] == ("KRW-BTC", "cycle_slot")
    else:
        assert len(after) == len(orders)
    assert all(status == "completed" for _, status in statuses(stack))


def test_insufficient_funds_in_the_middle_of_a_sequence_fails_that_market_only(stack: Stack) -> None:
    stack.sim.set_faults(reject_next_order="insufficient_funds_bid", reject_market="KRW-ETH")
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.9), entry("KRW-ETH", "buy", 0.8),
                                           entry("KRW-SOL", "buy", 0.7)), name="record_decisions")
    out = stack.run()
    assert out.returncode == 1, out.stdout + out.stderr
    assert [o["market"] for o in stack.sim.orders()] == ["KRW-BTC", "KRW-SOL"]
    assert statuses(stack) == [("KRW-BTC", "completed"), ("KRW-ETH", "failed"), ("KRW-SOL", "completed")]
    [(error,)] = stack.rows("SELECT error FROM trades WHERE symbol = 'KRW-ETH'")
    assert error.startswith("insufficient_funds_bid")
    [(derror,)] = stack.rows("SELECT error FROM decisions WHERE role = 'acting' AND ticker = 'KRW-ETH'")
    assert derror.startswith("order: rejected")
    assert out.stderr.strip().splitlines()[-1].startswith("Error: KRW-ETH: order failed: rejected")
    ledger_matches_trades(stack)
    [text] = stack.telegram.texts
    assert "2 trades, 1 failure" in text and "insufficient_funds_bid" in text


def popen(stack: Stack, **env: str) -> subprocess.Popen[str]:
    from tests.conftest import ROOT

    return subprocess.Popen([sys.executable, "-m", "tradebot", "run-cycle"], env={**stack.env, **env}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_locks(stack: Stack, n: int) -> None:
    """Until some run holds ``n`` advisory locks (its markets' and the account's)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if stack.rows("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                      "(SELECT oid FROM pg_database WHERE datname = current_database())")[0][0] >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the first run never took its locks")


def test_two_runs_over_overlapping_markets_never_trade_a_market_twice(stack: Stack) -> None:
    stack.sim.set_faults(fill_delay_s=2.0)  # the first run holds its locks while its orders fill
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.9), entry("KRW-ETH", "buy", 0.8)),
                                    name="record_decisions")
    first = popen(stack, TRADEBOT_MARKETS="KRW-BTC,KRW-ETH")
    wait_for_locks(stack, 3)
    second = popen(stack, TRADEBOT_MARKETS="KRW-ETH,KRW-SOL")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert codes == [0, 75], outs
    assert outs[1][1].strip() == "Error: another cycle for KRW-ETH (live) is running; nothing done" and outs[1][0] == ""
    # The second run, repeated after the first finished in the same hour, does not trade ETH again.
    stack.sim.set_faults(fill_delay_s=0.0)
    stack.model.enqueue_tool_answer(answer(entry("KRW-ETH", "buy", 0.9), entry("KRW-SOL", "buy", 0.8)),
                                    name="record_decisions")
    again = stack.run(TRADEBOT_MARKETS="KRW-ETH,KRW-SOL")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cycle_slot: KRW-ETH was already traded" in again.stdout
    assert sorted(o["market"] for o in stack.sim.orders()) == ["KRW-BTC", "KRW-ETH", "KRW-SOL"]
    ledger_matches_trades(stack)


def test_two_runs_over_disjoint_markets_take_turns_on_the_account(stack: Stack) -> None:
    """Disjoint lists spend the same KRW: the second waits for the first's account lock, then sizes its buys
    on the KRW the first left — the two never together spend more than the account had above the reserve."""
    stack.sim.set_faults(fill_delay_s=1.5)
    stack.model.enqueue_tool_answer({"decision": "buy", "confidence": 0.9, "fraction": 1, "reason": "one market"})
    stack.model.enqueue_tool_answer(answer(entry("KRW-ETH", "buy", 0.9, 1), entry("KRW-SOL", "buy", 0.8, 1)),
                                    name="record_decisions")
    env = {"TRADEBOT_KRW_RESERVE": "930000", "TRADEBOT_LOCK_WAIT_S": "60"}
    first = popen(stack, TRADEBOT_MARKETS="KRW-BTC", **env)
    wait_for_locks(stack, 2)
    second = popen(stack, TRADEBOT_MARKETS="KRW-ETH,KRW-SOL", **env)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    orders = stack.sim.orders()
    spent = sum(Decimal(o["price"]) for o in orders)
    assert spent * Decimal("1.0005") <= 70000 and [o["market"] for o in orders][0] == "KRW-BTC"
    ledger_matches_trades(stack)


def test_a_run_over_several_markets_waits_for_the_account_lock(stack: Stack) -> None:
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtextextended('tradebot-account:live', 0))")
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    out = stack.run(TRADEBOT_LOCK_WAIT_S="1")
    release.set()
    holder.join()
    assert out.returncode == 75 and out.stdout == ""
    assert stack.rows("SELECT count(*) FROM decisions") == [(0,)] and stack.sim.orders() == []
