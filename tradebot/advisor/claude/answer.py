"""Validation of Claude's forced ``record_decision`` answer: the tool input must match ``DECISION_SCHEMA``
exactly, with the numeric and length bounds that a strict tool schema cannot state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradebot.advisor.claude.prompt import DECISION_SCHEMA, REASON_MAX_CHARS
from tradebot.errors import AdvisorError
from tradebot.models import Decision

_KEYS = frozenset(DECISION_SCHEMA["required"])


def _unit_number(obj: Mapping[str, Any], key: str) -> Decimal:
    x = obj[key]
    # bool is an int subclass; strings, None, lists... are not numbers here even if they look like one.
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise AdvisorError(f"{key} must be a number, got {type(x).__name__}")
    if isinstance(x, float) and not math.isfinite(x):
        raise AdvisorError(f"{key} must be a finite number, got {x!r}")
    if not 0 <= x <= 1:
        raise AdvisorError(f"{key} must be between 0 and 1, got {x!r}")
    return Decimal(str(x))


def parse_tool_input(obj: object, *, reason_max: int = REASON_MAX_CHARS) -> Decision:
    """Validate a ``record_decision`` tool input into a ``Decision``; raise ``AdvisorError`` otherwise.

    Exactly the four keys; ``decision`` in buy/sell/hold; ``confidence`` and ``fraction`` real finite
    numbers in [0, 1] (not bools, not strings) converted with ``Decimal(str(x))``; ``reason`` a non-empty
    string of at most ``reason_max`` characters (stripped; 600 by default).
    """
    if not isinstance(obj, Mapping):
        raise AdvisorError(f"tool input must be an object, got {type(obj).__name__}")
    keys = set(obj)
    missing = sorted(_KEYS - keys)
    extra = sorted(str(k) for k in keys - _KEYS)
    if missing:
        raise AdvisorError(f"tool input is missing {', '.join(missing)}")
    if extra:
        raise AdvisorError(f"tool input has unexpected field(s) {', '.join(extra)[:200]}")
    action = obj["decision"]
    if action not in ("buy", "sell", "hold"):
        raise AdvisorError(f"decision must be buy, sell or hold, got {str(action)[:40]!r}")
    confidence = _unit_number(obj, "confidence")
    fraction = _unit_number(obj, "fraction")
    reason = obj["reason"]
    if not isinstance(reason, str):
        raise AdvisorError(f"reason must be a string, got {type(reason).__name__}")
    reason = reason.strip()
    if not reason:
        raise AdvisorError("reason is empty")
    if len(reason) > reason_max:
        raise AdvisorError(f"reason is {len(reason)} characters, more than {reason_max}")
    return Decision(action=action, confidence=confidence, fraction=fraction, reason=reason)
