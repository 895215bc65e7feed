"""``tradebot run-cycle`` end to end: the real CLI as a subprocess against the Upbit simulator, a local fake
of the Anthropic Messages API (reached by the real ``anthropic`` client) and of Telegram, and a real
PostgreSQL. Assertions are on exit codes, rows, files and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, run_cli
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.telegram_server import FakeTelegram
from tests.stack import live_services
from tradebot.exchange.simulator import SimulatorServer

ACCESS = "sim-access-key-" + "A" * 50
SECRET = "sim-secret-key-" + "S" * 60
ANTHROPIC_KEY = "fake-anthropic-" + "K" * 40
BOT_TOKEN = "123456:FAKE-telegram-token-" + "T" * 20


@dataclass
class Stack:
    sim: SimulatorServer
    model: FakeAnthropic
    telegram: FakeTelegram
    env: dict[str, str]
    db_url: str
    metrics: Path

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["run-cycle", *args], {**self.env, **env})

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(sql).fetchall()

    def metrics_samples(self, file: str = "tradebot.prom") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = (self.metrics / file).read_text()
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_LLM_MAX_RETRIES="0", TRADEBOT_LLM_TIMEOUT_S="5") as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, metrics)


def answer(decision: str, confidence: float = 0.8, fraction: float = 0.5, reason: str = "test reason") -> dict[str, Any]:
    return {"decision": decision, "confidence": confidence, "fraction": fraction, "reason": reason}


TRADE_SQL = "SELECT side, status, trade_id, client_order_id, price, amount, total, fee, error, decision_id FROM trades ORDER BY id"


def exchange_fill(order: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(avg price, volume, gross, fee) from the simulator's order of record."""
    volume = sum(Decimal(t["volume"]) for t in order["trades"])
    gross = sum(Decimal(t["funds"]) for t in order["trades"])
    return gross / volume, volume, gross, Decimal(order["paid_fee"])


def test_buy_then_sell_live_against_the_simulator(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy", fraction=0.5, reason="RSI <30 & trend up"),
                                    usage={"input_tokens": 1800, "output_tokens": 60, "cache_read_input_tokens": 0,
                                           "cache_creation_input_tokens": 700})
    first = stack.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "✓ order: buy" in first.stdout
    stack.model.enqueue_tool_answer(answer("sell", fraction=1.0, reason="take profit"))
    second = stack.run()
    assert second.returncode == 0, second.stdout + second.stderr

    orders = stack.sim.orders()
    trades = stack.rows(TRADE_SQL)
    assert len(orders) == 2 and len(trades) == 2
    for order, row in zip(orders, trades, strict=True):
        side, status, trade_id, cid, price, amount, total, fee, error, decision_id = row
        assert status == "completed" and error is None and decision_id is not None, first.stdout + second.stdout
        assert trade_id == order["uuid"] and cid == order["identifier"]
        assert (price, amount, total, fee) == exchange_fill(order)
    assert [r[0] for r in trades] == ["buy", "sell"]
    assert orders[0]["side"] == "bid" and orders[0]["ord_type"] == "price" and Decimal(orders[0]["price"]) == 50000
    assert orders[1]["side"] == "ask" and Decimal(orders[1]["volume"]) == trades[0][5]  # sold all that was bought

    decisions = stack.rows("SELECT decision, action, advisor, model, input_tokens, output_tokens, cache_write_tokens, "
                           "cost_usd, prompt_hash, error, clamps FROM decisions WHERE role = 'acting' ORDER BY id")
    assert len(decisions) == 2
    assert decisions[0][:4] == ("buy", "buy", "claude", "claude-sonnet-4-6")
    assert decisions[0][4:7] == (1800, 60, 700) and decisions[0][7] > 0 and len(decisions[0][8]) == 64
    assert decisions[0][10][0]["rule"] == "max_order_krw"  # 0.5 × 1,000,000 KRW capped at 50,000
    assert decisions[1][:2] == ("sell", "sell") and decisions[1][9] is None

    texts = stack.telegram.texts
    assert len(texts) == 2
    assert "BUY" in texts[0].upper() and "KRW-BTC" in texts[0] and "RSI &lt;30 &amp; trend up" in texts[0]
    assert "SELL" in texts[1].upper()
    assert BOT_TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr

    m = stack.metrics_samples()
    labels = (("mode", "live"), ("ticker", "KRW-BTC"))
    assert m[("tradebot_last_run_success", labels)] == 1.0
    assert m[("tradebot_trades_total", tuple(sorted(labels + (("side", "buy"), ("status", "completed")))))] == 1.0
    assert m[("tradebot_trades_total", tuple(sorted(labels + (("side", "sell"), ("status", "completed")))))] == 1.0
    assert m[("tradebot_decisions_total", tuple(sorted(labels + (("action", "buy"),))))] == 1.0
    tokens_in = sum(r[0] for r in stack.rows("SELECT input_tokens FROM decisions WHERE role = 'acting'"))
    assert tokens_in > 1800 and m[("tradebot_llm_tokens_total", tuple(sorted(labels + (("kind", "input"),))))] == tokens_in
    fees = sum(exchange_fill(o)[3] for o in orders)
    assert m[("tradebot_fees_krw_total", labels)] == pytest.approx(float(fees))
    assert ("tradebot_last_success_timestamp_seconds", labels) in stack.metrics_samples("tradebot_last_success.prom")


