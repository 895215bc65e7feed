"""``tradebot advisors report``: the scorecard of every advisor, per market and for the portfolio (issue 13).

Built from the rows of :func:`tradebot.store.scores.report_rows` and the cached hourly candles, with no
database or network of its own. Per advisor (``acting`` is the bot's own decisions, whichever advisor made
them; ``claude``, ``rules`` and the baselines ``hold`` and ``buy_and_hold``), and per reflection setting
when both occur:

* decisions by kind (buy, sell, hold, failed: no answer);
* the hit rate at +1 h, +4 h and +24 h over the decisions scored so far (:mod:`tradebot.scorecard.score`),
  and the mean forward return after buys and after sells;
* the **counterfactual ledger**: following the advisor's buy and sell decisions from the same start through
  the live risk gate and the backtest's fill model (:func:`tradebot.backtest.replay.replay_decisions`:
  the next hour's open, fees, 8-decimal volumes; going on from the checkpoint of an earlier report when the
  data before it is unchanged). Every ledger of a market starts flat with the account's
  equity at the window's first acting decision, and is marked to the last cached close. Markets are
  followed independently (each with that equity, each under the per-market limits); the portfolio row adds
  their P&L and draws down their summed equity. Float statistics, rounded to whole KRW: never an order;
* the model's bill: tokens, USD, KRW at ``TRADEBOT_USD_KRW`` and USD per decision.

The verdict compares the model (else the rules) with each other advisor in plain words. **Too small to mean
anything**: fewer than :data:`MIN_DAYS` days, or fewer than :data:`MIN_TRADES` buy or sell decisions on
either side. Below 30 outcomes a hit rate's standard error exceeds ±9 points (√(0.25/30)), about the size of
the differences being judged, and a week holds too few trend changes for the P&L to say more than luck.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tradebot.models import Market

if TYPE_CHECKING:
    from array import array

    from tradebot.risk import RiskLimits

PORTFOLIO = "PORTFOLIO"
MIN_DAYS = 7
MIN_TRADES = 30
ADVISOR_ORDER = ("acting", "claude", "rules", "buy_and_hold", "hold")
MODEL = "claude"


@dataclass
class Figures:
    """One row of the report: a market (or the portfolio) and an advisor (and a reflection setting)."""

    market: str
    advisor: str
    reflection: bool
    buys: int = 0
    sells: int = 0
    holds: int = 0
    failed: int = 0
    scored: dict[int, int] = field(default_factory=dict)
    hits: dict[int, int] = field(default_factory=dict)
    return_sums: dict[tuple[int, str], Decimal] = field(default_factory=dict)  # (horizon, buy|sell) → sum
    return_counts: dict[tuple[int, str], int] = field(default_factory=dict)
    start_krw: Decimal | None = None
    pnl_krw: Decimal | None = None
    max_drawdown: Decimal | None = None  # fraction of the peak equity
    fills: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None

    @property
    def label(self) -> str:
        return self.advisor + (" +reflection" if self.reflection else "")

    @property
    def decisions(self) -> int:
        return self.buys + self.sells + self.holds + self.failed

    def hit_rate(self, h: int) -> Decimal | None:
        n = self.scored.get(h, 0)
        return Decimal(self.hits.get(h, 0)) / n if n else None

    def mean_return(self, h: int, kind: str) -> Decimal | None:
        n = self.return_counts.get((h, kind), 0)
        return self.return_sums[(h, kind)] / n if n else None

    @property
    def pnl_pct(self) -> Decimal | None:
        if self.pnl_krw is None or not self.start_krw:
            return None
        return self.pnl_krw / self.start_krw

    def cost_krw(self, usd_krw: Decimal) -> Decimal:
        return self.cost_usd * usd_krw

    @property
    def cost_per_decision(self) -> Decimal | None:
        return self.cost_usd / self.decisions if self.decisions and self.cost_usd else None


@dataclass(frozen=True)
class Scorecard:
    mode: str
    since: datetime | None
    until: datetime | None
    usd_krw: Decimal
    rows: list[Figures]
    real_pnl: dict[str, Decimal]  # per market: the bot's recorded P&L over the window (beside 'acting')
    verdicts: list[str]
    warnings: list[str]
    empty: str | None = None  # the sentence to show instead of a table

    @property
    def days(self) -> Decimal:
        firsts = [r.first for r in self.rows if r.first]
        lasts = [r.last for r in self.rows if r.last]
        if not firsts:
            return Decimal(0)
        return Decimal((max(lasts) - min(firsts)).total_seconds()) / 86400


def build(raw: Any, candles: dict[str, array[float]], *, mode: str, since: datetime | None,
          until: datetime | None, limits: RiskLimits, usd_krw: Decimal, real_pnl: dict[str, Decimal],
          market: str | None, checkpoints: dict[str, Any] | None = None) -> Scorecard:
    """The scorecard from :class:`tradebot.store.scores.ReportRows` ``raw`` and each market's hourly candles
    (:func:`tradebot.store.candles.packed_candles`: five floats per candle, oldest first, from the window's first
    decision on). ``checkpoints``: the ledgers' checkpoints of an earlier report of the same window
    (:mod:`tradebot.backtest.replay`), replaced by this report's."""
    rows: dict[tuple[str, str, bool], Figures] = {}

    def targets(m: str, a: str, role: str, refl: bool) -> list[Figures]:
        keys = [(m, a, refl)] + ([(m, "acting", refl)] if role == "acting" else [])
        return [rows.setdefault(k, Figures(*k)) for k in keys]

    for (m, a, role, refl, kind, h, n, hits, total, tin, tout, tcr, tcw, cost) in raw.days:
        for f in targets(m, a, role, refl):
            if h == 0:
                if kind == "buy":
                    f.buys += n
                elif kind == "sell":
                    f.sells += n
                elif kind == "hold":
                    f.holds += n
                else:
                    f.failed += n
                f.input_tokens += int(tin)
                f.output_tokens += int(tout)
                f.cache_read_tokens += int(tcr)
                f.cache_write_tokens += int(tcw)
                f.cost_usd += Decimal(cost)
                f.first, f.last = raw.spans.get(m, (None, None))
            else:
                f.scored[h] = f.scored.get(h, 0) + n
                f.hits[h] = f.hits.get(h, 0) + hits
                if kind in ("buy", "sell"):
                    f.return_sums[(h, kind)] = f.return_sums.get((h, kind), Decimal(0)) + Decimal(total)
                    f.return_counts[(h, kind)] = f.return_counts.get((h, kind), 0) + n
    rows = {k: f for k, f in rows.items() if f.decisions}
    if not rows:
        where = f"{market} ({mode})" if market else f"any market ({mode})"
        return Scorecard(mode, since, until, usd_krw, [], {}, [], [], empty=(
            f"No decisions recorded for {where} in this period: run some cycles first (`tradebot run-cycle`)."))
    curves = _ledgers(rows, raw, candles, limits, {} if checkpoints is None else checkpoints)
    figures = sorted(rows.values(), key=lambda f: (f.market, _rank(f.advisor), f.reflection))
    markets = sorted({f.market for f in figures})
    if len(markets) > 1:
        figures += _portfolio(figures, curves)
    top = [f for f in figures if f.market == (PORTFOLIO if len(markets) > 1 else markets[0])]
    verdicts, warnings = _verdicts(top, usd_krw)
    if not any(f.scored for f in figures):
        warnings.append("No decision is scored yet: the first horizon (+1 h) passes an hour after the first decision "
                        "and needs that hour's candle (`tradebot advisors score` scores on demand).")
    return Scorecard(mode, since, until, usd_krw, figures, real_pnl, verdicts, warnings)


