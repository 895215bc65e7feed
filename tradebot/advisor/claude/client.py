"""The Claude client: ``ClaudeAdvisor`` asks for one decision through the forced, strict ``record_decision``
tool, with its own capped retries and timeouts, checks the response (stop reason, exactly one call of the
tool) and validates the tool input with ``parse_tool_input``; ``check_model`` verifies the key and the model
id for ``tradebot doctor``.

``anthropic`` is imported lazily (on the first request): importing it takes over a second, and most commands
never call the model. ``advise`` never raises for API or answer problems: the result carries
``decision=None`` and an ``error`` instead, with tokens and cost whenever the API answered.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tradebot.advisor.claude.answer import parse_tool_input
from tradebot.advisor.claude.portfolio_prompt import (
    OUTPUT_TOKENS_PER_MARKET,
    PORTFOLIO_TOOL_CHOICE,
    build_portfolio_prompt,
    parse_portfolio_answer,
    portfolio_tool,
)
from tradebot.advisor.claude.pricing import (
    FALLBACK_PRICE,
    PRICES,
    ModelPrice,
    cost_usd,
    price_for,
)
from tradebot.advisor.claude.prompt import (
    TOOL,
    TOOL_CHOICE,
    TOOL_USE_OVERHEAD_TOKENS,
    build_prompt,
    estimate_tokens,
    prompt_hash,
)
from tradebot.config import DEFAULT_MODEL
from tradebot.errors import AdvisorError
from tradebot.models import AdvisorInput, AdvisorResult, Decision, Market, PortfolioInput

if TYPE_CHECKING:  # only for annotations; the real import happens in ClaudeAdvisor._get_client
    import anthropic
    from anthropic.types import Message

# The package's name, not this module's: log lines ("%(name)s") read as they did before the split.
log = logging.getLogger("tradebot.advisor.claude")


# Own retry policy (the SDK's is turned off): the SDK honours any ``retry-after`` without a practical cap,
# which an hourly job cannot afford. We wait at most this long between attempts.
MAX_RETRY_WAIT_S = 10.0
_RETRYABLE_STATUS = frozenset({408, 409, 429})  # plus every 5xx (529 overloaded included)


# ----------------------------------------------------------------------------------------------- advisor
def _count(x: object) -> int:
    """A token count from ``usage`` (None, missing or malformed → 0)."""
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else 0


class ClaudeAdvisor:
    """Asks Claude for buy/sell/hold through a forced, strict ``record_decision`` tool."""

    name = "claude"

    def __init__(self, api_key: str, model: str, *, base_url: str | None = None,
                 timeout_s: float = 60.0, max_retries: int = 2, max_tokens: int = 400,
                 prices: dict[str, ModelPrice] | None = None, cache: str = "off",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        if not model:
            raise ValueError("model is empty")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if cache not in ("off", "5m", "1h"):
            raise ValueError("cache must be off, 5m or 1h")
        self._api_key = api_key
        self.model = model
        self.base_url = base_url
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.max_tokens = int(max_tokens)
        self.prices = PRICES if prices is None else prices
        self.cache = cache  # see _ask: the prompt cache is marked only when the owner says it is read again
        self._sleep = sleep
        self._client: anthropic.Anthropic | None = None
        self._anthropic: Any = None

    def __repr__(self) -> str:  # never show the key
        return f"ClaudeAdvisor(model={self.model!r}, base_url={self.base_url!r})"

    # -- plumbing
    def _get_client(self) -> anthropic.Anthropic:
        if self._client is None:
            import anthropic  # lazy: ~1.3 s

            self._anthropic = anthropic
            # SDK retries off: _create retries with a capped wait (see MAX_RETRY_WAIT_S).
            self._client = anthropic.Anthropic(api_key=self._api_key, base_url=self.base_url,
                                               timeout=self.timeout_s, max_retries=0)
        return self._client

    def _clean(self, text: str) -> str:
        """One line, bounded, and never the API key."""
        text = " ".join(str(text).split())
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:300]

    def _retry_wait(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        if headers is not None:
            for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
                value = headers.get(name)
                if value is not None:
                    try:
                        wait = float(value) * scale
                    except ValueError:
                        continue
                    if math.isfinite(wait) and wait >= 0:
                        return min(wait, MAX_RETRY_WAIT_S)
        return min(1.0 * 2.0**attempt, MAX_RETRY_WAIT_S)

    def _create(self, params: dict[str, Any]) -> Message:
        """messages.create with our retry policy; raises ``_GaveUp`` with the last SDK error."""
        client = self._get_client()
        a = self._anthropic
        attempt = 0
        while True:
            attempt += 1
            try:
                message: Message = client.messages.create(**params)
                return message
            except a.APIStatusError as e:
                should = e.response.headers.get("x-should-retry")
                retryable = should == "true" or (should != "false" and (
                    e.status_code in _RETRYABLE_STATUS or e.status_code >= 500))
                if not retryable or attempt > self.max_retries:
                    raise _GaveUp(e, attempt) from e
                wait = self._retry_wait(attempt - 1, e.response.headers)
                log.warning("Claude API HTTP %s (request_id %s); retrying in %.1f s",
                            e.status_code, e.request_id, wait)
            except a.APIConnectionError as e:
                if attempt > self.max_retries:
                    raise _GaveUp(e, attempt) from e
                wait = self._retry_wait(attempt - 1, None)
                log.warning("Claude API %s; retrying in %.1f s", type(e).__name__, wait)
            except a.AnthropicError as e:  # anything else from the SDK: not retried
                raise _GaveUp(e, attempt) from e
            self._sleep(wait)

    def _describe(self, e: BaseException, attempts: int) -> str:
        """A one-line message for an SDK exception, built from its class, status, error type and the API's
        own message (never the exception's text, which may carry request details)."""
        a = self._anthropic
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(e, a.APITimeoutError):
            return f"Claude API timed out (timeout {self.timeout_s:g} s){tries}"
        if isinstance(e, a.APIConnectionError):
            cause = type(e.__cause__).__name__ if e.__cause__ else "connection failed"
            return f"could not connect to the Claude API ({cause}){tries}"
        if isinstance(e, a.APIStatusError):
            kind = e.type or type(e).__name__
            detail = f": {self._clean(e.api_message)[:160]}" if e.api_message else ""
            hint = " (check the Anthropic API key)" if e.status_code == 401 else ""
            return f"Claude API HTTP {e.status_code} {kind}{detail}{hint}{tries}"
        return f"Claude API error: {type(e).__name__}{tries}"

    def _failed(self, result: AdvisorResult, message: str, request_id: str | None) -> AdvisorResult:
        error = self._clean(message) + (f" [request_id {request_id}]" if request_id else "")
        log.warning("Claude advisor failed: %s", error)
        return replace(result, decision=None, error=error)

    # -- the bill before the call
    def price(self) -> ModelPrice:
        """The model's price (the fallback, Opus-level, for a model without one: never under-counted); with the
        1-hour cache its writes cost 2× input instead of the 5-minute 1.25×."""
        p = price_for(self.model, self.prices) or FALLBACK_PRICE
        return replace(p, cache_write=2 * p.input) if self.cache == "1h" else p

    def _estimate(self, system: str, user: str, tool: dict[str, Any], max_tokens: int) -> Decimal:
        """A pessimistic cost of one request: the estimated input tokens (at the cache-write price when the
        cache is marked) and the whole output allowance."""
        p = self.price()
        tokens = (estimate_tokens(system) + estimate_tokens(user) + estimate_tokens(json.dumps(tool))
                  + TOOL_USE_OVERHEAD_TOKENS)
        rate = p.input if self.cache == "off" else max(p.input, p.cache_write)
        return (rate * tokens + p.output * max_tokens) / Decimal(1_000_000)

    def estimate_usd(self, inp: AdvisorInput) -> Decimal:
        """What :meth:`advise` would cost at most (for the model budget)."""
        system, user = build_prompt(inp)
        return self._estimate(system, user, TOOL, self.max_tokens)

    def estimate_portfolio_usd(self, inp: PortfolioInput) -> Decimal:
        """What :meth:`advise_portfolio` would cost at most (for the model budget)."""
        markets = [m.position.market for m in inp.markets]
        system, user = build_portfolio_prompt(inp)
        max_tokens = max(self.max_tokens, 100 + OUTPUT_TOKENS_PER_MARKET * len(markets))
        return self._estimate(system, user, portfolio_tool(markets), max_tokens)

    # -- the call
    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        """One decision. Never raises for API or answer problems: ``decision`` is None and ``error`` says why."""
        system, user = build_prompt(inp)
        result, answer = self._ask(system, user, TOOL, TOOL_CHOICE, self.max_tokens)
        if answer is None:
            return result
        try:
            decision = parse_tool_input(answer.tool_input)
        except AdvisorError as e:
            return self._failed(result, f"Claude's answer is invalid: {e}", answer.request_id)
        return replace(result, decision=decision)

    def advise_portfolio(self, inp: PortfolioInput) -> dict[Market, AdvisorResult]:
        """One request for every market of ``inp`` (the portfolio prompt and its ``record_decisions`` tool).

        Returns one result per market, in order. The request's tokens and cost are shared out between them
        (whole tokens, the remainder on the first market; the cost to 10 decimal places, the remainder on the
        first), so summing the decision rows gives the bill exactly. A market the answer left out, answered
        twice or answered invalidly gets ``decision=None`` and its reason; the others keep theirs. Never
        raises for API or answer problems.
        """
        markets = [m.position.market for m in inp.markets]
        system, user = build_portfolio_prompt(inp)
        max_tokens = max(self.max_tokens, 100 + OUTPUT_TOKENS_PER_MARKET * len(markets))
        result, answer = self._ask(system, user, portfolio_tool(markets), PORTFOLIO_TOOL_CHOICE, max_tokens)
        shares = share_usage(result, len(markets))
        if answer is None:
            return dict(zip(markets, shares, strict=True))
        try:
            outcomes, unknown = parse_portfolio_answer(answer.tool_input, markets)
        except AdvisorError as e:
            error = self._failed(result, f"Claude's answer is invalid: {e}", answer.request_id).error
            return {m: replace(share, decision=None, error=error) for m, share in zip(markets, shares, strict=True)}
        if unknown:
            log.warning("Claude answered for markets it was not asked about: %s", ", ".join(unknown))
        out: dict[Market, AdvisorResult] = {}
        for m, share in zip(markets, shares, strict=True):
            outcome = outcomes[m]
            if isinstance(outcome, Decision):
                out[m] = replace(share, decision=outcome)
            else:
                out[m] = replace(share, decision=None, error=self._clean(outcome))
                log.warning("Claude advisor: %s", outcome)
        return out

    def _ask(self, system: str, user: str, tool: dict[str, Any], tool_choice: dict[str, Any],
             max_tokens: int) -> tuple[AdvisorResult, _Answer | None]:
        """Send one forced-tool request; the result (tokens, cost, raw answer) and the tool's input, or a
        failed result and None when the API or the response's shape failed."""
        # An hourly cycle's one request is read back long after a 5-minute cache has expired: marking it would
        # only pay the write premium (1.25× input). TRADEBOT_PROMPT_CACHE marks it when the schedule reuses it.
        block: dict[str, Any] = {"type": "text", "text": system}
        if self.cache != "off":
            block["cache_control"] = {"type": "ephemeral", "ttl": self.cache}
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": [block],
            "messages": [{"role": "user", "content": user}],
            "tools": [tool],
            "tool_choice": tool_choice,
        }
        base = AdvisorResult(advisor=self.name, model=self.model, decision=None,
                             prompt_hash=prompt_hash(system, user))
        self._get_client()  # the first call imports anthropic: kept out of the measured latency
        started = time.monotonic()
        try:
            message = self._create(params)
        except _GaveUp as gave_up:
            e = gave_up.error
            failed = replace(base, latency_s=time.monotonic() - started)
            return self._failed(failed, self._describe(e, gave_up.attempts), getattr(e, "request_id", None)), None
        return self._result(message, base, time.monotonic() - started, str(tool["name"]))

    def _result(self, message: Message, base: AdvisorResult, latency: float,
                tool_name: str) -> tuple[AdvisorResult, _Answer | None]:
        # The SDK does not validate responses (non-strict parsing), so a malformed 200 body arrives here as
        # a string or a Message with missing fields: read everything defensively.
        usage = getattr(message, "usage", None)
        input_tokens = _count(getattr(usage, "input_tokens", 0))
        output_tokens = _count(getattr(usage, "output_tokens", 0))
        cache_write = _count(getattr(usage, "cache_creation_input_tokens", 0))
        cache_read = _count(getattr(usage, "cache_read_input_tokens", 0))
        if price_for(self.model, self.prices) is None:
            log.warning("no price for model %s; costing it at the fallback price", self.model)
        price = self.price()
        result = replace(
            base, input_tokens=input_tokens, output_tokens=output_tokens, cache_write_tokens=cache_write,
            cache_read_tokens=cache_read, latency_s=latency,
            cost_usd=cost_usd(price, input_tokens=input_tokens, output_tokens=output_tokens,
                              cache_write_tokens=cache_write, cache_read_tokens=cache_read),
        )
        request_id: str | None = getattr(message, "_request_id", None)

        content = getattr(message, "content", None)
        if not isinstance(content, list):
            result = replace(result, raw_response=self._clean(str(message)))
            return self._failed(result, "Claude API returned a malformed response (no content list)", request_id), None
        tool_blocks = [b for b in content if getattr(b, "type", None) == "tool_use"]
        if tool_blocks:
            inputs = [getattr(b, "input", None) for b in tool_blocks]
            # json.dumps writes a non-finite number as NaN/Infinity, exactly as the API sent it.
            raw = json.dumps(inputs if len(inputs) > 1 else inputs[0], ensure_ascii=False, default=str)
        else:
            raw = "\n".join(str(getattr(b, "text", "")) for b in content if getattr(b, "type", None) == "text")
        result = replace(result, raw_response=raw)

        stop_reason = getattr(message, "stop_reason", None)
        if stop_reason != "tool_use":
            category = getattr(getattr(message, "stop_details", None), "category", None)
            detail = f" ({category})" if stop_reason == "refusal" and category else ""
            return self._failed(result, f"Claude gave no decision: stop_reason {stop_reason}{detail}", request_id), None
        names = [str(getattr(b, "name", "")) for b in tool_blocks]
        if names != [tool_name]:
            return self._failed(
                result, f"Claude must call {tool_name} exactly once, called: {', '.join(names) or 'nothing'}",
                request_id), None
        return result, _Answer(getattr(tool_blocks[0], "input", None), request_id)


