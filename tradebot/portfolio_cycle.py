"""The portfolio cycle (issue 12): one run for every market of ``TRADEBOT_MARKETS``, under one budget.

A one-market setup never comes here: it runs :func:`tradebot.cycle.run_cycle`, unchanged. With several
markets, the steps are:

1. **reconcile** every market's pending orders (and replay the fill journal) — as the one-market cycle;
2. **markets**: Upbit's market list (``/v1/market/all``); an unlisted market is named with close matches,
   skipped and counted as failed (it is never traded);
3. **account**: the balances once, the last prices of every market in one request;
4. per market, isolated from the others: **candles** (cache first), **indicators**, the **backtest filter**;
5. **orderbooks** of the markets still in play, in one request;
6. **advisor**: markets the filter blocked, and markets where no order is possible (no KRW above the
   minimum after the reserve, no position worth the minimum), are left out; the rest go to the advisor
   together (Claude: one request; rules: each market alone). A market the answer left out or answered
   badly holds, recorded with why, and counts as failed;
7. **orders**: :func:`tradebot.portfolio.sequence` — sells first, then buys by confidence, each gated against
   the KRW really left. Each order keeps the one-market guarantees: its decision row and its ``pending``
   trade row are written before it is sent, its real fill is read back. A market already traded in this
   cycle slot (the current UTC hour) by another run is not traded again (veto ``cycle_slot``);
8. the remaining **decision rows** (one per market, all sharing the run's ``cycle_id``), then one Telegram
   message.

Failure isolation: a market's failure never stops the others; the run fails (exit 1) if any market failed.
A failure of a shared step (reconcile, the market list, the account, the orderbooks) fails every market
still in play: nothing is sent.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.cycle import (
    CycleParts,
    CycleReport,
    StepFailed,
    StepLine,
    _order_text,
    backtest_filter,
    clean_candles,
    execute,
    reconcile_pending,
)
from tradebot.errors import EXIT_FAILURE, EXIT_OK, ExchangeError, StorageError, TradebotError
from tradebot.models import (
    AdvisorInput,
    AdvisorResult,
    Balance,
    Candle,
    GateResult,
    IndicatorSnapshot,
    Market,
    Orderbook,
    PastDecision,
    PortfolioInput,
    PortfolioView,
    Position,
    plain,
)
from tradebot.portfolio import Filled, MarketTurn, sequence, unlisted_hint
from tradebot.risk import RiskLimits, holds, no_order_possible
from tradebot.upbit_rules import FEE_RATE, MIN_ORDER_KRW

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.store.decisions import CycleContext


@dataclass
class _Work:
    """What the cycle has learned about one market so far."""

    market: Market
    position: Position | None = None
    hourly: list[Candle] = field(default_factory=list)
    daily: list[Candle] = field(default_factory=list)
    indicators: IndicatorSnapshot | None = None
    filter_result: dict[str, Any] | None = None
    filtered: bool = False
    note: str | None = None  # not asked: why
    result: AdvisorResult | None = None
    book: Orderbook | None = None
    gate: GateResult = field(default_factory=lambda: GateResult("hold"))
    recorded: bool = False


@dataclass
class PortfolioReport:
    """What a portfolio run did: its own steps, one :class:`CycleReport` per market (configured order) and
    the portfolio's totals after the orders (from the real fills)."""

    markets: tuple[Market, ...]
    mode: str
    dry_run: bool
    started_at: datetime
    cycle_id: str
    steps: list[StepLine] = field(default_factory=list)
    reports: list[CycleReport] = field(default_factory=list)
    failed_step: str | None = None  # a shared step that failed (every market failed with it)
    error: str | None = None
    free_krw: Decimal | None = None
    exposure_krw: Decimal | None = None
    equity_krw: Decimal | None = None
    open_positions: int | None = None
    duration_s: float = 0.0

    @property
    def failed_markets(self) -> list[Market]:
        return [r.market for r in self.reports if r.failed]

    @property
    def failed(self) -> bool:
        return self.error is not None or bool(self.failed_markets)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if self.failed else EXIT_OK

    @property
    def outcome(self) -> str:
        return "failed" if self.failed else "ok"

    def report(self, market: Market) -> CycleReport:
        return next(r for r in self.reports if r.market == market)

    def to_json(self) -> dict[str, Any]:
        def num(x: Decimal | None) -> str | None:
            return None if x is None else plain(x)

        counts: dict[str, int] = {}
        for r in self.reports:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        return {
            "markets": [r.to_json() for r in self.reports], "mode": self.mode, "dry_run": self.dry_run,
            "cycle_id": self.cycle_id, "outcome": self.outcome, "exit_code": self.exit_code,
            "failed_step": self.failed_step, "error": self.error, "duration_s": round(self.duration_s, 3),
            "steps": [{"step": s.step, "ok": s.ok, "text": s.text, "seconds": round(s.seconds, 4)} for s in self.steps],
            "portfolio": {"free_krw": num(self.free_krw), "exposure_krw": num(self.exposure_krw),
                          "equity_krw": num(self.equity_krw), "open_positions": self.open_positions,
                          "outcomes": counts, "failed_markets": [str(m) for m in self.failed_markets]},
        }


