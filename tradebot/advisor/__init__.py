"""Advisors: something that looks at the market and the position and proposes buy, sell or hold.

``claude`` asks the Anthropic API through a forced tool; ``rules`` runs the rule strategy locally. The risk
gate (:mod:`tradebot.risk`) always has the last word.
"""

from __future__ import annotations

from typing import Protocol

from tradebot.models import AdvisorInput, AdvisorResult, Market, PortfolioInput


class Advisor(Protocol):
    name: str

    @property
    def model(self) -> str | None:
        """The model id asked, or None for a local advisor."""
        ...

    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        """Never raises for advisor failures: returns ``decision=None`` with ``error`` set instead."""
        ...


def advise_all(advisor: Advisor, inp: PortfolioInput) -> dict[Market, AdvisorResult]:
    """One result per market of ``inp``: the advisor's own portfolio request when it has one (Claude: one
    request for all markets), otherwise one ``advise`` per market (the rules decide each market alone)."""
    many = getattr(advisor, "advise_portfolio", None)
    if many is not None:
        results: dict[Market, AdvisorResult] = many(inp)
        return results
    return {m.position.market: advisor.advise(m) for m in inp.markets}