def _rank(advisor: str) -> int:
    return ADVISOR_ORDER.index(advisor) if advisor in ADVISOR_ORDER else len(ADVISOR_ORDER)


Curve = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # bar start (unix s), equity


def _ledgers(rows: dict[tuple[str, str, bool], Figures], raw: Any, candles: dict[str, array[float]],
             limits: RiskLimits, checkpoints: dict[str, Any]) -> dict[tuple[str, str, bool], Curve]:
    """Run every row's counterfactual ledger; returns each row's equity curve. Each ledger goes on from its
    checkpoint in ``checkpoints`` (JSON-able, by row) when it still holds, and leaves its new one there."""
    from tradebot.backtest.replay import Checkpoint, Task, replay_all

    groups: dict[tuple[str, str, bool], list[npt.NDArray[np.float64]]] = defaultdict(list)
    for (m, a, role, refl), packed in raw.trades.items():
        rows_of = np.frombuffer(packed, dtype=np.float64).reshape(-1, 5)
        groups[(m, a, refl)].append(rows_of)
        if role == "acting":
            groups[(m, "acting", refl)].append(rows_of)
    wanted: dict[tuple[str, str, bool], npt.NDArray[np.float64]] = {}
    for key, parts in groups.items():
        both = np.concatenate(parts)
        # Oldest first, by time and then id (as the decisions were made): the last of an hour wins.
        both = both[np.lexsort((both[:, 1], both[:, 0]))]
        wanted[key] = np.delete(both, 1, axis=1)  # time, side, confidence, fraction
    bars = {m: np.frombuffer(c, dtype=np.float64).reshape(-1, 5) for m, c in candles.items()}
    no_bars = np.zeros((0, 5))
    none = np.zeros((0, 4))
    curves: dict[tuple[str, str, bool], Curve] = {}
    tasks: dict[tuple[str, int, bytes], Task] = {}
    plan: list[tuple[tuple[str, str, bool], Figures, str, int, tuple[str, int, bytes]]] = []
    for key, f in rows.items():
        start = raw.starts.get(f.market)
        if start is None or f.first is None:
            continue
        cols = bars.get(f.market, no_bars)
        first = max(int(np.searchsorted(cols[:, 0], f.first.timestamp(), side="right")) - 1, 0)
        decisions = wanted.get(key, none)
        name = "|".join((f.market, f.advisor, str(f.reflection)))
        # The acting ledger usually follows exactly the acting advisor's decisions: replayed once.
        same = (f.market, first, decisions.tobytes())
        if same not in tasks:
            resume = Checkpoint.from_json(checkpoints[name]) if name in checkpoints else None
            tasks[same] = Task(cols[first:], decisions, limits, Market(f.market), float(start), resume)
        plan.append((key, f, name, first, same))
    done = dict(zip(tasks, replay_all(list(tasks.values())), strict=True))
    kept: dict[str, Any] = {}
    for key, f, name, first, same in plan:
        result = done[same]
        if result is None:
            continue
        start = raw.starts[f.market]
        if result.checkpoint is not None:
            kept[name] = result.checkpoint.to_json()
        f.start_krw = Decimal(start)
        f.pnl_krw = Decimal(round(result.final_equity - float(start)))
        f.max_drawdown = Decimal(repr(round(result.max_drawdown, 6)))
        f.fills = result.fills
        curves[key] = (bars.get(f.market, no_bars)[first:, 0], result.equity)
    checkpoints.clear()  # only this report's: a ledger no longer shown leaves nothing behind
    checkpoints.update(kept)
    return curves