def slot_start(now: datetime) -> datetime:
    """The start of the cycle slot ``now`` is in: the UTC hour (cron runs the cycle hourly)."""
    return now.replace(minute=0, second=0, microsecond=0)


def positions_of(balances: list[Balance], prices: dict[Market, Decimal]) -> dict[Market, Position]:
    """Each market's position from one account read: the account's KRW, the market's coin, its price."""
    by_currency = {b.currency: b for b in balances}
    krw = by_currency.get("KRW")
    zero = Decimal(0)
    out = {}
    for market, price in prices.items():
        coin = by_currency.get(market.base)
        out[market] = Position(market=market, free_krw=krw.free if krw else zero, locked_krw=krw.locked if krw else zero,
                               coin_volume=coin.total if coin else zero, coin_free=coin.free if coin else zero,
                               avg_buy_price=coin.avg_buy_price if coin else zero, price=price)
    return out


def _fail(r: CycleReport, step: str, error: str) -> None:
    r.outcome, r.failed_step, r.error = "failed", step, error
    r.steps.append(StepLine(step, False, error))


# ------------------------------------------------------------------------------------------------ cycle
def run_portfolio_cycle(parts: CycleParts, *, dry_run: bool = False) -> PortfolioReport:
    """Run one cycle over every configured market (see the module docstring). Never raises for exchange,
    advisor, storage or notifier failures: they are in the report."""
    s = parts.settings
    rep = PortfolioReport(markets=s.markets, mode=s.mode, dry_run=dry_run, started_at=parts.now(),
                          cycle_id=str(uuid.uuid4()))
    rep.reports = [CycleReport(market=m, mode=s.mode, dry_run=dry_run, started_at=rep.started_at) for m in s.markets]
    work = {m: _Work(m) for m in s.markets}
    t0 = time.perf_counter()
    clock = [t0]

    def step(name: str, ok: bool, text: str) -> None:
        now = time.perf_counter()
        rep.steps.append(StepLine(name, ok, text, now - clock[0]))
        clock[0] = now

    current = "reconcile"
    try:
        lines, attention = reconcile_pending(parts, s.markets)
        for r in rep.reports:
            r.reconciled = [line for line in lines if r.market in line]
        if attention:
            raise StepFailed("reconcile", "needs attention: " + " | ".join(attention))
        step("reconcile", True, f"{len(lines)} pending order(s) checked" + (": " + "; ".join(lines) if lines else ""))

        current = "markets"
        listed = parts.exchange.listed_markets()
        for m in s.markets:
            if m not in listed:
                _fail(rep.report(m), "market", f"{unlisted_hint(m, listed)}; skipped, never traded")
        live = [m for m in s.markets if m in listed]
        unknown = [m for m in s.markets if m not in listed]
        step("markets", not unknown, f"{len(live)} of {len(s.markets)} listed on Upbit"
             + (f"; not listed, skipped: {', '.join(unknown)}" if unknown else ""))

        current = "account"
        balances = parts.exchange.balances()
        prices = parts.exchange.ticker_prices(live) if live else {}
        positions = positions_of(balances, prices)
        for m, position in positions.items():
            work[m].position = rep.report(m).position = position
        _totals(rep, list(positions.values()))
        step("account", True, _account_text(rep))
    except StepFailed as e:
        _shared_failure(rep, e.step, str(e))
        step(e.step, False, str(e))
        return _finish(parts, rep, work, t0)
    except (ExchangeError, StorageError) as e:
        _shared_failure(rep, current, str(e))
        step(current, False, str(e))
        return _finish(parts, rep, work, t0)

    for m in live:
        _prepare_market(parts, rep.report(m), work[m])
    asked = _askable(s, rep, work, live)

    if asked:
        try:
            books = parts.exchange.orderbooks(asked)
        except (ExchangeError, StorageError) as e:
            for m in asked:
                _fail(rep.report(m), "orderbook", str(e))
            step("orderbook", False, str(e))
            asked = []
        else:
            for m in asked:
                work[m].book = books[m]
    if asked:
        _advise(parts, rep, work, asked)
        step("advisor", True, _advisor_text(s.advisor, [work[m].result for m in asked]))

    _orders(parts, rep, work, [m for m in live if not rep.report(m).failed and work[m].result is not None
                               and work[m].result.decision is not None])  # type: ignore[union-attr]
    return _finish(parts, rep, work, t0)


