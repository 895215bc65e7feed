"""The model's bill (issue 13): the budget at its boundary (a request that would cross a cap falls back to the
rules, one that fits goes ahead), the spend summed from the decisions table, one alert a day, the prompt
cache marked only when asked for, the owner's prices — against the fake Anthropic API and real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_cli
from tests.fakes.anthropic_server import FakeAnthropic
from tests.stack import live_services
from tests.test_claude_advisor import make_input
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, answer
from tradebot.advisor.budget import BudgetedAdvisor, Caps, Spend, over_budget
from tradebot.advisor.claude import ClaudeAdvisor
from tradebot.advisor.claude.pricing import configured_price
from tradebot.advisor.rules import RulesAdvisor
from tradebot.errors import ConfigError
from tradebot.models import AdvisorInput

VALID = {"decision": "buy", "confidence": 0.8, "fraction": 0.5, "reason": "up"}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as f:
        yield f


@pytest.fixture(scope="module")
def inp() -> AdvisorInput:
    return make_input()


def test_over_budget_at_the_boundary() -> None:
    caps = Caps(Decimal("1.00"), Decimal("20"))
    assert over_budget(caps, Spend(Decimal("0.99"), Decimal("5")), Decimal("0.01")) is None  # exactly the cap
    why = over_budget(caps, Spend(Decimal("0.99"), Decimal("5")), Decimal("0.0101"))
    assert why is not None and why.startswith("model budget: 0.99 USD spent today + this request's estimate 0.0101 USD "
                                              "would pass the daily cap of 1 USD")
    assert "monthly cap of 20" in (over_budget(caps, Spend(Decimal(0), Decimal("19.995")), Decimal("0.01")) or "")
    assert over_budget(Caps(None, None), Spend(Decimal(9), Decimal(99)), Decimal(1)) is None


@pytest.mark.parametrize("margin", [Decimal(0), Decimal("-0.000001")])
def test_a_request_that_fits_goes_ahead_one_that_crosses_falls_back(fake: FakeAnthropic, inp: AdvisorInput,
                                                                    margin: Decimal) -> None:
    claude = ClaudeAdvisor("sk-test", "claude-sonnet-4-6", base_url=fake.url, max_retries=0)
    estimate = claude.estimate_usd(inp)
    assert Decimal("0.005") < estimate < Decimal("0.05")  # ~2,200 input tokens at $3/M + 400 output at $15/M
    spent = Spend(Decimal("0.30"), Decimal("4.00"))
    budgeted = BudgetedAdvisor(claude, RulesAdvisor(), Caps(spent.today_usd + estimate + margin, None), lambda: spent)
    fake.enqueue_tool_answer(VALID)
    result = budgeted.advise(inp)
    if margin == 0:
        assert result.advisor == "claude" and result.input_tokens > 0 and budgeted.fell_back == []
    else:
        assert result.advisor == "rules" and result.input_tokens == 0 and result.cost_usd == 0
        assert result.decision is not None and result.decision.reason.startswith("model budget: 0.3 USD spent today")
        assert "the rules decided: " in result.decision.reason and len(budgeted.fell_back) == 1
        assert fake.requests == []  # the model was not asked


def test_the_cache_is_marked_only_when_asked_and_costed_at_its_lifetime(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    for cache, mark in (("off", None), ("5m", {"type": "ephemeral", "ttl": "5m"}), ("1h", {"type": "ephemeral", "ttl": "1h"})):
        fake.enqueue_tool_answer(VALID, usage={"input_tokens": 1000, "output_tokens": 50, "cache_read_input_tokens": 0,
                                               "cache_creation_input_tokens": 1000})
        adv = ClaudeAdvisor("sk-test", "claude-sonnet-4-6", base_url=fake.url, max_retries=0, cache=cache)
        result = adv.advise(inp)
        assert fake.last_body["system"][0].get("cache_control") == mark
        write = {"off": Decimal("3.75"), "5m": Decimal("3.75"), "1h": Decimal("6")}[cache]  # USD per million
        assert result.cost_usd == (1000 * Decimal(3) + 50 * Decimal(15) + 1000 * write) / 1_000_000


def test_the_owners_prices() -> None:
    table = configured_price("claude-new-1", Decimal("2"), Decimal("8"))
    assert (table["claude-new-1"].input, table["claude-new-1"].cache_write, table["claude-new-1"].cache_read) == (
        Decimal(2), Decimal("2.50"), Decimal("0.2"))
    with pytest.raises(ConfigError, match="TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK"):
        configured_price("claude-new-1", Decimal("2"), None)


def test_the_cycle_falls_back_records_why_and_alerts_once_a_day(tb_env: dict[str, str], db_url: str,
                                                                tmp_path: Path) -> None:
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off",
                       TRADEBOT_LLM_DAILY_BUDGET_USD="0.50") as (_sim, model, telegram, env):
        with psycopg.connect(db_url, autocommit=True) as conn:  # 0.49 USD already spent today (another market)
            conn.execute("INSERT INTO decisions (ticker, mode, advisor, action, cost_usd, created_at) "
                         "VALUES ('KRW-ETH', 'paper', 'claude', 'hold', 0.49, %s)",
                         (datetime.now(UTC).replace(hour=0, minute=0, second=1),))
        model.enqueue_tool_answer(answer("buy"))
        outs = [run_cli(["run-cycle", "--json"], env) for _ in range(2)]
        assert all(o.returncode == 0 for o in outs), outs[0].stdout + outs[0].stderr
        rows = conn_rows(db_url, "SELECT advisor, input_tokens, reason FROM decisions WHERE role = 'acting' "
                                 "AND ticker = 'KRW-BTC' ORDER BY id")
        assert [r[:2] for r in rows] == [("rules", 0), ("rules", 0)]
        assert all(r[2].startswith("model budget: 0.49 USD spent today + this request's estimate") for r in rows)
        alerts = [t for t in telegram.texts if "model budget" in t]
        assert len(alerts) == 1 and "the daily cap of 0.5 USD" in alerts[0]
        assert json.loads(outs[0].stdout)["exit_code"] == 0
        prom = (tmp_path / "m" / "tradebot.prom").read_text()
        assert 'tradebot_llm_budget_fallbacks_today{mode="live",ticker="KRW-BTC"} 2.0' in prom
        assert "tradebot_llm_spend_today_usd 0.49" in prom and 'tradebot_llm_budget_usd{period="day"} 0.5' in prom
        assert 'tradebot_advisor_decisions_total{advisor="rules",mode="live",role="acting",ticker="KRW-BTC"} 2.0' in prom
        # The next day's spend starts afresh: with yesterday's 0.49 USD moved back a day, the model is asked.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE decisions SET created_at = created_at - interval '1 day'")
        third = run_cli(["run-cycle"], env)
        assert third.returncode == 0, third.stdout + third.stderr
        last = conn_rows(db_url, "SELECT advisor, input_tokens FROM decisions WHERE role = 'acting' "
                                 "AND ticker = 'KRW-BTC' ORDER BY id DESC LIMIT 1")
        assert last[0][0] == "claude" and last[0][1] > 0


def conn_rows(db_url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()




def test_the_model_is_not_asked_when_no_order_is_possible(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    # All 1,000,000 KRW of the simulator's account are the reserve, and no coin is held: nothing to buy or sell.
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off",
                       TRADEBOT_KRW_RESERVE="1000000") as (_sim, model, _telegram, env):
        out = run_cli(["run-cycle"], env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert model.requests == []
    assert "✓ advisor: not asked: no order possible" in out.stdout
    [(advisor, decision, tokens, reason)] = conn_rows(
        db_url, "SELECT advisor, decision, input_tokens, reason FROM decisions WHERE role = 'acting'")
    assert (advisor, decision, tokens) == ("claude", "hold", 0) and reason.startswith("not asked: no order possible")


def test_doctor_warns_about_a_model_without_a_price(tb_env: dict[str, str], tmp_path: Path) -> None:
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN) as (_sim, model, _telegram, env):
        model.models["claude-new-9"] = "Claude New 9"
        unknown = run_cli(["doctor"], {**env, "TRADEBOT_MODEL": "claude-new-9"})
        priced = run_cli(["doctor"], {**env, "TRADEBOT_MODEL": "claude-new-9", "TRADEBOT_MODEL_INPUT_USD_PER_MTOK": "2",
                                      "TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK": "8"})
    assert unknown.returncode == 0, unknown.stdout  # a warning, not a failure
    assert "! model price: no known price for claude-new-9" in unknown.stdout
    assert "model price" not in priced.stdout
