"""The model's bill, capped (issue 13): ``TRADEBOT_LLM_DAILY_BUDGET_USD`` and ``…_MONTHLY_BUDGET_USD``.

Before each request the Claude advisor's cost is estimated pessimistically from the prompt's size and the
model's prices (:meth:`tradebot.advisor.claude.ClaudeAdvisor.estimate_usd`: estimated input tokens and the
whole output allowance). If today's or this month's recorded spend (``decisions.cost_usd`` since 00:00 UTC /
the 1st of the month, UTC, every market and mode: it is one bill) plus that estimate would pass a cap, the
model is not asked: the rules advisor decides instead, and its decision's reason starts with why. A request
that fits goes ahead. :class:`BudgetedAdvisor` keeps the reasons it fell back for, so the run can send its one
alert of the day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from tradebot.models import AdvisorInput, AdvisorResult, Market, PortfolioInput, plain

if TYPE_CHECKING:
    from tradebot.advisor import Advisor


@dataclass(frozen=True)
class Caps:
    daily_usd: Decimal | None
    monthly_usd: Decimal | None


@dataclass(frozen=True)
class Spend:
    today_usd: Decimal
    month_usd: Decimal


def over_budget(caps: Caps, spend: Spend, estimate: Decimal) -> str | None:
    """Why a request estimated at ``estimate`` USD may not be sent (None: it fits both caps)."""
    for name, cap, spent in (("daily", caps.daily_usd, spend.today_usd), ("monthly", caps.monthly_usd, spend.month_usd)):
        if cap is not None and spent + estimate > cap:
            return (f"model budget: {plain(spent.quantize(Decimal('0.0001')))} USD spent "
                    f"{'today' if name == 'daily' else 'this month'} + this request's estimate "
                    f"{plain(estimate.quantize(Decimal('0.0001')))} USD would pass the {name} cap of {plain(cap)} USD")
    return None


class Estimating(Protocol):
    name: str

    @property
    def model(self) -> str | None: ...

    def advise(self, inp: AdvisorInput) -> AdvisorResult: ...

    def advise_portfolio(self, inp: PortfolioInput) -> dict[Market, AdvisorResult]: ...

    def estimate_usd(self, inp: AdvisorInput) -> Decimal: ...

    def estimate_portfolio_usd(self, inp: PortfolioInput) -> Decimal: ...


@dataclass
class BudgetedAdvisor:
    """The model under the caps; the ``fallback`` (the rules) decides whenever the request would pass one."""

    inner: Estimating
    fallback: Advisor
    caps: Caps
    spend: Callable[[], Spend]
    fell_back: list[str] = field(default_factory=list)
    name: str = "claude"

    @property
    def model(self) -> str | None:
        return self.inner.model

    def _refused(self, estimate: Decimal) -> str | None:
        reason = over_budget(self.caps, self.spend(), estimate)
        if reason:
            self.fell_back.append(reason)
        return reason

    def _instead(self, inp: AdvisorInput, reason: str) -> AdvisorResult:
        r = self.fallback.advise(inp)
        if r.decision is None:
            return replace(r, error=f"{reason}; {r.error}")
        return replace(r, decision=replace(r.decision, reason=f"{reason}; the rules decided: {r.decision.reason}"))

    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        reason = self._refused(self.inner.estimate_usd(inp))
        return self._instead(inp, reason) if reason else self.inner.advise(inp)

    def advise_portfolio(self, inp: PortfolioInput) -> dict[Market, AdvisorResult]:
        reason = self._refused(self.inner.estimate_portfolio_usd(inp))
        if reason:
            return {m.position.market: self._instead(m, reason) for m in inp.markets}
        return self.inner.advise_portfolio(inp)