def _shared_failure(rep: PortfolioReport, step: str, error: str) -> None:
    rep.failed_step, rep.error = step, error
    for r in rep.reports:
        if not r.failed:
            _fail(r, step, error)


def _totals(rep: PortfolioReport, positions: list[Position]) -> None:
    if not positions:
        return
    krw = positions[0].free_krw
    locked = positions[0].locked_krw
    rep.free_krw = krw
    rep.exposure_krw = sum((p.position_value for p in positions), Decimal(0))
    rep.equity_krw = krw + locked + rep.exposure_krw
    rep.open_positions = sum(1 for p in positions if holds(p))


def _account_text(rep: PortfolioReport) -> str:
    if rep.free_krw is None:
        return "no listed market to trade"
    return (f"free {plain(rep.free_krw, 0)} KRW, positions worth {plain(rep.exposure_krw or Decimal(0), 0)} KRW "
            f"({rep.open_positions} open), equity {plain(rep.equity_krw or Decimal(0), 0)} KRW")


def _prepare_market(parts: CycleParts, r: CycleReport, w: _Work) -> None:
    """Candles, indicators and the filter of one market; a failure fails this market only."""
    from tradebot.market.candle_cache import recent_candles
    from tradebot.market.indicators import snapshot

    s = parts.settings
    assert w.position is not None
    current = "candles"
    started = time.perf_counter()

    def line(name: str, text: str) -> None:
        nonlocal started
        now = time.perf_counter()
        r.steps.append(StepLine(name, True, text, now - started))
        started = now

    try:
        now = parts.now()
        got_h = recent_candles(parts.conn, parts.exchange, w.market, "minute60", s.hourly_candles, now, clean_candles)
        got_d = recent_candles(parts.conn, parts.exchange, w.market, "day", s.daily_candles, now, clean_candles)
        w.hourly, w.daily = got_h.candles, got_d.candles
        if len(w.hourly) < 30:
            raise StepFailed("candles", f"only {len(w.hourly)} hourly candles for {w.market}; at least 30 are needed")
        corrected = [name for name, got in (("hourly", got_h), ("daily", got_d)) if got.corrected]
        line("candles", f"{len(w.hourly)} hourly, {len(w.daily)} daily (forming candle excluded)" +
             (f"; the cached {' and '.join(corrected)} candles differed from Upbit's and were replaced" if corrected else ""))
        current = "indicators"
        w.indicators = snapshot(w.hourly)
        line("indicators", ", ".join(f"{k} {v:,.2f}" for k, v in w.indicators.as_dict().items()
                                     if v is not None and k in ("close", "rsi14", "ema20", "ema60", "macd_hist")))
        current = "filter"
        if s.backtest_filter:
            w.filter_result = backtest_filter(w.hourly, s.backtest_filter_threshold)
            w.filtered = bool(w.filter_result["losing"]) and not holds(w.position)
            line("filter", f"rule backtest over {len(w.hourly)}h: {w.filter_result['return'] * 100:+.2f} % "
                 f"({w.filter_result['trades']} trades) → " + ("filtered: hold without asking the advisor" if w.filtered else "pass"))
            if w.filtered:
                r.outcome = "filtered"
        else:
            line("filter", "off (TRADEBOT_BACKTEST_FILTER=off)")
    except StepFailed as e:
        _fail(r, e.step, str(e))
    except (ExchangeError, StorageError, ValueError) as e:
        _fail(r, current, f"{type(e).__name__}: {e}" if isinstance(e, ValueError) else str(e))


