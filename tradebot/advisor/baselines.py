"""The two baseline advisors of the scorecard (issue 13): free, local, and never acting.

They decide every cycle in the shadow (:mod:`tradebot.shadow`) so that ``tradebot advisors report`` can say
whether the acting advisor beats doing nothing, or simply staying invested:

* ``hold`` never trades;
* ``buy_and_hold`` always wants to be invested: it proposes to buy with all free KRW every cycle. Through the
  risk gate (its counterfactual ledger) that buys up to ``TRADEBOT_MAX_POSITION_KRW`` and the order caps, then
  holds, and it never sells; scored hour by hour it is the "always long" baseline.
"""

from __future__ import annotations

from decimal import Decimal

from tradebot.models import AdvisorInput, AdvisorResult, Decision

HOLD = "hold"
BUY_AND_HOLD = "buy_and_hold"


class HoldAdvisor:
    """Never trades."""

    name = HOLD
    model: str | None = None

    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        return AdvisorResult(advisor=self.name, model=None,
                             decision=Decision("hold", Decimal(1), Decimal(0), "baseline: never trades"))


class BuyAndHoldAdvisor:
    """Always proposes to buy with all free KRW; never sells."""

    name = BUY_AND_HOLD
    model: str | None = None

    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        return AdvisorResult(advisor=self.name, model=None, decision=Decision(
            "buy", Decimal(1), Decimal(1), "baseline: always invested (buys what the limits allow, never sells)"))
