"""Shadow decisions (issue 13): the advisors that did not act decide too, for the scorecard.

After a cycle has placed (or not placed) its orders, every market that got as far as its indicators is put
to the advisors that did **not** act, and each answer is written as a ``decisions`` row with
``role = 'shadow'`` beside the acting one (same ``cycle_id``, same position, indicators and price):

* the ``rules`` advisor, unless it is the acting one (free, local);
* the baselines ``hold`` and ``buy_and_hold`` (:mod:`tradebot.advisor.baselines`);
* Claude, only when the rules advisor acts and ``TRADEBOT_SHADOW_MODEL=on``: one more model request per cycle
  (one for all markets), billed and recorded like any other.

A shadow decision never places an order. Its ``action``/``order_krw``/``order_volume`` columns hold what the
risk gate would have let through for the real position at that moment (the configured limits; ``pause`` and the
daily loss limit are operator and account states, not applied), with the best bid when the cycle read the
orderbook and the last price otherwise. The shadow step runs after the orders and the notification, so it never
delays an order; it never fails a cycle: a failure is logged and the cycle's outcome and exit code stand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from tradebot.errors import StorageError, TradebotError
from tradebot.models import AdvisorInput, AdvisorResult, GateResult, Market, PortfolioInput, PortfolioView
from tradebot.risk import RiskLimits, gate

if TYPE_CHECKING:
    from tradebot.advisor import Advisor
    from tradebot.cycle import CycleParts
    from tradebot.store.decisions import CycleContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowCase:
    """One market of a cycle as its acting decision saw it: the acting row's context, the advisor input and the
    price a sell would have met."""

    ctx: CycleContext
    inp: AdvisorInput
    best_bid: Decimal


def free_shadows(acting: str) -> list[Advisor]:
    """The shadow advisors that cost nothing: the rules (unless they act) and the two baselines."""
    from tradebot.advisor.baselines import BuyAndHoldAdvisor, HoldAdvisor
    from tradebot.advisor.rules import RulesAdvisor

    out: list[Advisor] = [] if acting == "rules" else [RulesAdvisor()]
    return [*out, HoldAdvisor(), BuyAndHoldAdvisor()]


def _model_results(parts: CycleParts, cases: list[ShadowCase], view: PortfolioView | None) -> dict[Market, AdvisorResult]:
    from tradebot.advisor import advise_all

    assert parts.make_shadow_model is not None
    try:
        model = parts.make_shadow_model()
    except TradebotError as e:  # e.g. no ANTHROPIC_API_KEY: every market records the reason
        return {c.ctx.market: AdvisorResult(advisor="claude", model=None, decision=None, error=str(e)) for c in cases}
    if view is None:
        return {c.ctx.market: model.advise(c.inp) for c in cases}
    return advise_all(model, PortfolioInput(view, tuple(c.inp for c in cases)))


def record_shadows(parts: CycleParts, cases: list[ShadowCase], view: PortfolioView | None = None) -> int:
    """Decide ``cases`` with every shadow advisor and write the rows; returns how many were written. Never
    raises: the orders are done, and a shadow is only ever a record."""
    s = parts.settings
    if not cases:
        return 0
    results: dict[Market, list[AdvisorResult]] = {c.ctx.market: [] for c in cases}
    for advisor in free_shadows(s.advisor):
        for c in cases:
            results[c.ctx.market].append(advisor.advise(c.inp))
    if s.advisor == "rules" and s.shadow_model and parts.make_shadow_model is not None:
        for market, result in _model_results(parts, cases, view).items():
            results[market].append(result)
    return _write(parts, cases, results)


def _write(parts: CycleParts, cases: list[ShadowCase], results: dict[Market, list[AdvisorResult]]) -> int:
    from tradebot.store.decisions import record_decision

    limits = RiskLimits.from_settings(parts.settings)
    written = 0
    try:
        for c in cases:
            assert c.ctx.position is not None
            for r in results[c.ctx.market]:
                verdict = gate(r.decision, c.ctx.position, c.best_bid, limits) if r.decision else GateResult("hold")
                ctx = replace(c.ctx, role="shadow", advisor=r.advisor, filtered=False, note=None, reflection=False,
                              error=None if r.decision else f"shadow: {r.error or 'no decision'}")
                record_decision(parts.conn, ctx, r, verdict)
                written += 1
    except StorageError as e:
        log.warning("shadow decisions not recorded (%s); the cycle itself is unaffected", e.reason)
    return written