def _askable(s: Settings, rep: PortfolioReport, work: dict[Market, _Work], live: list[Market]) -> list[Market]:
    """The markets to put to the advisor: prepared, not filtered, and where some order is possible."""
    spendable = (rep.free_krw or Decimal(0)) - s.krw_reserve
    asked = []
    for m in live:
        r, w = rep.report(m), work[m]
        if r.failed or w.filtered:
            continue
        assert w.position is not None
        w.note = no_order_possible(spendable, w.position)
        if w.note:
            r.steps.append(StepLine("advisor", True, w.note))
            continue
        asked.append(m)
    return asked


def _advise(parts: CycleParts, rep: PortfolioReport, work: dict[Market, _Work], asked: list[Market]) -> None:
    from tradebot.advisor import advise_all
    from tradebot.store.decisions import recent_decisions, scored_recent

    s = parts.settings
    inputs = []
    try:
        for m in asked:
            w = work[m]
            assert w.position is not None and w.indicators is not None
            history = [PastDecision.of(d, w.position.price) for d in recent_decisions(parts.conn, m, s.mode)]
            reflection = scored_recent(parts.conn, m, s.mode, "claude") if s.reflection and s.advisor == "claude" else None
            inputs.append(AdvisorInput(position=w.position, indicators=w.indicators, hourly=tuple(w.hourly),
                                       daily=tuple(w.daily), history=tuple(history), reflection=reflection))
    except StorageError as e:
        for m in asked:
            _fail(rep.report(m), "advisor", str(e))
        return
    results = advise_all(parts.make_advisor(), PortfolioInput(_view(s, rep), tuple(inputs)))
    for m in asked:
        r, w = rep.report(m), work[m]
        result = w.result = r.advisor = results[m]
        d = result.decision
        if d is None:
            _fail(r, "advisor", f"{result.advisor}: {result.error or 'no decision'}")
        else:
            r.steps.append(StepLine("advisor", True, f"{result.advisor}: {d.action} (confidence {plain(d.confidence)}, "
                                    f"fraction {plain(d.fraction)}) — {d.reason[:160]}"))


def _view(s: Settings, rep: PortfolioReport) -> PortfolioView:
    """The account as the advisor's prompt shows it."""
    return PortfolioView(free_krw=rep.free_krw or Decimal(0), krw_reserve=s.krw_reserve,
                         exposure_krw=rep.exposure_krw or Decimal(0), equity_krw=rep.equity_krw or Decimal(0),
                         open_positions=rep.open_positions or 0, max_open_positions=s.max_open_positions,
                         max_order_krw=s.max_order_krw, max_position_krw=s.max_position_krw,
                         max_exposure_krw=s.max_exposure_krw)


def _advisor_text(advisor: str, results: list[AdvisorResult | None]) -> str:
    got = [r for r in results if r is not None]
    tokens = sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens for r in got)
    cost = sum((r.cost_usd for r in got), Decimal(0))
    answered = sum(1 for r in got if r.decision is not None)
    if advisor == "claude":
        return (f"claude asked once for {len(results)} market(s), {answered} answered; {tokens:,} input tokens, "
                f"{plain(cost.quantize(Decimal('0.0001')))} USD")
    return f"{advisor}: {answered} of {len(results)} market(s) decided"


