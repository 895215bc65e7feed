"""``tradebot telegram`` (issue 14): commands from the owner's chat, nobody else's, each handled exactly once —
the real CLI against the fake Bot API, the Upbit simulator (live mode) and real PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, run_cli
from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, Stack

OWNER = 4242  # TELEGRAM_CHAT_ID of the stack: a private chat with the owner


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN,
                       TRADEBOT_ADVISOR="rules", TRADEBOT_BACKTEST_FILTER="off") as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, metrics)


def poll(stack: Stack, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["telegram", "--once", "--timeout", "1"], {**stack.env, **env})


def replies(stack: Stack) -> list[str]:
    return stack.telegram.texts


def check_clean(out: subprocess.CompletedProcess[str]) -> None:
    """The token never shows, in any output."""
    assert BOT_TOKEN not in out.stdout + out.stderr
    assert BOT_TOKEN.split(":")[1] not in out.stdout + out.stderr


def test_help_unknown_and_plain_text_get_their_one_reply_each(stack: Stack) -> None:
    stack.telegram.message("/help")
    stack.telegram.message("/frobnicate")
    stack.telegram.message("hello bot")
    stack.telegram.message(f"/help@{'tradebot_fake_bot'}")
    out = poll(stack)
    assert out.returncode == 0, out.stderr
    check_clean(out)
    texts = replies(stack)
    assert len(texts) == 4
    assert texts[0].startswith("<b>tradebot commands</b>") and "/exit — MARKET|all" in texts[0]
    assert texts[1] == texts[2] == "unknown command, try /help"
    assert texts[3] == texts[0]
    assert "4 update(s) handled, 4 repl(ies) sent" in out.stdout
    # The client's command menu was filled (once: the next poll does not set it again).
    assert [c["command"] for c in stack.telegram.commands][:3] == ["status", "pnl", "trades"]
    stack.telegram.commands = []
    # Handled and acknowledged: the next poll sees nothing and sends nothing.
    out = poll(stack)
    assert out.returncode == 0 and len(replies(stack)) == 4
    assert stack.telegram.updates == [] and stack.telegram.commands == []


@pytest.mark.parametrize("update", [
    {"chat_id": 999, "user_id": 999},  # a stranger's private chat
    {"chat_id": OWNER, "user_id": 4242, "kind": "edited_message"},
    {"chat_id": OWNER, "user_id": 4242, "forward_origin": {"type": "user", "date": 1, "sender_user": {"id": 5}}},
    {"chat_id": -100777, "user_id": 4242, "chat_type": "supergroup"},  # the owner, but in another group
    {"chat_id": OWNER, "user_id": 4242, "is_bot": True},
    {"chat_id": OWNER, "user_id": 4242, "kind": "channel_post"},
], ids=["stranger", "edited", "forwarded", "other-group", "bot", "channel-post"])
def test_a_strangers_exit_is_ignored_nothing_sold_no_reply(stack: Stack, update: dict[str, Any]) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"), Decimal("50000000"))
    stack.telegram.message("/exit all", **update)
    stack.telegram.message("/pause all", **update)
    out = poll(stack)
    assert out.returncode == 0, out.stderr
    check_clean(out)
    assert replies(stack) == [] and stack.telegram.answers == [] and stack.telegram.edits == []
    assert stack.sim.orders() == []
    assert stack.rows("SELECT count(*) FROM bot_state WHERE key LIKE 'paused%'") == [(0,)]
    assert stack.rows("SELECT outcome, count(*) FROM telegram_updates GROUP BY 1") == [("ignored", 2)]
    # Logged without the text (the command never appears in output either).
    assert "/exit" not in out.stdout + out.stderr and "→ ignored" in out.stdout
    # Counted in the metrics (the poller rewrites them).
    samples = stack.metrics_samples()
    assert sum(v for (name, _), v in samples.items() if name == "tradebot_telegram_updates_ignored_total") == 2


def test_in_a_group_only_the_allowed_users_may_command(stack: Stack) -> None:
    group = {"chat_id": -100123, "chat_type": "supergroup"}
    env = {"TELEGRAM_CHAT_ID": "-100123", "TELEGRAM_ALLOWED_USER_IDS": "4242,77"}
    stack.telegram.message("/help", user_id=555, **group)
    stack.telegram.message("/help", user_id=77, **group)
    stack.telegram.message("/help@some_other_bot", user_id=77, **group)
    assert poll(stack, **env).returncode == 0
    assert len(replies(stack)) == 1 and stack.telegram.messages[0]["chat_id"] == -100123
    assert stack.rows("SELECT user_id, outcome, reason FROM telegram_updates ORDER BY update_id") == [
        (555, "ignored", "user not allowed"), (77, "done", None), (77, "ignored", "for another bot")]


def test_pause_and_resume_are_recorded_with_who_asked_and_old_ones_expire(stack: Stack) -> None:
    stack.telegram.message("/pause BTC news coming")
    out = poll(stack)
    assert out.returncode == 0, out.stderr
    (value,) = stack.rows("SELECT value FROM bot_state WHERE key = 'paused:KRW-BTC'")[0]
    assert value["paused"] is True and value["reason"] == "news coming" and value["by"] == "telegram user user4242 (4242)"
    assert replies(stack)[-1].startswith("⏸ New buys of KRW-BTC are paused (news coming).")
    # The cycle obeys it: a rules buy is vetoed.
    stack.telegram.message("/resume all")
    assert poll(stack).returncode == 0
    assert stack.rows("SELECT value->>'paused' FROM bot_state WHERE key IN ('paused', 'paused:KRW-BTC') ORDER BY key") == [
        ("false",), ("false",)]
    # Sent six minutes ago (an outage): not executed, the owner is told.
    stack.telegram.message("/pause", date=int(time.time()) - 360)
    assert poll(stack).returncode == 0
    assert stack.rows("SELECT value->>'paused' FROM bot_state WHERE key = 'paused'") == [("false",)]
    assert "arrived more than 5 minutes late and was not executed" in replies(stack)[-1]
    assert stack.rows("SELECT outcome FROM telegram_updates ORDER BY update_id") == [("done",), ("done",), ("expired",)]


def test_status_shows_positions_cash_equity_and_the_last_cycle(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"), Decimal("40000000"))
    assert stack.run().returncode == 0
    stack.telegram.message("/status")
    assert poll(stack).returncode == 0
    text = replies(stack)[-1]
    assert text.startswith("<b>tradebot</b> [LIVE] — running")
    print(text)
    assert "<pre>market   volume" in text and "KRW-BTC    0.01  40,000,000" in text
    assert "KRW free: 1,000,000" in text and "Equity:" in text
    assert "<b>Last cycle</b> (UTC)" in text and "KRW-BTC: " in text and "Next cycle: about" in text


def test_trades_decisions_pnl_and_budget_read_what_the_bot_recorded(stack: Stack) -> None:
    stack.sim.set_balance("BTC", Decimal("0.01"), Decimal("40000000"))
    assert stack.run().returncode == 0
    with psycopg.connect(stack.db_url) as conn:  # a reason with HTML in it must be escaped
        conn.execute("UPDATE decisions SET reason = 'rsi < 30 & <b>falling</b>' WHERE role = 'acting'")
    for text in ("/trades", "/trades 500", "/decisions 3", "/pnl", "/pnl week", "/pnl year", "/budget"):
        stack.telegram.message(text)
    out = poll(stack)
    assert out.returncode == 0, out.stderr
    t = replies(stack)
    assert t[0] in ("No trades recorded yet.",) or t[0].startswith("<b>Last ")
    assert "rsi &lt; 30 &amp; &lt;b&gt;falling&lt;/b&gt;" in t[2]
    assert t[3].startswith(("<b>P&amp;L, whole history</b>", "No completed trades"))
    assert t[5] == "usage: /pnl [day|week|month|all]"
    assert t[6].startswith("<b>Model spend</b>") and "Today: 0.00 USD (0 KRW)" in t[6]


def test_a_long_reply_is_split_at_telegrams_limit(stack: Stack) -> None:
    with psycopg.connect(stack.db_url) as conn:
        for i in range(20):
            conn.execute("INSERT INTO decisions (ticker, mode, advisor, decision, action, reason, dry_run) "
                         "VALUES ('KRW-BTC', 'live', 'claude', 'hold', 'hold', %s, false)", ("<&> " * 300 + str(i),))
    stack.telegram.message("/decisions 20")
    assert poll(stack).returncode == 0  # the fake refuses a part over 4,096 characters or with broken HTML
    parts = replies(stack)
    assert len(parts) == 2 and all(len(p) <= 4096 for p in parts)  # escaping made 20 reasons longer than one
    assert "".join(parts).count("<b>KRW-BTC</b> claude: hold — ") == 20


def send_error_script(stack: Stack, status: int, description: str, n: int, **extra: Any) -> None:
    for _ in range(n):
        stack.telegram.enqueue_error(status, description, method="getUpdates", **extra)


def test_revoked_token_conflict_rate_limit_and_outage_exit_codes(stack: Stack) -> None:
    send_error_script(stack, 401, "Unauthorized", 1)
    out = poll(stack)
    assert out.returncode == 2 and "TELEGRAM_BOT_TOKEN was rejected by Telegram (Unauthorized)" in out.stderr
    check_clean(out)
    send_error_script(stack, 409, "Conflict: terminated by other getUpdates request; make sure that only one bot "
                      "instance is running", 1)
    out = poll(stack)
    assert out.returncode == 75 and "another poller is reading this bot's updates" in out.stderr
    send_error_script(stack, 429, "Too Many Requests: retry after 1", 1, retry_after=1)
    stack.telegram.message("/help")
    out = poll(stack)
    assert out.returncode == 0 and len(replies(stack)) == 1
    send_error_script(stack, 502, "Bad Gateway", 3)
    out = poll(stack)
    assert out.returncode == 1 and "Telegram getUpdates failed: HTTP 502 Bad Gateway" in out.stderr
    check_clean(out)
    out = poll(stack, TELEGRAM_API_URL="http://127.0.0.1:9")  # nothing listens there
    assert out.returncode == 1 and "Telegram getMe failed: ConnectionError (127.0.0.1:9)" in out.stderr
    check_clean(out)
    out = poll(stack, TELEGRAM_CHAT_ID="")
    assert out.returncode == 2 and "TELEGRAM_CHAT_ID" in out.stderr


def test_a_reply_telegram_refuses_for_now_is_sent_on_the_next_poll(stack: Stack) -> None:
    stack.telegram.enqueue_error(500, "Internal Server Error")
    stack.telegram.message("/help")
    out = poll(stack)
    assert out.returncode == 0 and "a reply was not delivered yet" in out.stderr and replies(stack) == []
    out = poll(stack)
    assert out.returncode == 0 and len(replies(stack)) == 1
    assert stack.rows("SELECT count(*) FROM telegram_updates") == [(1,)]


def test_killed_after_handling_before_acknowledging_runs_nothing_twice(stack: Stack) -> None:
    stack.telegram.message("/pause all first")
    stack.telegram.message("/resume all")
    out = poll(stack, TRADEBOT_CRASH_AT="telegram_after_commit")
    assert out.returncode == -signal.SIGKILL
    # The first update is handled (its effect and reply committed), nothing sent, nothing acknowledged.
    assert stack.rows("SELECT value->>'paused' FROM bot_state WHERE key = 'paused'") == [("true",)]
    assert replies(stack) == [] and [u["update_id"] for u in stack.telegram.updates] == [1001, 1002]
    out = poll(stack)
    assert out.returncode == 0, out.stderr
    # The pause ran once, its reply was sent once, then the resume.
    assert [t.split(" ")[0] for t in replies(stack)] == ["⏸", "▶️"]
    assert stack.rows("SELECT update_id, command FROM telegram_updates ORDER BY 1") == [(1001, "/pause"), (1002, "/resume")]
    assert stack.rows("SELECT value->>'paused' FROM bot_state WHERE key = 'paused'") == [("false",)]


def test_an_update_delivered_again_is_not_handled_again(stack: Stack) -> None:
    """After a week without updates the poller asks without an offset (Telegram may have renumbered); every
    unconfirmed update comes again, and the ones claimed before are skipped by their id."""
    stack.telegram.message("/pause all")
    assert poll(stack, TRADEBOT_CRASH_AT="telegram_after_commit").returncode == -signal.SIGKILL
    with psycopg.connect(stack.db_url) as conn:
        conn.execute("UPDATE telegram_updates SET received_at = now() - interval '7 days'")
        conn.execute("DELETE FROM bot_state")
    assert [u["update_id"] for u in stack.telegram.updates] == [1001]
    out = poll(stack)
    assert out.returncode == 0 and "0 update(s) handled" in out.stdout
    assert stack.rows("SELECT count(*) FROM bot_state WHERE key = 'paused'") == [(0,)]  # not paused again
    assert len(replies(stack)) == 1  # the first run's queued reply, sent once


def test_one_poller_at_a_time_and_the_service_stops_on_sigterm(stack: Stack) -> None:
    env = {**stack.env}
    service = subprocess.Popen([sys.executable, "-m", "tradebot", "telegram", "--timeout", "1"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not any("getUpdates" in r.path for r in stack.telegram.requests) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = poll(stack)
        assert second.returncode == 75 and "another `tradebot telegram` is polling this bot" in second.stderr
        stack.telegram.message("/help")
        while not replies(stack) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(replies(stack)) == 1
    finally:
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=30)
    assert service.returncode == 0, err
    assert "1 update(s) handled" in out
    check_clean(subprocess.CompletedProcess([], 0, out, err))


def test_the_crontab_and_systemd_units_run_the_poller_as_documented() -> None:
    cron = (ROOT / "crontab.example").read_text()
    line = next(x for x in cron.splitlines() if " telegram --once" in x and not x.startswith("#"))
    assert line.startswith("* * * * *") and "flock -n -E 75" in line
    units = ROOT / "deploy" / "systemd"
    service = (units / "tradebot-telegram.service").read_text()
    assert "ExecStart=/opt/tradebot/.venv/bin/tradebot --env-file /etc/tradebot/tradebot.env telegram\n" in service
    assert "Restart=on-failure" in service
    timer = (units / "tradebot-cycle.timer").read_text()
    assert "OnCalendar=*-*-* *:05:00" in timer and "Persistent=true" in timer
    cycle = (units / "tradebot-cycle.service").read_text()
    assert "Type=oneshot" in cycle and "run-cycle" in cycle and "SuccessExitStatus=75" in cycle


def test_status_still_answers_when_the_exchange_is_down(stack: Stack) -> None:
    stack.telegram.message("/status")
    out = poll(stack, UPBIT_API_URL="http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    text = replies(stack)[-1]
    assert "⚠️ account not read:" in text and "KRW-BTC  ?" in text and "KRW-BTC: never -" in text
    assert ACCESS not in text and SECRET not in text
