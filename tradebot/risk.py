"""The risk gate: hard limits applied in code *after* the advisor, whatever it answered.

The advisor proposes (action, confidence, fraction); the gate decides what, if anything, is sent:

* no usable decision, ``hold``, or confidence below ``TRADEBOT_MIN_CONFIDENCE`` → hold;
* buy: vetoed while paused (``tradebot pause``), once today's realized loss reached
  ``TRADEBOT_DAILY_LOSS_LIMIT_KRW``, or when it would open one position more than
  ``TRADEBOT_MAX_OPEN_POSITIONS`` allows; size = fraction × free KRW, clamped to ``TRADEBOT_MAX_ORDER_KRW``, to
  the room left under ``TRADEBOT_MAX_POSITION_KRW`` (position valued at the last price) and under
  ``TRADEBOT_MAX_EXPOSURE_KRW`` (every market's position together), to the free KRW above
  ``TRADEBOT_KRW_RESERVE``, and to what that KRW can pay including the 0.05 % fee; whole KRW; below Upbit's
  5,000 KRW minimum → hold;
* sell: always allowed (pause and loss limit stop only new buys); size = fraction × free coin, truncated to
  8 decimals; when the remainder would be worth less than the minimum at the best bid (unsellable dust) the
  whole free volume is sold instead; a sell worth less than the minimum at the best bid → hold.

Every clamp and veto is returned with its reason so the decision log can show why an order differs from
what the advisor asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from tradebot.models import Decision, GateResult, Position, plain
from tradebot.upbit_rules import FEE_RATE, MIN_ORDER_KRW, VOLUME_STEP

if TYPE_CHECKING:
    from tradebot.config import Settings



@dataclass(frozen=True)
class RiskLimits:
    min_confidence: Decimal
    max_order_krw: Decimal
    max_position_krw: Decimal
    daily_loss_limit_krw: Decimal  # 0 disables the limit
    max_exposure_krw: Decimal | None = None  # None: no portfolio-wide cap
    max_open_positions: int | None = None  # None: no cap on the number of positions
    krw_reserve: Decimal = Decimal(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        """The limits the owner configured (the cycle and the backtest use the same ones)."""
        return cls(settings.min_confidence, settings.max_order_krw, settings.max_position_krw,
                   settings.daily_loss_limit_krw, max_exposure_krw=settings.max_exposure_krw,
                   max_open_positions=settings.max_open_positions, krw_reserve=settings.krw_reserve)


@dataclass(frozen=True)
class PortfolioState:
    """The whole account as a buy must see it: every traded market's position at market value together
    (``exposure_krw``, this market's included) and how many of them hold more than dust."""

    exposure_krw: Decimal
    open_positions: int

    @classmethod
    def of_one(cls, position: Position) -> PortfolioState:
        """The portfolio of a bot that trades this one market only."""
        return cls(position.position_value, 1 if holds(position) else 0)


def holds(position: Position) -> bool:
    """Whether the position counts as open: worth at least Upbit's minimum order (less is unsellable dust)."""
    return position.position_value >= MIN_ORDER_KRW


def no_order_possible(spendable_krw: Decimal, position: Position) -> str | None:
    """Why no order at all is possible (None: one is): the KRW above the reserve (``spendable_krw``) buys less
    than the minimum order, and the coin that could be sold is worth less than it. The advisor is then not
    asked (it would cost a request for nothing)."""
    if spendable_krw >= MIN_ORDER_KRW or position.coin_free * position.price >= MIN_ORDER_KRW:
        return None
    return (f"not asked: no order possible (free KRW above the reserve {plain(max(spendable_krw, Decimal(0)), 0)}, "
            f"position worth {plain(position.position_value, 0)} KRW; the minimum order is {plain(MIN_ORDER_KRW)} KRW)")


def _note(rule: str, detail: str) -> dict[str, str]:
    return {"rule": rule, "detail": detail}


def gate(decision: Decision | None, position: Position, best_bid: Decimal, limits: RiskLimits, *,
         paused: bool = False, realized_loss_today: Decimal = Decimal(0),
         portfolio: PortfolioState | None = None) -> GateResult:
    """Apply every limit to ``decision`` (None: the advisor failed) for ``position``.

    ``realized_loss_today`` is a positive number of KRW lost today (0 when flat or in profit), for the whole
    portfolio. ``portfolio`` is every traded market together (default: this market alone);
    ``position.free_krw`` is the KRW this order may draw on.
    """
    if decision is None:
        return GateResult("hold", vetoes=(_note("advisor", "no usable decision from the advisor"),))
    if decision.action == "hold":
        return GateResult("hold")
    if decision.confidence < limits.min_confidence:
        return GateResult("hold", vetoes=(_note("min_confidence",
                          f"confidence {plain(decision.confidence)} is below the minimum {plain(limits.min_confidence)}"),))
    if decision.action == "buy":
        return _buy(decision, position, limits, paused, realized_loss_today, portfolio or PortfolioState.of_one(position))
    return _sell(decision, position, best_bid)


def _buy(decision: Decision, position: Position, limits: RiskLimits, paused: bool, loss: Decimal,
         portfolio: PortfolioState) -> GateResult:
    if paused:
        return GateResult("hold", vetoes=(_note("paused", "new buys are paused (tradebot resume lifts it)"),))
    if limits.daily_loss_limit_krw > 0 and loss >= limits.daily_loss_limit_krw:
        return GateResult("hold", vetoes=(_note("daily_loss_limit",
                          f"realized loss today {plain(loss, 0)} KRW reached the limit {plain(limits.daily_loss_limit_krw)} KRW"),))
    if (limits.max_open_positions is not None and not holds(position)
            and portfolio.open_positions >= limits.max_open_positions):
        return GateResult("hold", vetoes=(_note("max_open_positions",
                          f"{portfolio.open_positions} position(s) are open, TRADEBOT_MAX_OPEN_POSITIONS is "
                          f"{limits.max_open_positions}: no new one"),))
    clamps: list[dict[str, str]] = []
    fraction = min(max(decision.fraction, Decimal(0)), Decimal(1))
    krw = fraction * position.free_krw
    spendable = max(position.free_krw - limits.krw_reserve, Decimal(0))
    value = position.position_value
    caps = [("max_order_krw", limits.max_order_krw), ("max_position_krw", max(limits.max_position_krw - value, Decimal(0)))]
    if limits.max_exposure_krw is not None:
        caps.append(("max_exposure_krw", max(limits.max_exposure_krw - portfolio.exposure_krw, Decimal(0))))
    if limits.krw_reserve > 0:
        caps.append(("krw_reserve", spendable))
    caps.append(("fee_headroom", spendable / (1 + FEE_RATE)))
    for rule, cap in caps:
        if krw > cap:
            clamps.append(_note(rule, f"{plain(krw, 0)} KRW {_capped(rule, position, limits, portfolio)}"))
            krw = cap
    krw = krw.quantize(Decimal(1), rounding=ROUND_DOWN)
    if krw < MIN_ORDER_KRW:
        return GateResult("hold", clamps=tuple(clamps), vetoes=(_note("min_order",
                          f"buy of {plain(krw)} KRW is below Upbit's minimum of {plain(MIN_ORDER_KRW)} KRW"),))
    return GateResult("buy", krw=krw, clamps=tuple(clamps))


def _capped(rule: str, position: Position, limits: RiskLimits, portfolio: PortfolioState) -> str:
    """Why a buy was capped by ``rule``: written only for a cap that applies (the counterfactual ledgers of
    ``tradebot advisors report`` ask the gate tens of thousands of times; formatting every cap's reason
    on every call was most of its cost)."""
    if rule == "max_order_krw":
        return f"capped at TRADEBOT_MAX_ORDER_KRW {plain(limits.max_order_krw)}"
    if rule == "max_position_krw":
        return (f"capped by TRADEBOT_MAX_POSITION_KRW {plain(limits.max_position_krw)} (position worth "
                f"{plain(position.position_value, 0)} KRW)")
    if rule == "max_exposure_krw":
        return (f"capped by TRADEBOT_MAX_EXPOSURE_KRW {plain(limits.max_exposure_krw or Decimal(0))} (positions worth "
                f"{plain(portfolio.exposure_krw, 0)} KRW together)")
    if rule == "krw_reserve":
        return (f"capped so TRADEBOT_KRW_RESERVE {plain(limits.krw_reserve)} KRW of the free "
                f"{plain(position.free_krw, 0)} KRW stays unspent")
    return (f"capped so the 0.05 % fee fits in the free {plain(position.free_krw, 0)} KRW"
            + (" above the reserve" if limits.krw_reserve > 0 else ""))


def _sell(decision: Decision, position: Position, best_bid: Decimal) -> GateResult:
    clamps: list[dict[str, str]] = []
    free = position.coin_free
    fraction = min(max(decision.fraction, Decimal(0)), Decimal(1))
    volume = (fraction * free).quantize(VOLUME_STEP, rounding=ROUND_DOWN)
    remainder = free - volume
    if remainder > 0 and remainder * best_bid < MIN_ORDER_KRW:
        clamps.append(_note("dust", f"selling all {plain(free)}: the remaining {plain(remainder)} would be worth "
                                    f"{plain(remainder * best_bid, 0)} KRW, below the minimum, and could never be sold"))
        volume = free.quantize(VOLUME_STEP, rounding=ROUND_DOWN)
    if volume <= 0 or volume * best_bid < MIN_ORDER_KRW:
        return GateResult("hold", clamps=tuple(clamps), vetoes=(_note("min_order",
                          f"sell of {plain(volume)} is worth {plain(volume * best_bid, 0)} KRW at the best bid, below Upbit's minimum"),))
    return GateResult("sell", volume=volume, clamps=tuple(clamps))