def _orders(parts: CycleParts, rep: PortfolioReport, work: dict[Market, _Work], decided: list[Market]) -> None:
    """Gate and place the decided markets' orders in sequence; each order's decision row first."""
    from tradebot.store.state import is_paused
    from tradebot.store.trades import last_order_since

    s = parts.settings
    if not decided:
        return
    turns = []
    slot = slot_start(parts.now())
    try:
        loss = _realized_loss_today(parts)
        for m in decided:
            w = work[m]
            assert w.position is not None and w.book is not None and w.result is not None
            last = last_order_since(parts.conn, m, s.mode, slot)
            blocked = (f"{m} was already traded at {last:%H:%M:%S} UTC in this hour's cycle slot (by another run); "
                       "not traded again before the next hour") if last is not None else None
            turns.append(MarketTurn(m, w.position, w.result.decision, w.book.best_bid,
                                    paused=is_paused(parts.conn, m), blocked=blocked))
    except StorageError as e:
        for m in decided:
            _fail(rep.report(m), "risk", str(e))
        return

    placed: list[Market] = []

    def place(turn: MarketTurn, verdict: GateResult) -> Filled | None:
        if placed:  # the previous market's order is done; this one is not sent yet
            parts.crashpoint("after_market_order")
        placed.append(turn.market)
        r, w = rep.report(turn.market), work[turn.market]
        w.gate = verdict
        _risk_line(r, verdict)
        r.action = verdict.action
        if not _record(parts, rep, w):
            return None
        if dry_run_fill := _dry_run(parts, r, turn, verdict):
            return dry_run_fill
        execute(parts, r, verdict)
        if r.failed and r.decision_id is not None and r.error:
            _note_error(parts, r)
        f = r.fill
        if f is not None and f.volume > 0:
            return Filled(f.volume, f.gross, f.fee)
        if verdict.action == "buy" and verdict.krw is not None and r.trade_status == "pending":
            # Accepted, not final: what it may still spend is kept out of the later buys' reach.
            return Filled(verdict.krw / turn.position.price, verdict.krw, verdict.krw * FEE_RATE)
        return None

    others = [w.position for m, w in work.items() if m not in decided and w.position is not None]
    steps = sequence(turns, RiskLimits.from_settings(s), place, realized_loss_today=loss, others=others)
    for st in steps:
        r, w = rep.report(st.market), work[st.market]
        if not w.recorded:
            w.gate = st.gate
            _risk_line(r, st.gate)
            r.action = st.gate.action
            r.outcome = "vetoed" if st.gate.vetoes else "hold"
    # Totals after the orders, from the real fills (at the prices read at the start).
    krw = rep.free_krw or Decimal(0)
    values = {m: w.position.position_value for m, w in work.items() if w.position is not None}
    for st in steps:
        if st.filled is None:
            continue
        p = work[st.market].position
        assert p is not None
        if st.gate.action == "buy":
            krw -= st.filled.gross + st.filled.fee
            values[st.market] = (p.coin_volume + st.filled.volume) * p.price
        else:
            krw += st.filled.gross - st.filled.fee
            values[st.market] = max(p.coin_volume - st.filled.volume, Decimal(0)) * p.price
    rep.free_krw, rep.exposure_krw = krw, sum(values.values(), Decimal(0))
    locked = next((w.position.locked_krw for w in work.values() if w.position is not None), Decimal(0))
    rep.equity_krw = krw + locked + rep.exposure_krw
    rep.open_positions = sum(1 for v in values.values() if v >= MIN_ORDER_KRW)


def _risk_line(r: CycleReport, g: GateResult) -> None:
    notes = [f"{n['rule']}: {n['detail']}" for n in (*g.clamps, *g.vetoes)]
    r.steps.append(StepLine("risk", True, _order_text(g) + (" — " + "; ".join(notes) if notes else "")))


def _dry_run(parts: CycleParts, r: CycleReport, turn: MarketTurn, g: GateResult) -> Filled | None:
    """In a dry run nothing is sent: the order is reported, and the later orders are gated as if it had
    filled at the last price (so the plan shown is the one a real run would follow)."""
    if not r.dry_run:
        return None
    r.outcome = "dry_run"
    r.steps.append(StepLine("order", True, f"dry run: would {_order_text(g)}"))
    price = turn.position.price
    if g.action == "buy" and g.krw is not None:
        return Filled(g.krw / price, g.krw, g.krw * FEE_RATE)
    volume = g.volume or Decimal(0)
    return Filled(volume, volume * turn.best_bid, volume * turn.best_bid * FEE_RATE)


def _realized_loss_today(parts: CycleParts) -> Decimal:
    """Today's realized loss of the whole portfolio (positive KRW; 0 when the markets made money together),
    from each market's P&L checkpoint brought up to date (its day totals), not a replay of every trade."""
    from tradebot.pnl import realized_today, whole_history

    s = parts.settings
    today = parts.now().astimezone(UTC).date()
    pnl = sum((realized_today(whole_history(parts.conn, m, s.mode)[0], today) for m in s.markets), Decimal(0))
    return -pnl if pnl < 0 else Decimal(0)


