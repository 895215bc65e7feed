"""The Claude advisor: a compact prompt, one forced tool call, a strictly validated decision.

``anthropic`` is imported lazily (on the first ``advise``): importing it takes over a second, and most
commands never call the model.

Failures never raise: a timeout, a connection error, an HTTP error, a refusal, a truncated answer or an
answer outside the schema all come back as ``AdvisorResult(decision=None, error=...)`` (the cycle holds and
alerts). Tokens and cost are recorded whenever the API answered, because those tokens are billed.

``check_model`` (used by ``tradebot doctor``) verifies the key and the model id through the free Models API
and, unlike ``advise``, raises ``AdvisorError`` when they do not work.

Modules: :mod:`~tradebot.advisor.claude.pricing` (prices and cost), :mod:`~tradebot.advisor.claude.prompt`
(system text, user message, tool schema, token estimates), :mod:`~tradebot.advisor.claude.answer` (validation
of the tool input) and :mod:`~tradebot.advisor.claude.client` (the advisor with its retries, the response
checks and the model check). The names re-exported here are the public surface.
"""

from __future__ import annotations

from tradebot.advisor.claude.answer import parse_tool_input
from tradebot.advisor.claude.client import (
    MAX_RETRY_WAIT_S,
    ClaudeAdvisor,
    ModelCheckError,
    check_model,
)
from tradebot.advisor.claude.pricing import (
    FALLBACK_PRICE,
    PRICES,
    ModelPrice,
    cost_usd,
    price_for,
)
from tradebot.advisor.claude.prompt import (
    DAILY_CLOSES,
    DECISION_SCHEMA,
    HISTORY_ROWS,
    HOURLY_ROWS,
    PRICE_SIG_DIGITS,
    REASON_MAX_CHARS,
    SYSTEM_PROMPT,
    TOOL,
    TOOL_CHOICE,
    TOOL_NAME,
    TOOL_USE_OVERHEAD_TOKENS,
    build_prompt,
    estimate_request_tokens,
    estimate_tokens,
    fmt_num,
    fmt_pct,
    prompt_hash,
)
from tradebot.config import DEFAULT_MODEL

__all__ = [
    "DAILY_CLOSES",
    "DECISION_SCHEMA",
    "DEFAULT_MODEL",
    "FALLBACK_PRICE",
    "HISTORY_ROWS",
    "HOURLY_ROWS",
    "MAX_RETRY_WAIT_S",
    "PRICES",
    "PRICE_SIG_DIGITS",
    "REASON_MAX_CHARS",
    "SYSTEM_PROMPT",
    "TOOL",
    "TOOL_CHOICE",
    "TOOL_NAME",
    "TOOL_USE_OVERHEAD_TOKENS",
    "ClaudeAdvisor",
    "ModelCheckError",
    "ModelPrice",
    "build_prompt",
    "check_model",
    "cost_usd",
    "estimate_request_tokens",
    "estimate_tokens",
    "fmt_num",
    "fmt_pct",
    "parse_tool_input",
    "price_for",
    "prompt_hash",
]