def test_hold_saves_no_trade(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("hold", fraction=0))
    out = stack.run("--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["outcome"] == "hold" and summary["exit_code"] == 0 and summary["fill"] is None
    assert stack.rows("SELECT count(*) FROM trades") == [(0,)]
    assert stack.rows("SELECT decision, action, error FROM decisions WHERE role = 'acting'") == [("hold", "hold", None)]
    assert stack.sim.orders() == [] and stack.telegram.texts == []


def test_low_confidence_is_vetoed_and_recorded(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy", confidence=0.3))
    out = stack.run()
    assert out.returncode == 0
    [(action, vetoes)] = stack.rows("SELECT action, vetoes FROM decisions WHERE role = 'acting'")
    assert action == "hold" and vetoes[0]["rule"] == "min_confidence"
    assert stack.sim.orders() == []


@pytest.mark.parametrize("bad", [
    {"decision": "buy", "confidence": 0.9, "fraction": 0.5, "reason": "x", "leverage": 10},  # extra field
    {"decision": "short", "confidence": 0.9, "fraction": 0.5, "reason": "x"},
    {"decision": "buy", "confidence": "high", "fraction": 0.5, "reason": "x"},
    {"decision": "buy", "confidence": 0.9, "fraction": 1.5, "reason": "x"},
    {"decision": "buy", "confidence": 0.9, "reason": "x"},
])
def test_malformed_model_answer_holds_alerts_and_exits_1(stack: Stack, bad: dict[str, Any]) -> None:
    stack.model.enqueue_tool_answer(bad)
    out = stack.run()
    assert out.returncode == 1, out.stdout
    assert out.stderr.splitlines()[-1].startswith("Error: advisor failed: ")
    assert stack.rows("SELECT count(*) FROM trades") == [(0,)] and stack.sim.orders() == []
    [(decision, action, error)] = stack.rows("SELECT decision, action, error FROM decisions WHERE role = 'acting'")
    assert decision is None and action == "hold" and error.startswith("advisor: ")
    assert len(stack.telegram.texts) == 1 and "advisor" in stack.telegram.texts[0]
    assert stack.metrics_samples()[("tradebot_last_run_success", (("mode", "live"), ("ticker", "KRW-BTC")))] == 0.0
    assert not (stack.metrics / "tradebot_last_success.prom").exists()


def test_model_timeout_holds_and_exits_1(stack: Stack) -> None:
    stack.model.enqueue_script_entry({"delay": 4.0, "tool_input": answer("buy")})
    out = stack.run(TRADEBOT_LLM_TIMEOUT_S="1")
    assert out.returncode == 1
    assert "advisor" in out.stderr and "tim" in out.stderr.lower()
    assert stack.sim.orders() == [] and stack.rows("SELECT count(*) FROM trades") == [(0,)]
    assert len(stack.telegram.texts) == 1


def test_exchange_rejection_is_recorded_as_failed(stack: Stack) -> None:
    stack.sim.set_faults(reject_next_order="market_offline")
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run()
    assert out.returncode == 1
    [(side, status, trade_id, _cid, price, amount, total, fee, error, _did)] = stack.rows(TRADE_SQL)
    assert (side, status, trade_id, price, amount, total, fee) == ("buy", "failed", None, None, None, None, None)
    assert error.startswith("market_offline")
    assert stack.sim.orders() == []
    assert len(stack.telegram.texts) == 1 and "market_offline" in stack.telegram.texts[0]


def test_filtered_cycle_does_not_ask_the_model(stack: Stack) -> None:
    # Threshold 0: any losing backtest filters (the seeded path's recent window loses for the rule strategy).
    out = stack.run("--json", TRADEBOT_BACKTEST_FILTER="on", TRADEBOT_BACKTEST_FILTER_THRESHOLD="0")
    assert out.returncode == 0, out.stderr
    [(filtered, decision, filter_result)] = stack.rows("SELECT filtered, decision, filter_result FROM decisions WHERE role = 'acting'")
    assert filter_result["return"] < 0, "the seeded market must make the rule strategy lose for this test"
    assert filtered is True and decision == "hold" and json.loads(out.stdout)["outcome"] == "filtered"
    assert stack.model.requests == [] and stack.sim.orders() == []


def test_unreachable_exchange_fails_without_order(stack: Stack) -> None:
    from tradebot.infra.localpg import free_port

    out = stack.run(UPBIT_API_URL=f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "portfolio" in out.stderr
    assert stack.rows("SELECT count(*) FROM trades") == [(0,)]
    [(error,)] = stack.rows("SELECT error FROM decisions WHERE role = 'acting'")
    assert error.startswith("portfolio: ")
    assert stack.model.requests == []


def test_paper_cycle_with_rules_never_imports_anthropic(stack: Stack) -> None:
    env = {**stack.env, "TRADEBOT_MODE": "paper", "TRADEBOT_ADVISOR": "rules"}
    code = ("import sys, runpy; sys.argv = ['tradebot', 'run-cycle']\n"
            "try:\n    runpy.run_module('tradebot', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
            "print('EXIT', code, 'ANTHROPIC', 'anthropic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "EXIT 0 ANTHROPIC False", out.stdout + out.stderr


def test_dry_run_records_the_decision_but_sends_nothing(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run("--dry-run", "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["outcome"] == "dry_run"
    assert stack.rows("SELECT action, dry_run FROM decisions WHERE role = 'acting'") == [("buy", True)]
    assert stack.sim.orders() == [] and stack.rows("SELECT count(*) FROM trades") == [(0,)]


def test_second_cycle_exits_75_while_the_lock_is_held(stack: Stack) -> None:
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtextextended('tradebot-cycle:KRW-BTC:live', 0))")
        out = stack.run()
    assert out.returncode == 75
    assert out.stderr.strip() == "Error: another cycle for KRW-BTC (live) is running; nothing done"
    assert out.stdout == "" and stack.rows("SELECT count(*) FROM decisions") == [(0,)]


def test_pause_stops_buys_but_not_sells(stack: Stack) -> None:
    assert run_cli(["pause", "--reason", "holiday"], stack.env).returncode == 0
    stack.model.enqueue_tool_answer(answer("buy"))
    stack.run()
    stack.sim.set_balance("BTC", Decimal("0.001"), Decimal("120000000"))
    stack.model.enqueue_tool_answer(answer("sell", fraction=1))
    stack.run()
    assert [r[0] for r in stack.rows("SELECT action FROM decisions WHERE role = 'acting' ORDER BY id")] == ["hold", "sell"]
    assert [o["side"] for o in stack.sim.orders()] == ["ask"]
    assert run_cli(["resume"], stack.env).returncode == 0
    stack.model.enqueue_tool_answer(answer("buy"))
    stack.run()
    assert [o["side"] for o in stack.sim.orders()] == ["ask", "bid"]


def test_metrics_command_rewrites_the_textfile_from_the_database(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy"))
    assert stack.run().returncode == 0
    before = stack.metrics_samples()
    (stack.metrics / "tradebot.prom").unlink()
    out = run_cli(["metrics"], stack.env)
    assert out.returncode == 0 and out.stdout.splitlines() == [
        f"wrote {stack.metrics / 'tradebot.prom'}", f"wrote {stack.metrics / 'tradebot_last_success.prom'}"]
    assert stack.metrics_samples() == before  # the same totals and the last run's gauges, from the database
    unset = {k: v for k, v in stack.env.items() if k != "TRADEBOT_METRICS_DIR"}
    out = run_cli(["metrics"], unset)
    assert out.returncode == 2 and out.stderr.startswith("Error: TRADEBOT_METRICS_DIR is not set")


def test_paper_reset_and_balance_commands(stack: Stack) -> None:
    env = {**stack.env, "TRADEBOT_MODE": "paper", "TRADEBOT_ADVISOR": "rules", "TRADEBOT_PAPER_KRW": "2000000"}
    out = run_cli(["paper", "balance"], env)
    assert out.returncode == 0 and out.stdout.split() == ["KRW", "2,000,000"]
    out = run_cli(["paper", "reset", "--krw", "300,000"], env)
    assert out.returncode == 0 and out.stdout.strip() == "Paper account reset to 300,000 KRW."
    assert run_cli(["paper", "balance"], env).stdout.split() == ["KRW", "300,000"]
    assert run_cli(["paper", "reset", "--krw", "lots"], env).returncode == 2
