"""The ``rules`` advisor: the rule strategy of :mod:`tradebot.market.strategy`, no network, no cost."""

from __future__ import annotations

import time

from tradebot.models import AdvisorInput, AdvisorResult


class RulesAdvisor:
    """Decides from the last completed hourly bar with the same rule the backtests use."""

    name = "rules"
    model: str | None = None

    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        from tradebot.market.strategy import decide

        started = time.perf_counter()
        try:
            decision = decide(inp)
        except ValueError as e:  # e.g. not enough candles: no decision, the cycle holds and says why
            return AdvisorResult(advisor=self.name, model=None, decision=None, error=f"rules advisor: {e}",
                                 latency_s=time.perf_counter() - started)
        return AdvisorResult(advisor=self.name, model=None, decision=decision, latency_s=time.perf_counter() - started)