def _portfolio(figures: list[Figures], curves: dict[tuple[str, str, bool], Curve]) -> list[Figures]:
    out: dict[tuple[str, bool], Figures] = {}
    for f in figures:
        p = out.setdefault((f.advisor, f.reflection), Figures(PORTFOLIO, f.advisor, f.reflection))
        p.buys, p.sells, p.holds, p.failed = p.buys + f.buys, p.sells + f.sells, p.holds + f.holds, p.failed + f.failed
        for h in f.scored:
            p.scored[h] = p.scored.get(h, 0) + f.scored[h]
            p.hits[h] = p.hits.get(h, 0) + f.hits.get(h, 0)
        for k in f.return_sums:
            p.return_sums[k] = p.return_sums.get(k, Decimal(0)) + f.return_sums[k]
            p.return_counts[k] = p.return_counts.get(k, 0) + f.return_counts[k]
        if f.pnl_krw is not None and f.start_krw is not None:
            p.pnl_krw = (p.pnl_krw or Decimal(0)) + f.pnl_krw
            p.start_krw = (p.start_krw or Decimal(0)) + f.start_krw
        p.fills += f.fills
        p.input_tokens += f.input_tokens
        p.output_tokens += f.output_tokens
        p.cache_read_tokens += f.cache_read_tokens
        p.cache_write_tokens += f.cache_write_tokens
        p.cost_usd += f.cost_usd
        p.first = min(x for x in (p.first, f.first) if x is not None) if (p.first or f.first) else None
        p.last = max(x for x in (p.last, f.last) if x is not None) if (p.last or f.last) else None
    aligned: dict[tuple[tuple[str, int, float], ...], tuple[npt.NDArray[np.float64], list[npt.NDArray[np.intp]]]] = {}
    for (advisor, refl), p in out.items():
        mine = [(f.market, curves[(f.market, advisor, refl)]) for f in figures if (f.market, advisor, refl) in curves]
        p.max_drawdown = _drawdown(mine, aligned) if mine else None
    return sorted(out.values(), key=lambda f: (_rank(f.advisor), f.reflection))