@dataclass(frozen=True)
class _Answer:
    """The forced tool's input as the API sent it, and the request id for error messages."""

    tool_input: object
    request_id: str | None


def share_usage(result: AdvisorResult, n: int) -> list[AdvisorResult]:
    """``result`` split into ``n`` results whose tokens and cost add up to it exactly (whole tokens and the
    cost to 10 decimal places, each remainder on the first)."""
    def split(total: int) -> list[int]:
        each, extra = divmod(total, n)
        return [each + extra] + [each] * (n - 1)

    cost = (result.cost_usd / n).quantize(Decimal("1e-10"), rounding=ROUND_DOWN)
    costs = [result.cost_usd - cost * (n - 1)] + [cost] * (n - 1)
    columns = zip(split(result.input_tokens), split(result.output_tokens), split(result.cache_read_tokens),
                  split(result.cache_write_tokens), costs, strict=True)
    return [replace(result, input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w, cost_usd=c)
            for i, o, r, w, c in columns]


class _GaveUp(Exception):
    """The SDK error that ended the call, and how many attempts were made."""

    def __init__(self, error: Exception, attempts: int) -> None:
        super().__init__(type(error).__name__)
        self.error = error
        self.attempts = attempts


# ------------------------------------------------------------------------------------------ model check
class ModelCheckError(AdvisorError):
    """``check_model`` failed; ``fix`` says what to change (the message says what is wrong)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def check_model(api_key: str, model: str, *, base_url: str | None = None, timeout_s: float = 10.0) -> str:
    """Verify the API key and the model id without generating tokens (``GET /v1/models/{model}``, free).

    Returns a short detail such as ``model claude-sonnet-4-6 available (Claude Sonnet 4.6)``. Raises
    ``ModelCheckError`` (an ``AdvisorError``) with a one-line message that never contains the key.
    """
    if not api_key:
        raise ModelCheckError("ANTHROPIC_API_KEY is empty", "set ANTHROPIC_API_KEY")
    import anthropic  # lazy: ~1.3 s

    client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
    host = urlsplit(str(client.base_url)).netloc or str(client.base_url)

    def clean(text: object) -> str:
        return " ".join(str(text).replace(api_key, "***").split())[:160]

    try:
        info = client.models.retrieve(model)
    except anthropic.APIConnectionError as e:  # APITimeoutError included
        # Never the exception's text: it is built from the request.
        raise ModelCheckError(f"cannot reach Anthropic at {host}: {type(e).__name__}",
                              "check ANTHROPIC_BASE_URL (unset means api.anthropic.com) and the network") from None
    except anthropic.APIStatusError as e:
        kind = e.type or type(e).__name__
        if e.status_code == 401:
            raise ModelCheckError(f"Anthropic rejected ANTHROPIC_API_KEY ({kind})",
                                  "create a key in the Anthropic Console and set ANTHROPIC_API_KEY") from None
        if e.status_code == 404:
            raise ModelCheckError(f"model {model} not found: check TRADEBOT_MODEL",
                                  f"set it to a model id your key can use, e.g. {DEFAULT_MODEL}") from None
        if e.status_code == 403:
            raise ModelCheckError(f"Anthropic refused access to model {model} ({kind})",
                                  "check the key's workspace and permissions, or TRADEBOT_MODEL") from None
        detail = f": {clean(e.api_message)}" if e.api_message else ""
        raise ModelCheckError(f"Anthropic API HTTP {e.status_code} {kind}{detail}",
                              "try again later; see status.anthropic.com") from None
    except anthropic.AnthropicError as e:
        raise ModelCheckError(f"Anthropic API error: {type(e).__name__}", "check ANTHROPIC_BASE_URL") from None
    finally:
        client.close()
    # The SDK does not validate responses: read defensively.
    model_id = clean(getattr(info, "id", None) or model)
    lifecycle = getattr(info, "lifecycle", None)
    if lifecycle == "retired":
        raise ModelCheckError(f"model {model_id} is retired: check TRADEBOT_MODEL",
                              f"set it to a current model id, e.g. {DEFAULT_MODEL}")
    name = getattr(info, "display_name", None)
    detail = f"model {model_id} available" + (f" ({clean(name)})" if name else "")
    if lifecycle == "deprecated":
        detail += ", deprecated: plan a move to a newer model"
    return detail
