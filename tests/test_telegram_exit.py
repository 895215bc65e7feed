"""``/exit`` from Telegram (issue 14): asked first, acted on only by the owner's Confirm within 60 seconds, sold
through the cycle's own order path exactly once — the real CLI against the fake Bot API, the Upbit simulator
and real PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, run_cli
from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, Stack, answer
from tradebot.config import load_settings

TRADES = "SELECT symbol, side, status, amount, trade_id, client_order_id FROM trades ORDER BY id"


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN,
                       sim_markets=("KRW-BTC", "KRW-ETH"), TRADEBOT_MARKETS="KRW-BTC,KRW-ETH",
                       TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_TELEGRAM_ALLOW_EXIT="yes",
                       TRADEBOT_LLM_MAX_RETRIES="0") as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, metrics)


def start_poller(stack: Stack, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tradebot", "telegram", "--once", "--timeout", "1"],
                            env={**stack.env, **env}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert what(), "timed out"  # type: ignore[operator]


def ask_and_press(stack: Stack, command: str, *data: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Send ``command``; when the keyboard arrives, press its buttons (``y``/``n``, in order); the poller's run."""
    before = len(stack.telegram.keyboards())
    stack.telegram.message(command)
    proc = start_poller(stack, **env)
    wait_for(lambda: len(stack.telegram.keyboards()) > before or proc.poll() is not None)
    if data:
        board = stack.telegram.keyboards()[-1]
        mid = stack.telegram.messages.index(board) + 1
        exit_id = board["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
        for d in data:
            stack.telegram.press(mid, f"exit:{exit_id}:{d}")
    out, err = proc.communicate(timeout=120)
    assert BOT_TOKEN not in out + err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_confirmed_exit_in_live_mode_sells_once_with_its_real_fill_even_when_tapped_twice(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.012345"), Decimal("40000000"))
    stack.sim.set_balance("ETH", Decimal("0.0000001"))  # dust: nothing to sell there
    out = ask_and_press(stack, "/exit all", "y", "y")
    assert out.returncode == 0, out.stderr
    prompt = stack.telegram.keyboards()[0]["text"]
    assert prompt.startswith("⚠️ <b>Emergency exit</b> [LIVE]: sell at market") and "KRW-BTC  0.012345" in prompt
    assert "KRW-ETH" not in prompt
    orders = stack.sim.orders()
    assert [(o["market"], o["side"], o["volume"]) for o in orders] == [("KRW-BTC", "ask", "0.012345")]
    rows = stack.rows(TRADES)
    assert len(rows) == 1 and rows[0][:4] == ("KRW-BTC", "sell", "completed", Decimal("0.012345"))
    assert rows[0][4] == orders[0]["uuid"] and rows[0][5] == orders[0]["identifier"]
    # The exchange's ledger and ours agree to the won.
    fill = sum((Decimal(t["funds"]) for t in orders[0]["trades"]), Decimal(0))
    assert stack.rows("SELECT total FROM trades") == [(fill,)]
    # The decision row says who sold, and buys of every market are paused.
    assert stack.rows("SELECT ticker, advisor, decision, action FROM decisions") == [("KRW-BTC", "owner", "sell", "sell")]
    (value,) = stack.rows("SELECT value FROM bot_state WHERE key = 'paused'")[0]
    assert value["paused"] is True and value["by"] == "telegram user Owner (4242)"
    # The double tap: the second press found the question closed — ignored, no reply, nothing done.
    assert [a["text"] for a in stack.telegram.answers] == ["Selling…"]
    assert stack.rows("SELECT command, outcome, reason FROM telegram_updates ORDER BY update_id") == [
        ("/exit", "done", None), ("confirm", "done", None), (None, "ignored", "old keyboard")]
    assert stack.telegram.edits[0]["text"].startswith("⏳ Exit confirmed by telegram user Owner (4242): selling")
    done = stack.telegram.texts[-1]
    assert done.startswith("✅ <b>Exit done</b> [LIVE]") and "🔴 <b>SELL KRW-BTC</b> 0.012345 @ " in done
    assert "KRW-ETH: nothing sold" in done
    assert stack.rows("SELECT state FROM telegram_exits") == [("done",)]
    # A cycle afterwards does not buy (paused) and the reconciliation finds nothing to change.
    assert run_cli(["reconcile"], stack.env).returncode == 0
    assert len(stack.rows(TRADES)) == 1


def test_live_exit_is_refused_unless_allowed_and_cancel_sells_nothing(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"))
    out = ask_and_press(stack, "/exit BTC", TRADEBOT_TELEGRAM_ALLOW_EXIT="no")
    assert out.returncode == 0
    assert stack.telegram.texts[-1] == "⛔ /exit is off in live mode: set TRADEBOT_TELEGRAM_ALLOW_EXIT=yes to allow it."
    out = ask_and_press(stack, "/exit KRW-BTC", "n")
    assert out.returncode == 0
    assert [a["text"] for a in stack.telegram.answers] == ["Cancelled."]
    assert stack.telegram.edits[-1]["text"] == "Exit cancelled: nothing sold."
    out = ask_and_press(stack, "/exit DOGE")
    assert stack.telegram.texts[-1] == "DOGE is not a traded market (traded: KRW-BTC, KRW-ETH)"
    assert stack.sim.orders() == [] and stack.rows(TRADES) == []
    assert stack.rows("SELECT count(*) FROM bot_state WHERE key LIKE 'paused%'") == [(0,)]


def test_a_confirm_from_someone_else_or_after_the_minute_does_nothing(stack: Stack) -> None:
    from tradebot.app.telegram import poll

    stack.sim.set_balance("BTC", Decimal("0.01"))
    settings = load_settings(None, environ=stack.env)
    stack.telegram.message("/exit all")
    poll(settings, once=True, timeout_s=1, wait_for_confirm=False)
    board = stack.telegram.keyboards()[0]
    mid = stack.telegram.messages.index(board) + 1
    data = board["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    stack.telegram.press(mid, data, user_id=999, chat_id=999)  # a stranger's press (a forwarded keyboard)
    stack.telegram.press(mid, "exit:0000:y")  # an old or made-up keyboard
    stack.telegram.press(mid, data)  # the owner, but 2 minutes later
    later = datetime.now(UTC) + timedelta(minutes=2)
    report = poll(settings, once=True, timeout_s=1, wait_for_confirm=False, now=lambda: later)
    assert [(h.outcome, h.reason) for h in report.handled] == [
        ("ignored", "other chat"), ("ignored", "foreign keyboard"), ("ignored", "old keyboard")]
    assert stack.sim.orders() == [] and stack.rows(TRADES) == []
    assert stack.rows("SELECT state FROM telegram_exits") == [("expired",)]
    assert stack.telegram.edits[-1]["text"] == "⌛ Exit not confirmed within 60 seconds: nothing sold."
    assert stack.rows("SELECT count(*) FROM bot_state WHERE key LIKE 'paused%'") == [(0,)]


def test_an_exit_waits_for_a_running_cycle_and_gives_up_after_the_lock_wait(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"))
    with psycopg.connect(stack.db_url, autocommit=True) as cycle:  # a cycle of KRW-ETH holds its lock
        cycle.execute("SELECT pg_advisory_lock(hashtextextended('tradebot-cycle:KRW-ETH:live', 0))")
        out = ask_and_press(stack, "/exit all", "y", TRADEBOT_LOCK_WAIT_S="2")
    assert out.returncode == 0, out.stderr
    assert stack.telegram.texts[-1].startswith("⚠️ Exit not done: a cycle held the lock for over 2 s")
    assert stack.sim.orders() == [] and stack.rows("SELECT state FROM telegram_exits") == [("failed",)]


def test_a_poller_killed_in_the_middle_of_an_exit_sells_once(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"))
    stack.sim.set_balance("ETH", Decimal("0.5"))
    # Killed after the first market's fill was recorded, before the second market's order.
    out = ask_and_press(stack, "/exit all", "y", TRADEBOT_CRASH_AT="after_market_order")
    assert out.returncode == -signal.SIGKILL
    assert len(stack.sim.orders()) == 1 and stack.rows("SELECT state FROM telegram_exits") == [("confirmed",)]
    # The next poll (cron's next minute) finishes it: the first market is not sold again.
    out = run_cli(["telegram", "--once", "--timeout", "1"], stack.env)
    assert out.returncode == 0, out.stderr
    orders = stack.sim.orders()
    assert sorted((o["market"], o["side"]) for o in orders) == [("KRW-BTC", "ask"), ("KRW-ETH", "ask")]
    assert sorted(r[:3] for r in stack.rows(TRADES)) == [("KRW-BTC", "sell", "completed"), ("KRW-ETH", "sell", "completed")]
    assert stack.rows("SELECT state FROM telegram_exits") == [("done",)]
    assert "KRW-BTC: already sold by this exit (completed)" in stack.telegram.texts[-1]


def test_killed_after_the_fill_before_recording_it_the_next_poll_records_it_and_sells_nothing_more(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"))
    out = ask_and_press(stack, "/exit BTC", "y", TRADEBOT_CRASH_AT="after_fill")
    assert out.returncode == -signal.SIGKILL
    assert stack.rows("SELECT status FROM trades") == [("pending",)]
    out = run_cli(["telegram", "--once", "--timeout", "1"], stack.env)
    assert out.returncode == 0, out.stderr
    assert len(stack.sim.orders()) == 1
    assert stack.rows("SELECT side, status FROM trades") == [("sell", "completed")]


def test_paper_mode_exit_sells_the_paper_position(stack: Stack) -> None:
    env = {"TRADEBOT_MODE": "paper", "TRADEBOT_TELEGRAM_ALLOW_EXIT": "no", "TRADEBOT_MARKETS": "KRW-BTC"}
    stack.model.enqueue_tool_answer(answer("buy", fraction=0.05))
    assert stack.run(**env).returncode == 0
    assert stack.rows("SELECT side, mode, status FROM trades") == [("buy", "paper", "completed")]
    out = ask_and_press(stack, "/exit all", "y", **env)
    assert out.returncode == 0, out.stderr
    assert stack.rows("SELECT side, mode, status FROM trades ORDER BY id") == [
        ("buy", "paper", "completed"), ("sell", "paper", "completed")]
    assert stack.telegram.texts[-1].startswith("✅ <b>Exit done</b> [PAPER]")
    assert stack.sim.orders() == []  # paper: nothing reached the exchange
    # The scorecard shows the owner's exit as its own advisor beside the model's decisions.
    report = run_cli(["advisors", "report", "--format", "json"], {**stack.env, **env})
    assert report.returncode == 0, report.stderr
    assert {"claude", "owner"} <= {row["advisor"] for row in json.loads(report.stdout)["rows"]}
