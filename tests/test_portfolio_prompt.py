"""The portfolio prompt and its answer (issue 12): one request for several markets, under 3,000 input tokens for
five; one entry per market in the answer, each checked on its own; the request's tokens and cost shared out
exactly. The real ``anthropic`` client over HTTP against the fake API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.test_claude_advisor import make_input
from tradebot.advisor.claude import ClaudeAdvisor, estimate_tokens
from tradebot.advisor.claude.client import share_usage
from tradebot.advisor.claude.portfolio_prompt import (
    PORTFOLIO_SYSTEM_PROMPT,
    PORTFOLIO_TOOL_NAME,
    build_portfolio_prompt,
    parse_portfolio_answer,
    portfolio_tool,
)
from tradebot.advisor.claude.prompt import TOOL_USE_OVERHEAD_TOKENS
from tradebot.errors import AdvisorError
from tradebot.models import AdvisorInput, AdvisorResult, Decision, Market, PortfolioInput, PortfolioView

NAMES = ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-BTT", "KRW-SOL")
PRICES = (143_000_000.0, 5_150_000.0, 3_150.0, 0.0123, 250_000.0)


def portfolio(n: int = 5, prices: tuple[float, ...] = PRICES) -> PortfolioInput:
    inputs: list[AdvisorInput] = []
    for name, price in zip(NAMES[:n], prices[:n], strict=True):
        i = make_input(price=price)
        inputs.append(replace(i, position=replace(i.position, market=Market(name))))
    view = PortfolioView(free_krw=Decimal("1234567.89"), krw_reserve=Decimal(100000), exposure_krw=Decimal("456789.12"),
                         equity_krw=Decimal("1691357.01"), open_positions=2, max_open_positions=5,
                         max_order_krw=Decimal(50000), max_position_krw=Decimal(200000), max_exposure_krw=Decimal(600000))
    return PortfolioInput(view, tuple(inputs))


def request_tokens(inp: PortfolioInput) -> int:
    system, user = build_portfolio_prompt(inp)
    tool = portfolio_tool([m.position.market for m in inp.markets])
    return estimate_tokens(system) + estimate_tokens(user) + estimate_tokens(json.dumps(tool)) + TOOL_USE_OVERHEAD_TOKENS


@pytest.mark.parametrize("prices", [PRICES, (143_000_000.0,) * 5, (0.0123,) * 5])
def test_five_markets_stay_under_3000_input_tokens(prices: tuple[float, ...]) -> None:
    """The pessimistic estimate of the whole request (system, user, tool, Anthropic's tool-use prompt)."""
    assert request_tokens(portfolio(5, prices)) <= 3000


def test_the_prompt_has_the_portfolio_once_and_a_block_per_market() -> None:
    system, user = build_portfolio_prompt(portfolio())
    assert system == PORTFOLIO_SYSTEM_PROMPT and PORTFOLIO_TOOL_NAME in system
    assert user.count("Portfolio: free_krw 1234567.89, reserve 100000") == 1
    assert "open positions 2 of at most 5" in user and "max_exposure 600000" in user
    for name in NAMES:
        assert user.count(f"## {name} ") == 1
    assert build_portfolio_prompt(portfolio()) == (system, user)  # pure
    # A market where no buy is possible says so (free KRW above the reserve is what a buy may spend).
    poor = portfolio(2)
    poor = replace(poor, portfolio=replace(poor.portfolio, free_krw=Decimal(104000)))
    assert "buy no" in build_portfolio_prompt(poor)[1]


def entry(market: str, decision: str = "buy", confidence: float = 0.8, fraction: float = 0.5, reason: str = "r") -> dict[str, object]:
    return {"market": market, "decision": decision, "confidence": confidence, "fraction": fraction, "reason": reason}


def test_each_entry_is_checked_on_its_own() -> None:
    markets = [Market(m) for m in NAMES[:4]]
    answer = {"decisions": [entry("KRW-BTC"), entry("KRW-ETH"), entry("KRW-ETH", "sell"),
                            entry("KRW-XRP", confidence=1.5), entry("KRW-DOGE")]}
    out, unknown = parse_portfolio_answer(answer, markets)
    assert out[Market("KRW-BTC")] == Decision("buy", Decimal("0.8"), Decimal("0.5"), "r")
    assert out[Market("KRW-ETH")] == "Claude's answer has 2 entries for KRW-ETH; none is used"
    assert str(out[Market("KRW-XRP")]).startswith("Claude's answer for KRW-XRP is invalid: confidence must be between")
    assert out[Market("KRW-BTT")] == "Claude's answer has no entry for KRW-BTT"
    assert unknown == ["KRW-DOGE"]
    long = {"decisions": [entry("KRW-BTC", reason="x" * 301)]}
    assert "more than 300" in str(parse_portfolio_answer(long, markets[:1])[0][Market("KRW-BTC")])
    for bad in ([entry("KRW-BTC")], {"decisions": "all buy"}, {"decisions": [], "extra": 1}):
        with pytest.raises(AdvisorError):
            parse_portfolio_answer(bad, markets)


def test_the_request_bill_is_shared_out_exactly() -> None:
    result = AdvisorResult(advisor="claude", model="m", decision=None, input_tokens=2731, output_tokens=301,
                           cache_read_tokens=7, cache_write_tokens=0, cost_usd=Decimal("0.0123456789012"))
    shares = share_usage(result, 3)
    assert sum(s.input_tokens for s in shares) == 2731 and sum(s.output_tokens for s in shares) == 301
    assert sum(s.cache_read_tokens for s in shares) == 7
    assert sum((s.cost_usd for s in shares), Decimal(0)) == result.cost_usd
    assert [s.input_tokens for s in shares] == [911, 910, 910]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as f:
        yield f


def test_one_request_answers_every_market_through_the_real_client(fake: FakeAnthropic) -> None:
    inp = portfolio(3)
    fake.enqueue_tool_answer({"decisions": [entry("KRW-ETH", "sell", 0.7, 1), entry("KRW-BTC")]},
                             name=PORTFOLIO_TOOL_NAME, usage={"input_tokens": 2400, "output_tokens": 150})
    advisor = ClaudeAdvisor("sk-test", "claude-sonnet-4-6", base_url=fake.url, max_retries=0)
    results = advisor.advise_portfolio(inp)
    assert list(results) == [Market("KRW-BTC"), Market("KRW-ETH"), Market("KRW-XRP")]
    assert results[Market("KRW-BTC")].decision == Decision("buy", Decimal("0.8"), Decimal("0.5"), "r")
    assert results[Market("KRW-ETH")].decision is not None and results[Market("KRW-ETH")].decision.action == "sell"
    xrp = results[Market("KRW-XRP")]
    assert xrp.decision is None and xrp.error == "Claude's answer has no entry for KRW-XRP"
    assert sum(r.input_tokens for r in results.values()) == 2400 and sum(r.output_tokens for r in results.values()) == 150
    [body] = fake.bodies
    assert body["tools"][0]["name"] == PORTFOLIO_TOOL_NAME and body["tool_choice"]["name"] == PORTFOLIO_TOOL_NAME
    assert body["max_tokens"] >= 100 + 160 * 3  # room for every market's entry
    # A failed request fails every market, with the reason.
    fake.enqueue_error(529, "overloaded_error", "Overloaded")
    failed = advisor.advise_portfolio(inp)
    assert all(r.decision is None and "529" in (r.error or "") for r in failed.values())
