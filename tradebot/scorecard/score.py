"""What the price did after a decision, and whether the decision was right: **the one definition**.

* **Reference price**: the decision row's ``price``, the last trade price the cycle read before deciding.
* **Price at a horizon** (+1 h, +4 h, +24 h): the candle cache is hourly, so the price "h hours after ``t``" is
  read at the top of the hour at or before ``t + h`` (:func:`horizon_end`): the close of the last hourly candle
  that ended there. An hour without trades has no candle on Upbit, and the price then is the close of the
  candle before it (the last trade), which is what is used. A cycle at 13:05 thus has its +1 h price from the
  candle that closed at 14:00, its +24 h price from the one that closed at 13:00 the next day.
* **Scorable** once the cache holds the hour that ends at the horizon (between its oldest and newest candle
  every hour Upbit has is cached, so a missing hour inside that range is a real hour without trades); until
  then the decision waits. A decision without a price (the cycle failed before reading it) or without an
  answer (the advisor failed) is never scored.
* **Forward return** ``r = price at the horizon / reference price − 1``.
* **Right or wrong**, with ``fee`` the round-trip fee (0.05 % on each side: 0.1 %):
  a *buy* is right when ``r > fee`` (the rise paid for the round trip); a *sell* when ``r < −fee`` (selling
  avoided a fall larger than the fees); a *hold* when ``|r| ≤ fee`` (no trade would have paid) **or** the
  position was flat (worth less than Upbit's minimum order: with no position, holding cannot lose money).

Scores are written once (``decision_scores``): scoring again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradebot.upbit_rules import FEE_RATE

HORIZONS_H: tuple[int, ...] = (1, 4, 24)
ROUND_TRIP_FEE: Decimal = 2 * FEE_RATE


def horizon_end(at: datetime, hours: int) -> datetime:
    """The top of the (UTC) hour at or before ``at + hours``: the price at the horizon is the close of the
    last hourly candle that ended there."""
    return (at.astimezone(UTC) + timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)


def forward_return(reference: Decimal, later: Decimal) -> Decimal:
    return later / reference - 1


def is_hit(decision: str, r: Decimal, flat: bool) -> bool:
    """Whether ``decision`` ("buy", "sell" or "hold") was right given the forward return ``r`` (see the module
    docstring)."""
    if decision == "buy":
        return r > ROUND_TRIP_FEE
    if decision == "sell":
        return r < -ROUND_TRIP_FEE
    return abs(r) <= ROUND_TRIP_FEE or flat


@dataclass(frozen=True)
class Scorable:
    """A decision whose horizon has passed and whose horizon price is cached."""

    decision_id: int
    horizon_h: int
    decision: str
    reference: Decimal
    later: Decimal  # the price at the horizon
    flat: bool  # the position was worth less than the minimum order when it decided


@dataclass(frozen=True)
class Score:
    decision_id: int
    horizon_h: int
    price: Decimal
    forward_return: Decimal
    hit: bool


def score(items: list[Scorable]) -> list[Score]:
    """The score of every item."""
    out = []
    for s in items:
        r = forward_return(s.reference, s.later)
        out.append(Score(s.decision_id, s.horizon_h, s.later, r, is_hit(s.decision, r, s.flat)))
    return out