def _record(parts: CycleParts, rep: PortfolioReport, w: _Work) -> bool:
    """Write the market's decision row (once); False (the market failed) when the database refused it."""
    from tradebot.store.decisions import record_decision

    r = rep.report(w.market)
    if w.recorded:
        return r.decision_id is not None
    w.recorded = True
    try:
        r.decision_id = record_decision(parts.conn, _context(parts.settings, rep, w), w.result, w.gate)
    except StorageError as e:
        _fail(r, "decision log", str(e))
        return False
    return True


def _context(s: Settings, rep: PortfolioReport, w: _Work) -> CycleContext:
    from tradebot.store.decisions import CycleContext

    r = rep.report(w.market)
    return CycleContext(market=w.market, mode=s.mode, advisor=s.advisor, dry_run=r.dry_run, position=w.position,
                        indicators=w.indicators, filter_result=w.filter_result, filtered=w.filtered,
                        error=f"{r.failed_step}: {r.error}" if r.failed else None, cycle_id=rep.cycle_id,
                        note=w.note, reflection=s.reflection and w.result is not None and w.result.advisor == "claude")


def _note_error(parts: CycleParts, r: CycleReport) -> None:
    from tradebot.store.decisions import set_decision_error

    assert r.decision_id is not None
    try:
        set_decision_error(parts.conn, r.decision_id, f"{r.failed_step}: {r.error}")
    except StorageError:  # the trade row already carries the error
        pass


def _finish(parts: CycleParts, rep: PortfolioReport, work: dict[Market, _Work], t0: float) -> PortfolioReport:
    """The decision rows not written yet (holds, vetoes, filtered, failed markets), then the message."""
    parts.crashpoint("before_decisions")
    for w in work.values():
        r = rep.report(w.market)
        if not w.recorded:
            _record(parts, rep, w)
        if not any(line.step == "order" for line in r.steps):
            r.steps.append(StepLine("order", True, "none"))
    rep.duration_s = time.perf_counter() - t0
    for r in rep.reports:
        r.duration_s = rep.duration_s
    notify_portfolio(parts, rep)
    _shadows(parts, rep, work)
    return rep


def _shadows(parts: CycleParts, rep: PortfolioReport, work: dict[Market, _Work]) -> None:
    """The shadow advisors decide every market that reached its indicators (:mod:`tradebot.shadow`)."""
    from tradebot.shadow import ShadowCase, record_shadows

    cases = []
    for w in work.values():
        if w.position is None or w.indicators is None or rep.report(w.market).decision_id is None:
            continue
        inp = AdvisorInput(position=w.position, indicators=w.indicators, hourly=tuple(w.hourly), daily=tuple(w.daily),
                           history=())
        cases.append(ShadowCase(_context(parts.settings, rep, w), inp, w.book.best_bid if w.book else w.position.price))
    record_shadows(parts, cases, _view(parts.settings, rep))


def notify_portfolio(parts: CycleParts, rep: PortfolioReport) -> None:
    """Telegram: one message for a run that traded or failed — each market's fill, each market's failure.
    A failure to send is a step line, never raised."""
    from tradebot.notify import portfolio_message

    fills = [(r.market, r.fill, r.trade_status or "", r.advisor.decision.reason if r.advisor and r.advisor.decision else "")
             for r in rep.reports if r.fill is not None and r.trade_status in ("completed", "cancelled")]
    pending = [(r.market, "fill confirmation", f"{r.fill.side} order {r.fill.uuid} was accepted but not final within the "
                "poll budget; the next run records its fill") for r in rep.reports if r.fill is not None and r.outcome == "pending"]
    failures = pending + [(r.market, r.failed_step or "?", r.error or "") for r in rep.reports if r.failed]
    if not fills and not failures:
        return
    try:
        parts.notifier.send(portfolio_message(parts.settings.mode, fills, failures))
    except TradebotError as e:
        rep.steps.append(StepLine("notify", False, f"telegram failed: {e}"))
    except Exception as e:  # noqa: BLE001 — notifications never fail a cycle
        rep.steps.append(StepLine("notify", False, f"telegram failed: {type(e).__name__}"))
