"""Claude prices: USD per million tokens for each model id, cache writes and reads included, and the cost of
one call from the token counts the API reports.

Unknown model ids are costed at ``FALLBACK_PRICE`` (an Opus-level price), never at zero, so a daily budget
does not under-count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. ``cache_write`` is the 5-minute cache write (1.25 × input on current models)."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal


def _price(inp: str, out: str, write: str | None = None, read: str | None = None) -> ModelPrice:
    i = Decimal(inp)
    return ModelPrice(i, Decimal(out), Decimal(write) if write else i * Decimal("1.25"),
                      Decimal(read) if read else i * Decimal("0.1"))


# From Anthropic's pricing page (platform.claude.com/docs/en/about-claude/pricing): Sonnet 4.x $3/$15,
# Haiku 4.5 $1/$5, Opus 4.5-5 $5/$25; 5-minute cache writes 1.25 × input, cache reads 0.1 × input.
# Entries marked "estimate" come from third-party price tables (Oct 2026) and should be checked against
# the pricing page before relying on the cost figures. Keep the model id in config; add prices here.
PRICES: dict[str, ModelPrice] = {
    "claude-sonnet-4-6": _price("3", "15"),
    "claude-sonnet-4-5": _price("3", "15"),
    "claude-haiku-4-5": _price("1", "5"),
    "claude-opus-4-5": _price("5", "25"),
    "claude-opus-4-6": _price("5", "25"),
    "claude-opus-4-7": _price("5", "25"),
    "claude-opus-4-8": _price("5", "25"),
    "claude-opus-5": _price("5", "25"),
    "claude-sonnet-5": _price("2", "10"),  # estimate
    "claude-sonnet-5-5": _price("2", "10", read="0.10"),  # estimate (cache read 0.05 × input)
    "claude-opus-5-5": _price("4", "20", read="0.20"),  # estimate (cache read 0.05 × input)
    "claude-haiku-5-5": _price("0.10", "0.50"),  # estimate (prompts ≤ 100k tokens)
}
# Unknown model ids are costed at this conservative (Opus-level) price rather than at zero, so a daily
# budget never under-counts; a warning names the model.
FALLBACK_PRICE = _price("5", "25")

_DATE_SUFFIX = re.compile(r"-\d{8}$")


def price_for(model: str, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The price of ``model`` (a dated id such as ``claude-haiku-4-5-20251001`` falls back to its alias)."""
    table = PRICES if prices is None else prices
    return table.get(model) or table.get(_DATE_SUFFIX.sub("", model))


def cost_usd(price: ModelPrice, *, input_tokens: int, output_tokens: int, cache_write_tokens: int = 0,
             cache_read_tokens: int = 0) -> Decimal:
    """Cost of one call. ``input_tokens`` excludes cached tokens (the API reports the three separately)."""
    total = (price.input * input_tokens + price.output * output_tokens + price.cache_write * cache_write_tokens
             + price.cache_read * cache_read_tokens)
    return total / Decimal(1_000_000)


def configured_price(model: str, input_usd: Decimal | None, output_usd: Decimal | None,
                     cache_read_usd: Decimal | None = None, cache_write_usd: Decimal | None = None) -> dict[str, ModelPrice]:
    """The price table with the owner's prices for ``model`` (TRADEBOT_MODEL_*_USD_PER_MTOK): input and output
    together, cache reads and writes defaulting to 0.1× and 1.25× the input price. Raises ConfigError for
    one of input/output without the other."""
    from tradebot.errors import ConfigError

    if input_usd is None and output_usd is None:
        if cache_read_usd is not None or cache_write_usd is not None:
            raise ConfigError("TRADEBOT_MODEL_INPUT_USD_PER_MTOK", "and TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK must be set "
                              "with the cache prices")
        return PRICES
    if input_usd is None or output_usd is None:
        missing = "TRADEBOT_MODEL_INPUT_USD_PER_MTOK" if input_usd is None else "TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK"
        raise ConfigError(missing, "is not set; the model's input and output prices are set together")
    own = ModelPrice(input_usd, output_usd, cache_write_usd if cache_write_usd is not None else input_usd * Decimal("1.25"),
                     cache_read_usd if cache_read_usd is not None else input_usd * Decimal("0.1"))
    return {**PRICES, model: own}
