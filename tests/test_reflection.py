"""Reflection (issue 13): the prompt's summary of the model's own scored decisions stays within 200 input
tokens (one market or five), is sent only when switched on, is recorded on the decision row, and the report
splits its figures by it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from tests.conftest import run_cli
from tests.stack import live_services
from tests.test_claude_advisor import make_input
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, answer
from tradebot.advisor.claude.portfolio_prompt import build_portfolio_prompt
from tradebot.advisor.claude.prompt import build_prompt, estimate_tokens
from tradebot.models import Market, PortfolioInput, PortfolioView, ScoredDecision

HEAD = "How your recent decisions turned out"


def worst(n: int) -> tuple[ScoredDecision, ...]:
    """Decisions whose figures take the most tokens: long prices, three-digit percentages, 24 h horizons."""
    at = datetime(2026, 12, 31, 23, tzinfo=UTC)
    return tuple(ScoredDecision(at - timedelta(hours=i), "sell", Decimal("123456789.123"), 24,
                                Decimal("-0.98765"), False) for i in range(n))


def summary(user: str) -> list[str]:
    return [line for line in user.splitlines() if line.startswith(HEAD)]


def test_the_summary_stays_within_200_tokens() -> None:
    base = make_input()
    _, off = build_prompt(base)
    assert summary(off) == []  # off: not in the prompt at all
    _, empty = build_prompt(base.__class__(**{**base.__dict__, "reflection": ()}))
    assert summary(empty) == [f"{HEAD} (time, action, price, change at +h, right after fees): none scored yet"]
    _, on = build_prompt(base.__class__(**{**base.__dict__, "reflection": worst(25)}))
    [line] = summary(on)
    assert estimate_tokens(line) <= 200 and line.count("wrong") >= 5  # as many of the last 10 as fit
    five = []
    for i, code in enumerate(("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE")):
        m = make_input(price=1000.0 * (i + 1))
        m = m.__class__(**{**m.__dict__, "position": m.position.__class__(**{**m.position.__dict__, "market": Market(code)}),
                           "reflection": worst(10)})
        five.append(m)
    view = PortfolioView(free_krw=Decimal(10**6), krw_reserve=Decimal(0), exposure_krw=Decimal(0), equity_krw=Decimal(10**6),
                         open_positions=0, max_open_positions=5, max_order_krw=Decimal(50000),
                         max_position_krw=Decimal(200000), max_exposure_krw=Decimal(10**6))
    _, user = build_portfolio_prompt(PortfolioInput(view, tuple(five)))
    lines = summary(user)
    assert len(lines) == 5 and sum(estimate_tokens(line) for line in lines) <= 200


def test_reflection_on_reaches_the_prompt_and_the_row_and_the_report_splits(tb_env: dict[str, str], db_url: str,
                                                                            tmp_path: Path) -> None:
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off") as (_sim, model, _telegram, env):
        model.enqueue_tool_answer(answer("hold"))
        assert run_cli(["run-cycle"], env).returncode == 0  # reflection off
        with psycopg.connect(db_url, autocommit=True) as conn:  # pretend that decision was scored
            [(did, price)] = conn.execute("SELECT id, price FROM decisions WHERE role = 'acting'").fetchall()
            conn.execute("INSERT INTO decision_scores VALUES (%s, 1, %s, 0.02, false)", (did, price))
        model.enqueue_tool_answer(answer("hold"))
        on = run_cli(["run-cycle"], {**env, "TRADEBOT_REFLECTION": "on"})
        assert on.returncode == 0, on.stdout + on.stderr
        users = [b["messages"][0]["content"] for b in model.bodies]
    assert summary(users[0]) == []
    [line] = summary(users[1])
    assert " hold " in line and "@1h wrong" in line and "+2" in line
    with psycopg.connect(db_url) as conn:
        flags = conn.execute("SELECT reflection FROM decisions WHERE role = 'acting' ORDER BY id").fetchall()
    assert flags == [(False,), (True,)]
    out = run_cli(["advisors", "report", "--format", "json", "--mode", "live"], env)
    labels = {(r["advisor"], r["reflection"]) for r in json.loads(out.stdout)["rows"]}
    assert {("claude", False), ("claude", True)} <= labels
