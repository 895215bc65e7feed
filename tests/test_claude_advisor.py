"""ClaudeAdvisor with the real anthropic client against the local fake Messages API (tests/fakes)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tradebot.advisor.claude import (
    DECISION_SCHEMA,
    DEFAULT_MODEL,
    MAX_RETRY_WAIT_S,
    SYSTEM_PROMPT,
    TOOL_NAME,
    ClaudeAdvisor,
    ModelPrice,
    build_prompt,
    estimate_request_tokens,
    estimate_tokens,
    fmt_num,
    parse_tool_input,
)
from tradebot.errors import AdvisorError
from tradebot.models import (
    AdvisorInput,
    Candle,
    Decision,
    IndicatorSnapshot,
    Market,
    PastDecision,
    Position,
    plain,
)

KEY = "fake-anthropic-test-SECRET-0123456789"
VALID: dict[str, Any] = {"decision": "buy", "confidence": 0.7, "fraction": 0.25,
                         "reason": "RSI 54 and close above sma20."}
T0 = datetime(2026, 11, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ inputs
def make_input(*, price: float = 143_000_000.0, hourly_n: int = 200, daily_n: int = 30, history_n: int = 10,
               seed: int = 7) -> AdvisorInput:
    """Synthetic but realistic: Upbit-like prices (integers for BTC, 4 decimals for cheap coins), 8-decimal
    volumes, indicators with full float precision."""
    rnd = random.Random(seed)
    def q(x: float) -> Decimal:  # Upbit's price ticks leave 4-5 significant digits
        return Decimal(str(round(x, 4 - math.floor(math.log10(x)))))

    hourly, p = [], price
    for i in range(hourly_n):
        o = p
        c = o * (1 + rnd.gauss(0, 0.004))
        h = max(o, c) * (1 + abs(rnd.gauss(0, 0.002)))
        lo = min(o, c) * (1 - abs(rnd.gauss(0, 0.002)))
        hourly.append(Candle(T0 + timedelta(hours=i), q(o), q(h), q(lo), q(c),
                             Decimal(str(round(rnd.uniform(5, 60), 8))), Decimal("1234567890.12345")))
        p = c
    daily, p = [], price * 0.9
    for i in range(daily_n):
        o = p
        c = o * (1 + rnd.gauss(0, 0.02))
        daily.append(Candle(T0 - timedelta(days=daily_n - i), q(o), q(max(o, c) * 1.01), q(min(o, c) * 0.99), q(c),
                            Decimal("1234.56789012")))
        p = c
    close = float(hourly[-1].close)
    ind = IndicatorSnapshot(
        close=close, rsi14=54.321987, sma20=price * 1.0012345, sma60=price * 0.99876, ema20=price * 1.0009876,
        ema60=price * 0.998765, macd=price * 0.000863, macd_signal=-price * 0.00069, macd_hist=price * 0.00155,
        bb_mid=price * 1.0012345, bb_upper=price * 1.0212345, bb_lower=price * 0.9812345, atr14=price * 0.0061234,
        volume_change=-0.123456,
    )
    pos = Position(market=Market("KRW-BTC"), free_krw=Decimal("1234567.8912"), locked_krw=Decimal("5000"),
                   coin_volume=Decimal("0.01234567"), coin_free=Decimal("0.01200001"),
                   avg_buy_price=q(price * 0.98) + (Decimal("0.21") if price > 1e6 else 0),
                   price=hourly[-1].close)
    history = tuple(
        PastDecision(at=T0 + timedelta(hours=hourly_n - history_n + i, minutes=5),
                     action=("buy", "sell", "hold")[i % 3],
                     confidence=Decimal("0.62"), price_then=hourly[-history_n + i].close,
                     price_change_since=Decimal("-0.012345"), traded=i % 2 == 0)
        for i in range(history_n)
    )
    return AdvisorInput(pos, ind, tuple(hourly), tuple(daily), history)


@pytest.fixture(scope="module")
def inp() -> AdvisorInput:
    return make_input()


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as server:
        yield server


def advisor(fake: FakeAnthropic, **kw: Any) -> ClaudeAdvisor:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout_s", 5.0)
    return ClaudeAdvisor(kw.pop("api_key", KEY), kw.pop("model", DEFAULT_MODEL), base_url=fake.url, **kw)


# ------------------------------------------------------------------------------------------- happy path
def test_valid_answer_is_parsed_with_decimals_usage_and_cost(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_tool_answer(VALID, usage={"input_tokens": 1500, "output_tokens": 80,
                                           "cache_creation_input_tokens": None, "cache_read_input_tokens": None})
    result = advisor(fake).advise(inp)

    assert result.error is None
    assert result.decision == Decision("buy", Decimal("0.7"), Decimal("0.25"), VALID["reason"])
    assert isinstance(result.decision.confidence, Decimal)
    assert result.advisor == "claude" and result.model == DEFAULT_MODEL
    assert (result.input_tokens, result.output_tokens) == (1500, 80)
    assert (result.cache_write_tokens, result.cache_read_tokens) == (0, 0)  # None → 0
    assert result.cost_usd == Decimal("0.0057")  # 1500 × $3/M + 80 × $15/M
    assert json.loads(result.raw_response or "") == VALID
    system, user = build_prompt(inp)
    assert result.prompt_hash == hashlib.sha256((system + "\n\n" + user).encode()).hexdigest()
    assert result.latency_s > 0


def test_request_has_the_system_block_forced_strict_tool_and_the_prompt(fake: FakeAnthropic,
                                                                            inp: AdvisorInput) -> None:
    fake.enqueue_tool_answer(VALID)
    advisor(fake, max_tokens=321).advise(inp)

    body = fake.last_body
    system, user = build_prompt(inp)
    assert body["model"] == DEFAULT_MODEL and body["max_tokens"] == 321
    # No cache mark by default: an hourly request is read back after any cache lifetime (issue 13).
    assert body["system"] == [{"type": "text", "text": system}]
    assert body["messages"] == [{"role": "user", "content": user}]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME, "disable_parallel_tool_use": True}
    (tool,) = body["tools"]
    assert tool["name"] == TOOL_NAME and tool["strict"] is True
    schema = tool["input_schema"]
    assert schema["required"] == ["decision", "confidence", "fraction", "reason"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["decision"]["enum"] == ["buy", "sell", "hold"]
    assert "thinking" not in body  # a forced tool cannot be combined with extended thinking
    headers = fake.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert "anthropic-version" in headers


def test_strict_schema_keeps_bounds_out_because_the_api_rejects_them(fake: FakeAnthropic) -> None:
    """Strict tool use rejects minimum/maximum/maxLength with a 400 on every request; the fake does the same.
    The bounds live in the descriptions and in parse_tool_input."""
    import anthropic

    def walk(s: Any) -> set[str]:
        keys = set(s) if isinstance(s, dict) else set()
        for v in (s.values() if isinstance(s, dict) else []):
            keys |= walk(v)
        return keys

    assert not walk(DECISION_SCHEMA) & {"minimum", "maximum", "maxLength", "minLength"}
    with_bounds = json.loads(json.dumps(DECISION_SCHEMA))
    with_bounds["properties"]["fraction"].update(minimum=0, maximum=1)
    client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="maximum, minimum are not supported"):
        client.messages.create(model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}],
                               tools=[{"name": TOOL_NAME, "strict": True, "input_schema": with_bounds}])


def test_cache_tokens_are_costed_at_cache_prices(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_tool_answer(VALID, usage={"input_tokens": 900, "output_tokens": 100,
                                           "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 500})
    result = advisor(fake).advise(inp)
    assert (result.cache_write_tokens, result.cache_read_tokens) == (1000, 500)
    # 900 × 3 + 100 × 15 + 1000 × 3.75 + 500 × 0.30, per million
    assert result.cost_usd == Decimal("0.00810")


def test_custom_and_unknown_model_prices(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    fake.enqueue_tool_answer(VALID, usage=usage)
    prices = {"my-model": ModelPrice(Decimal(2), Decimal(8), Decimal("2.5"), Decimal("0.2"))}
    assert advisor(fake, model="my-model", prices=prices).advise(inp).cost_usd == Decimal(2)
    fake.enqueue_tool_answer(VALID, usage=usage)  # dated id falls back to its alias
    assert advisor(fake, model="claude-haiku-4-5-20251001").advise(inp).cost_usd == Decimal(1)
    fake.enqueue_tool_answer(VALID, usage=usage)  # unknown: costed conservatively, never as free
    assert advisor(fake, model="claude-unknown-9").advise(inp).cost_usd == Decimal(5)


# ------------------------------------------------------------------------------------- invalid answers
INVALID = {
    "extra field": ({**VALID, "stop_loss": 0.02}, "unexpected field(s) stop_loss"),
    "missing field": ({k: v for k, v in VALID.items() if k != "fraction"}, "missing fraction"),
    "confidence as string": ({**VALID, "confidence": "0.7"}, "confidence must be a number, got str"),
    "confidence as bool": ({**VALID, "confidence": True}, "confidence must be a number, got bool"),
    "fraction null": ({**VALID, "fraction": None}, "fraction must be a number, got NoneType"),
    "NaN": ({**VALID, "confidence": float("nan")}, "confidence must be a finite number"),
    "Infinity": ({**VALID, "fraction": float("inf")}, "fraction must be a finite number"),
    "fraction 1.5": ({**VALID, "fraction": 1.5}, "fraction must be between 0 and 1, got 1.5"),
    "negative confidence": ({**VALID, "confidence": -0.1}, "confidence must be between 0 and 1"),
    "decision short": ({**VALID, "decision": "short"}, "decision must be buy, sell or hold, got 'short'"),
    "decision upper": ({**VALID, "decision": "BUY"}, "decision must be buy, sell or hold"),
    "empty reason": ({**VALID, "reason": "   "}, "reason is empty"),
    "reason too long": ({**VALID, "reason": "x" * 601}, "reason is 601 characters"),
    "reason not string": ({**VALID, "reason": ["a"]}, "reason must be a string"),
    "not an object": ([VALID], "tool input must be an object, got list"),
}


@pytest.mark.parametrize("answer, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_answers_give_no_decision_but_keep_usage(fake: FakeAnthropic, inp: AdvisorInput,
                                                         answer: Any, message: str) -> None:
    fake.enqueue_tool_answer(answer, usage={"input_tokens": 1000, "output_tokens": 50})
    result = advisor(fake).advise(inp)
    assert result.decision is None
    assert result.error is not None and message in result.error
    assert "request_id req_fake_" in result.error
    assert "\n" not in result.error
    assert (result.input_tokens, result.output_tokens) == (1000, 50)  # billed, so recorded
    assert result.cost_usd > 0
    assert result.raw_response  # the answer as received, for the audit row


def test_nan_goes_over_the_wire_as_a_json_literal(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_tool_answer({**VALID, "confidence": float("nan")})
    result = advisor(fake).advise(inp)
    assert result.decision is None and "finite" in (result.error or "")
    assert '"confidence": NaN' in (result.raw_response or "")


def test_parse_tool_input_accepts_integer_bounds_and_strips_reason() -> None:
    d = parse_tool_input({"decision": "sell", "confidence": 1, "fraction": 0, "reason": "  out  "})
    assert d == Decision("sell", Decimal("1"), Decimal("0"), "out")
    d = parse_tool_input({"decision": "hold", "confidence": 0.1 + 0.2, "fraction": 0.0, "reason": "r" * 600})
    assert d.confidence == Decimal("0.30000000000000004")  # Decimal(str(x)): the number as sent
    with pytest.raises(AdvisorError):
        parse_tool_input(None)


@pytest.mark.parametrize("stop_reason", ["max_tokens", "end_turn", "model_context_window_exceeded", "pause_turn"])
def test_stop_reason_other_than_tool_use_is_an_error(fake: FakeAnthropic, inp: AdvisorInput,
                                                     stop_reason: str) -> None:
    # A truncated forced-tool answer: the block is there but cut short.
    fake.enqueue_tool_answer({"decision": "buy", "confidence": 0.9, "fraction": 1, "reason": "cut"},
                             stop_reason=stop_reason)
    result = advisor(fake).advise(inp)
    assert result.decision is None
    assert f"stop_reason {stop_reason}" in (result.error or "")


def test_refusal(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_text("", stop_reason="refusal",
                      stop_details={"type": "refusal", "category": "general_harms", "explanation": None})
    result = advisor(fake).advise(inp)
    assert result.decision is None
    assert "stop_reason refusal (general_harms)" in (result.error or "")


def test_text_instead_of_tool_and_wrong_tool(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_text("I think you should buy.", stop_reason="end_turn")
    result = advisor(fake).advise(inp)
    assert result.decision is None and result.raw_response == "I think you should buy."
    fake.enqueue_tool_answer(VALID, name="other_tool")
    result = advisor(fake).advise(inp)
    assert result.decision is None and "called: other_tool" in (result.error or "")


@pytest.mark.parametrize("body", ["not json at all", {"unexpected": 1}, {"type": "message", "content": "oops"}])
def test_malformed_200_responses(fake: FakeAnthropic, inp: AdvisorInput, body: Any) -> None:
    fake.enqueue_raw(200, body)
    result = advisor(fake).advise(inp)
    assert result.decision is None and "malformed response" in (result.error or "")


# --------------------------------------------------------------------------------------- HTTP failures
@pytest.mark.parametrize("status, kind, expected", [
    (500, "api_error", "HTTP 500 api_error: Internal server error"),
    (529, "overloaded_error", "HTTP 529 overloaded_error: Overloaded"),
    (429, "rate_limit_error", "HTTP 429 rate_limit_error"),
    (400, "invalid_request_error", "HTTP 400 invalid_request_error"),
    (404, "not_found_error", "HTTP 404 not_found_error"),
])
def test_status_errors_give_no_decision_and_one_request_without_retries(
        fake: FakeAnthropic, inp: AdvisorInput, status: int, kind: str, expected: str) -> None:
    messages = {"api_error": "Internal server error", "overloaded_error": "Overloaded"}
    fake.enqueue_error(status, kind, messages.get(kind, "nope"), headers={"retry-after": "0"})
    result = advisor(fake).advise(inp)
    assert result.decision is None
    assert expected in (result.error or "")
    assert "request_id req_fake_" in (result.error or "")
    assert len(fake.requests) == 1
    assert result.input_tokens == 0 and result.cost_usd == 0


def test_retries_are_capped_and_then_succeed(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    sleeps: list[float] = []
    fake.enqueue_error(529, "overloaded_error", "Overloaded", headers={"retry-after": "3600"})
    fake.enqueue_error(500, "api_error", "boom")
    fake.enqueue_tool_answer(VALID)
    result = advisor(fake, max_retries=2, sleep=sleeps.append).advise(inp)
    assert result.decision is not None and result.error is None
    assert sleeps == [MAX_RETRY_WAIT_S, 2.0]  # retry-after 3600 s capped; then exponential backoff
    assert len(fake.requests) == 3


def test_retries_exhausted_and_non_retryable_statuses(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    sleeps: list[float] = []
    for _ in range(2):
        fake.enqueue_error(503, "api_error", "unavailable", headers={"retry-after": "0.5"})
    result = advisor(fake, max_retries=1, sleep=sleeps.append).advise(inp)
    assert "HTTP 503" in (result.error or "") and "after 2 attempts" in (result.error or "")
    assert sleeps == [0.5]
    fake.enqueue_error(400, "invalid_request_error", "bad")  # never retried
    result = advisor(fake, max_retries=2, sleep=sleeps.append).advise(inp)
    assert "HTTP 400" in (result.error or "") and len(fake.requests) == 3 and sleeps == [0.5]


def test_timeout(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_delay(3.0)
    started = time.monotonic()
    result = advisor(fake, timeout_s=0.3).advise(inp)
    assert time.monotonic() - started < 2.0
    assert result.decision is None
    assert result.error == "Claude API timed out (timeout 0.3 s)"


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    adv = ClaudeAdvisor(KEY, DEFAULT_MODEL, base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout_s=2)
    result = adv.advise(make_input(hourly_n=30, daily_n=5, history_n=0))
    assert result.decision is None
    assert (result.error or "").startswith("could not connect to the Claude API")
    assert KEY not in (result.error or "")


def test_wrong_key_401_never_shows_the_key(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    wrong = "fake-anthropic-WRONG-secret-key-987"
    result = advisor(fake, api_key=wrong).advise(inp)
    assert result.decision is None
    assert "HTTP 401 authentication_error" in (result.error or "")
    assert "check the Anthropic API key" in (result.error or "")
    assert wrong not in (result.error or "") and wrong not in repr(advisor(fake, api_key=wrong))


def test_key_echoed_by_the_server_is_scrubbed(fake: FakeAnthropic, inp: AdvisorInput) -> None:
    fake.enqueue_error(400, "invalid_request_error", f"bad header Authorization: Bearer {KEY}")
    result = advisor(fake).advise(inp)
    assert KEY not in (result.error or "") and "***" in (result.error or "")


def test_constructor_rejects_bad_settings() -> None:
    for kwargs in ({"api_key": ""}, {"timeout_s": 0}, {"max_retries": -1}):
        args: dict[str, Any] = {"api_key": KEY, **kwargs}
        with pytest.raises(ValueError):
            ClaudeAdvisor(args.pop("api_key"), DEFAULT_MODEL, **args)


# ----------------------------------------------------------------------------------------------- prompt
def test_prompt_contains_every_indicator_and_position_figure(inp: AdvisorInput) -> None:
    system, user = build_prompt(inp)
    p, ind = inp.position, inp.indicators
    for name, value in ind.as_dict().items():
        assert name in user, name
        if name == "volume_change":
            assert "volume_change -12.3%" in user
        elif name == "rsi14":
            assert f"rsi14 {fmt_num(value, 3)}" in user
        elif name.startswith("macd") or name == "atr14":
            assert f"{name} {fmt_num(value, 4)}" in user
        else:
            assert f"{name} {fmt_num(value)}" in user, name
    for figure in ("free_krw", "locked_krw", "coin_volume", "avg_buy_price", "price"):
        assert f"{figure} {plain(getattr(p, figure))}" in user
    assert f"(free {plain(p.coin_free)})" in user
    assert "position_value 1" in user and "equity " in user and "exposure " in user and "unrealized " in user
    assert "Orders possible: buy yes, sell yes" in user
    assert p.market in user and p.market not in system  # the system text is the same for every market
    assert TOOL_NAME in system and "fraction is a ceiling" in system
    # the last 24 hourly candles as rows, daily closes, the last 10 decisions
    for c in inp.hourly[-24:]:
        assert f"{fmt_num(c.open)} {fmt_num(c.high)} {fmt_num(c.low)} {fmt_num(c.close)}" in user
    assert " ".join(fmt_num(c.close) for c in inp.daily) in user
    assert user.count("-1.23% yes") + user.count("-1.23% no") == 10


def test_prompt_is_pure_and_system_text_is_stable() -> None:
    a, b = make_input(seed=1), make_input(seed=2)
    assert build_prompt(a) == build_prompt(a)
    assert build_prompt(a)[0] == build_prompt(b)[0] == SYSTEM_PROMPT
    assert build_prompt(a)[1] != build_prompt(b)[1]


@pytest.mark.parametrize("price", [143_000_000.0, 3_150.0, 0.0123])
def test_prompt_size_for_200_hourly_and_30_daily_candles(price: float) -> None:
    """The whole request (system + user + tool definition + Anthropic's ~346-token tool-use prompt) stays
    under 2,500 input tokens by a pessimistic estimate: max(chars / 3.5, 1 token per 3 digits / 4 letters /
    punctuation mark). Sending 200 raw candles would be several times that."""
    system, user = build_prompt(make_input(price=price))
    total = estimate_request_tokens(system, user)
    assert total <= 2500, total
    assert len(system + user) / 3.5 < 1600
    # More candles or history do not grow the prompt: the table is always the last 24 hours.
    bigger = build_prompt(make_input(price=price, hourly_n=500, daily_n=90, history_n=40))[1]
    assert abs(estimate_tokens(bigger) - estimate_tokens(user)) < 40


def test_prompt_handles_missing_indicators_and_empty_history() -> None:
    base = make_input(hourly_n=30, daily_n=3, history_n=0)
    none_ind = IndicatorSnapshot(close=base.indicators.close, **{k: None for k in base.indicators.as_dict()
                                                                 if k != "close"})
    flat = Position("KRW-ETH", Decimal("1000"), Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal("5000000"))
    _, user = build_prompt(AdvisorInput(flat, none_ind, base.hourly, (), ()))
    assert "rsi14 n/a" in user and "macd_hist n/a" in user and "volume_change n/a" in user
    assert "Daily candles: none." in user and "Your recent decisions: none." in user
    assert "Orders possible: buy no, sell no" in user and "unrealized n/a" in user


def test_importing_the_module_does_not_import_anthropic() -> None:
    code = "import sys, tradebot.advisor.claude; assert 'anthropic' not in sys.modules, 'anthropic imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_fake_runs_as_a_process_with_a_script(tmp_path: Any, inp: AdvisorInput) -> None:
    script = tmp_path / "answers.json"
    script.write_text(json.dumps([{"tool_input": {**VALID, "decision": "sell"}},
                                  {"status": 529, "body": {"type": "error", "error": {"type": "overloaded_error",
                                                                                       "message": "Overloaded"}}}]))
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.anthropic_server", "--port", "0",
                             "--script", str(script), "--requests-log", str(log)],
                            stdout=subprocess.PIPE, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        adv = ClaudeAdvisor(KEY, DEFAULT_MODEL, base_url=url, max_retries=0, timeout_s=5)
        assert adv.advise(inp).decision.action == "sell"  # type: ignore[union-attr]
        assert "HTTP 529" in (adv.advise(inp).error or "")
        assert adv.advise(inp).decision.action == "hold"  # type: ignore[union-attr]  # script exhausted
        assert len(log.read_text().splitlines()) == 3
    finally:
        proc.terminate()
        proc.wait(5)