def _drawdown(curves: Sequence[tuple[str, Curve]],
              aligned: dict[tuple[tuple[str, int, float], ...],
                            tuple[npt.NDArray[np.float64], list[npt.NDArray[np.intp]]]]) -> Decimal:
    """The largest fall of the markets' summed equity, each market's equity carried forward between its bars
    (and its first value before them). Every advisor's curve of a market has that market's bars (the same
    first bar and count): the alignment of a set of markets is made once (``aligned``) for every advisor."""
    markets = tuple((m, len(t), float(t[0]) if len(t) else 0.0) for m, (t, _) in curves)
    if markets not in aligned:
        times = np.unique(np.concatenate([t for _, (t, _) in curves]))
        aligned[markets] = (times, [np.maximum(np.searchsorted(t, times, side="right") - 1, 0) for _, (t, _) in curves])
    times, ats = aligned[markets]
    total = np.zeros(len(times))
    for at, (_, (_, equity)) in zip(ats, curves, strict=True):
        total += equity[at]
    peak = np.maximum.accumulate(total)
    worst = float(np.max(1.0 - total / peak)) if len(total) else 0.0
    return Decimal(repr(round(worst, 6)))


def _verdicts(top: list[Figures], usd_krw: Decimal) -> tuple[list[str], list[str]]:
    by = {f.advisor: f for f in top if not f.reflection}
    lead = by.get(MODEL) or by.get("rules")
    if lead is None or lead.pnl_krw is None:
        return [], []
    verdicts, warnings = [], []
    for other in ("rules", "buy_and_hold", "hold"):
        o = by.get(other)
        if o is None or o is lead or o.pnl_krw is None:
            continue
        diff = lead.pnl_krw - o.pnl_krw
        days = Decimal((max(x for x in (lead.last, o.last) if x) - min(x for x in (lead.first, o.first) if x))
                       .total_seconds()) / 86400
        text = f"{lead.advisor} vs {other}: {diff:+,.0f} KRW over {_days(days)}, {lead.decisions:,} decisions"
        if lead.cost_usd:
            cost = lead.cost_krw(usd_krw)
            text += (f", for {lead.cost_usd:,.2f} USD ({cost:,.0f} KRW) of model usage — net "
                     f"{diff - cost:+,.0f} KRW")
        else:
            text += ", no model usage"
        verdicts.append(text)
        small = days < MIN_DAYS or min(lead.buys + lead.sells, o.buys + o.sells) < MIN_TRADES
        if small:
            warnings.append(f"{lead.advisor} vs {other}: too small a sample to mean anything "
                            f"({_days(days)}, {lead.buys + lead.sells} and {o.buys + o.sells} buy/sell decisions; "
                            f"it takes {MIN_DAYS} days and {MIN_TRADES} buy/sell decisions on each side)")
    return verdicts, warnings


def _days(days: Decimal) -> str:
    return f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours"
