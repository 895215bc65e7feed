"""Advisors: something that looks at the market and the position and proposes buy, sell or hold.

``claude`` asks the Anthropic API through a forced tool; ``rules`` runs the rule strategy locally. The risk
gate (:mod:`tradebot.risk`) always has the last word.
"""

from __future__ import annotations

from typing import Protocol

from tradebot.models import AdvisorInput, AdvisorResult


class Advisor(Protocol):
    name: str

    @property
    def model(self) -> str | None:
        """The model id asked, or None for a local advisor."""
        ...

    def advise(self, inp: AdvisorInput) -> AdvisorResult:
        """Never raises for advisor failures: returns ``decision=None`` with ``error`` set instead."""
        ...
